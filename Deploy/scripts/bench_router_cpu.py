#!/usr/bin/env python3
"""CPU time the router spends per streamed token, measured on a running `baton up`: the router process's user +
system time (from /proc) over a burst of concurrent streaming chat requests, divided by the tokens it streamed.
Run it against two builds to compare them (`--baton PATH`).

Usage: python3 Deploy/scripts/bench_router_cpu.py [--baton PATH] [--clients 4] [--requests 16] [--max-tokens 128]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import find_baton, free_port  # noqa: E402


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def stream_chat(base, model, max_tokens, seed):
    body = json.dumps({"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0.7, "seed": seed,
                       "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    chunks = 0
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: {") and '"content"' in line:
                chunks += 1
    return chunks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baton")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    baton = find_baton(args.baton)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tempfile.mkdtemp(prefix="baton-router-cpu-")
    log = tempfile.TemporaryFile(mode="w+")
    up = subprocess.Popen([baton, "up", "--port", str(port), "--state-dir", state, "--threads", "1"],
                          stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.time() > deadline or up.poll() is not None:
                sys.exit("baton up did not become ready")
            time.sleep(0.5)
        log.seek(0)
        match = re.search(r"started router \(pid (\d+)\)", log.read())
        if not match:
            sys.exit("no router pid in baton up's log")
        router = int(match.group(1))
        with urllib.request.urlopen(base + "/v1/models") as r:
            model = json.load(r)["data"][0]["id"]
        stream_chat(base, model, 8, 0)  # warm-up
        tokens = []
        lock = threading.Lock()
        queue = list(range(args.requests))

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    seed = queue.pop()
                count = stream_chat(base, model, args.max_tokens, seed)
                with lock:
                    tokens.append(count)

        before, started = cpu_seconds(router), time.time()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        used, elapsed = cpu_seconds(router) - before, time.time() - started
        total = sum(tokens)
        result = {"tokens": total, "router_cpu_s": round(used, 3), "wall_s": round(elapsed, 2),
                  "router_cpu_us_per_token": round(used / total * 1e6, 1) if total else None}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"router: {used:.2f} CPU s for {total} streamed tokens in {elapsed:.1f} s "
                  f"= {result['router_cpu_us_per_token']} µs of CPU per token")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
