#!/usr/bin/env python3
"""Time to first token through real processes: `baton up` (prefill worker -> KV over the wire -> decode worker)
against `baton serve` (one process), on the path users take: the OpenAI API over HTTP.

Both run side by side on this box with the same engine threads (`--threads N` for serve, and for each worker of
up); they idle while the other is measured. Each pair sends the same fresh prompt of --prompt-tokens token ids to
both, in alternating order, streaming, and times the first content chunk. Reports each side's median and the
median of the per-pair ratios (up / serve), which a drift in machine speed affects least.

Usage: python3 Deploy/scripts/bench_ttft_e2e.py [--baton PATH] [--prompt-tokens 2000] [--pairs 7] [--threads 1] [--json]
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import find_baton, free_port  # noqa: E402


def wait_ready(base, process, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args[1]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit(f"{base} did not become ready within {timeout} s")


def model_id(base):
    with urllib.request.urlopen(base + "/v1/models", timeout=10) as response:
        return json.load(response)["data"][0]["id"]


def first_token_seconds(base, model, prompt):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 4, "temperature": 0, "stream": True}).encode()
    request = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                sys.exit(f"{base}: {event['error']}")
            if event.get("choices") and event["choices"][0].get("text"):
                elapsed = time.perf_counter() - started
                for _ in response:  # drain the rest
                    pass
                return elapsed
    sys.exit(f"{base}: no token came back")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baton")
    parser.add_argument("--model")
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    baton = find_baton(args.baton)
    model_flags = ["--model", args.model] if args.model else []
    context = str(max(4096, args.prompt_tokens + 64))
    state = tempfile.mkdtemp(prefix="baton-ttft-e2e-")
    serve_port, up_port = free_port(), free_port()
    quiet = subprocess.DEVNULL
    serve = subprocess.Popen([baton, "serve", "--port", str(serve_port), "--threads", str(args.threads),
                              "--context", context, "--max-batch", "1"] + model_flags, stdout=quiet, stderr=quiet)
    up = subprocess.Popen([baton, "up", "--port", str(up_port), "--threads", str(args.threads), "--context", context,
                           "--state-dir", state] + model_flags, stdout=quiet, stderr=quiet)
    try:
        serve_base, up_base = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{up_port}"
        wait_ready(serve_base, serve)
        wait_ready(up_base, up)
        model = model_id(serve_base)
        rng = random.Random(args.seed)
        # Ordinary token ids (past the special ones at the start of the vocabulary).
        def prompt():
            return [rng.randrange(1000, 40000) for _ in range(args.prompt_tokens)]
        # Warm-up: each side's first long prompt pays for page faults and buffers.
        warm = prompt()
        first_token_seconds(serve_base, model, warm)
        first_token_seconds(up_base, model, warm)
        serve_times, up_times, ratios = [], [], []
        for pair in range(args.pairs):
            tokens = prompt()
            order = [("serve", serve_base), ("up", up_base)] if pair % 2 == 0 else [("up", up_base), ("serve", serve_base)]
            measured = {name: first_token_seconds(base, model, tokens) for name, base in order}
            serve_times.append(measured["serve"])
            up_times.append(measured["up"])
            ratios.append(measured["up"] / measured["serve"])
            if not args.json:
                print(f"pair {pair + 1}: serve {measured['serve'] * 1000:.0f} ms, up {measured['up'] * 1000:.0f} ms, "
                      f"ratio {ratios[-1]:.3f}")
        result = {
            "prompt_tokens": args.prompt_tokens, "threads": args.threads, "pairs": args.pairs,
            "serve_ttft_ms_median": round(statistics.median(serve_times) * 1000, 1),
            "up_ttft_ms_median": round(statistics.median(up_times) * 1000, 1),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_best_to_best": round(min(up_times) / min(serve_times), 3),
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(f"TTFT of a {args.prompt_tokens}-token prompt, {args.threads} thread(s) per engine: serve "
                  f"{result['serve_ttft_ms_median']} ms, up {result['up_ttft_ms_median']} ms (medians); "
                  f"up/serve {result['ratio_median']} (median of {args.pairs} pairs), {result['ratio_best_to_best']} best to best")
    finally:
        for process in (up, serve):
            process.send_signal(signal.SIGINT)
        for process in (up, serve):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
