#!/usr/bin/env python3
"""Placement off the request path, measured with real processes: a loopback cluster (placement, one prefill and
one decode worker, a router) serves a steady stream of chat requests while the placement service is killed with
SIGKILL, stays down for --down seconds, and is started again on the same state folder.

Reports:
  - requests answered / failed before, during and after the outage (the router chooses from its membership
    snapshot, so the outage should cost none);
  - how long the router took to notice (its /health turning "degraded") and, after the restart, to resume from a
    fresh snapshot (/health "ok" again, i.e. the watch stream reconnected): measured from the new placement
    process's start, and from the moment it first answers its own /health;
  - whether a worker that joins after the restart is used (the snapshot version advanced).

Usage: python3 Deploy/scripts/placement_outage.py [--baton PATH] [--down 10] [--rounds 3] [--threads 1] [--json]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import find_baton, free_port  # noqa: E402


def health(base):
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as response:
            return json.loads(response.read()).get("status")
    except Exception:
        return None


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def wait_for(what, condition, timeout=240, poll=0.02):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic()
        time.sleep(poll)
    sys.exit(f"timed out waiting for {what}")


def placement_answers(address, certs):
    """Whether the placement service answers `cluster status` (its listener is up and serving)."""
    result = subprocess.run([BATON, "cluster", "status", "--placement", address, "--certs", certs, "--node", "router",
                             "--json", "--timeout", "1"], capture_output=True, text=True)
    return result.returncode == 0


class Traffic(threading.Thread):
    """Sends short chat requests back to back and records (start time, status) of each."""

    def __init__(self, base, model):
        super().__init__(daemon=True)
        self.base, self.model = base, model
        self.results = []
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            body = json.dumps({"model": self.model, "max_tokens": 4, "temperature": 0,
                               "messages": [{"role": "user", "content": f"Say hello number {n}."}]}).encode()
            request = urllib.request.Request(self.base + "/v1/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status = response.status
                    response.read()
            except urllib.error.HTTPError as error:
                status = error.code
            except Exception:
                status = 0
            self.results.append((started, status))
            n += 1


def main():
    global BATON
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baton")
    parser.add_argument("--down", type=float, default=10, help="seconds placement stays down")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    BATON = find_baton(args.baton)
    work = tempfile.mkdtemp(prefix="baton-outage-")
    processes = []

    def spawn(*arguments, name):
        log = open(os.path.join(work, name + ".log"), "a")
        process = subprocess.Popen([BATON, *arguments], stdout=log, stderr=log)
        processes.append(process)
        return process

    try:
        certs = os.path.join(work, "certs")
        subprocess.run([BATON, "certs", "--out", certs, "--nodes", "placement,router,prefill-0,decode-0,decode-late"],
                       check=True, capture_output=True)
        policy = os.path.join(work, "policy.yaml")
        with open(policy, "w") as f:
            f.write("disaggregation:\n  min_prompt_tokens: 0\nmembership:\n  heartbeat_timeout_seconds: 5\n")
        address = f"127.0.0.1:{free_port()}"
        placement_args = ["placement", "--config", policy, "--listen", address, "--state-dir",
                          os.path.join(work, "placement"), "--certs", certs, "--node", "placement"]
        placement = spawn(*placement_args, name="placement")

        def worker(name, role):
            return spawn("worker", "--role", role, "--placement", address, "--listen", f"127.0.0.1:{free_port()}",
                         "--certs", certs, "--node", name, "--context", "1024", "--threads", str(args.threads), name=name)

        worker("prefill-0", "prefill")
        worker("decode-0", "decode")
        port = free_port()
        spawn("router", "--placement", address, "--certs", certs, "--node", "router", "--port", str(port),
              "--context", "1024", name="router")
        base = f"http://127.0.0.1:{port}"
        wait_for("the router to be ready", lambda: health(base) == "ok", timeout=300, poll=0.2)
        with urllib.request.urlopen(base + "/v1/models", timeout=10) as response:
            model = json.loads(response.read())["data"][0]["id"]

        traffic = Traffic(base, model)
        traffic.start()
        time.sleep(3)
        rounds = []
        for round_index in range(args.rounds):
            killed = time.monotonic()
            placement.send_signal(signal.SIGKILL)
            placement.wait()
            noticed = wait_for("/health degraded", lambda: health(base) == "degraded", timeout=30)
            time.sleep(max(0, args.down - (time.monotonic() - killed)))
            restarted = time.monotonic()
            placement = spawn(*placement_args, name="placement")
            listening = wait_for("placement to answer", lambda: placement_answers(address, certs), timeout=60, poll=0.05)
            resumed = wait_for("/health ok", lambda: health(base) == "ok", timeout=60, poll=0.01)
            during = [s for (t, s) in traffic.results if killed <= t < resumed]
            rounds.append({
                "degraded_after_kill_s": round(noticed - killed, 3),
                "ok_after_restart_s": round(resumed - restarted, 3),
                "ok_after_placement_answers_s": round(max(0.0, resumed - listening), 3),
                "requests_during_outage": len(during),
                "failed_during_outage": sum(1 for s in during if s != 200),
            })
            time.sleep(3)

        # A worker that joins now is used: the snapshot version advances and it gets requests.
        version = metric(base, "baton_router_placement_snapshot_version")
        joined_at = time.monotonic()
        worker("decode-late", "decode")
        wait_for("the new worker in the router's snapshot",
                 lambda: (metric(base, "baton_router_placement_snapshot_version") or 0) > version, timeout=300, poll=0.1)
        version_advanced_s = time.monotonic() - joined_at
        time.sleep(3)
        traffic.stop.set()
        traffic.join(timeout=90)
        statuses = [s for (_, s) in traffic.results]
        summary = {
            "baton": BATON,
            "down_s": args.down,
            "rounds": rounds,
            "requests": len(statuses),
            "failed": sum(1 for s in statuses if s != 200),
            "ok_after_restart_s_median": statistics.median(r["ok_after_restart_s"] for r in rounds),
            "ok_after_placement_answers_s_median": statistics.median(r["ok_after_placement_answers_s"] for r in rounds),
            "new_worker_in_snapshot_s": round(version_advanced_s, 2),
        }
        if args.json:
            print(json.dumps(summary))
        else:
            for index, r in enumerate(rounds):
                print(f"round {index + 1}: degraded {r['degraded_after_kill_s']} s after SIGKILL; "
                      f"{r['requests_during_outage']} requests during the outage, {r['failed_during_outage']} failed; "
                      f"/health ok {r['ok_after_restart_s']} s after the restart "
                      f"({r['ok_after_placement_answers_s']} s after placement answered)")
            print(f"all: {summary['requests']} requests, {summary['failed']} failed; a worker joining after the "
                  f"restarts reached the router's snapshot in {summary['new_worker_in_snapshot_s']} s (incl. its model load)")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
