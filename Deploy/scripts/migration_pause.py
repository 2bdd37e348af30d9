#!/usr/bin/env python3
"""How long a client's stream pauses when its decode worker dies (or is stopped), and what the move costs.

Starts a loopback cluster of real `baton` processes (placement, one prefill worker, two decode workers, the
router; mutual TLS; --threads per worker), runs --streams concurrent chat streams (greedy and seeded, short
prompts run decode-only and long ones split), and --kills times: once every stream is under way, SIGKILLs the
decode worker that took the most of them, waits for every stream to end, checks each text against an undisturbed
run of the same requests, and restarts the killed worker.

With --signal term the decode worker is stopped instead (SIGTERM): it drains by moving each generation, KV and
all, to the other decode worker, and exits; the moved streams are the router's `baton_router_moves_total{outcome=
"moved"}`, and the cost is the KV bytes moved (nothing is recomputed; migrations should stay 0).

Per kill it reports, for every stream that was moved, its pause: the longest gap between two text deltas from
the signal on (or from the signal to its next delta). Over all kills: p50 / p99 / max of those pauses, of the
longest per kill, and the migration cost from the router's metrics (prompt + generated tokens recomputed per
migration, i.e. extra prefill tokens).

Usage: python3 Deploy/scripts/migration_pause.py [--baton PATH] [--kills 10] [--streams 4] [--max-tokens 128]
           [--threads 1] [--signal kill|term] [--host-ids] [--json]
"""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import Cluster, Stream, find_baton, free_port, percentile  # noqa: E402

LONG = ("Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker. "
        "Every morning he opened his shop and wound every clock on the wall, and the children came to listen. ") * 4
PROMPTS = [
    ("Count from one to fifty in words, separated by commas.", 0.0, None),
    ("Write a short story about a lighthouse keeper and a storm.", 0.8, 11),
    (LONG + " Summarize the story above in a few sentences.", 0.0, None),
    (LONG + " What happens next? Continue the story.", 0.9, 5),
    ("List ten fruits and say one thing about each.", 0.7, 23),
    (LONG + " Who is the main character?", 0.0, None),
]


def decode_counts(metrics):
    counts = {}
    for key, value in metrics.items():
        if key.startswith("baton_router_worker_requests_total{") and 'role="decode"' in key:
            counts[key.split('worker="')[1].split('"')[0]] = value
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baton")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill",
                        help="kill: SIGKILL (the router resumes by recomputing); term: SIGTERM (the worker moves its KV)")
    parser.add_argument("--host-ids", action="store_true",
                        help="give each worker a host identity of its own: KV goes over mutual-TLS HTTP/2, not shared memory")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (their folder is printed)")
    args = parser.parse_args()
    baton = find_baton(args.baton)
    requests = [PROMPTS[i % len(PROMPTS)] for i in range(args.streams)]

    directory = tempfile.mkdtemp(prefix="baton-migration-")
    cluster = Cluster(baton, args.threads, directory, host_ids=args.host_ids)
    try:
        reference = [Stream(cluster.router_port, p, t, s, args.max_tokens) for p, t, s in requests]
        for stream in reference:
            stream.join()
            if stream.error or not stream.done:
                raise RuntimeError(f"undisturbed run failed: {stream.error}")
        pauses, longest, mismatches, failures = [], [], 0, 0
        start_metrics = cluster.metrics()
        for kill in range(args.kills):
            before_metrics = cluster.metrics()
            before = decode_counts(before_metrics)
            streams = [Stream(cluster.router_port, p, t, s, args.max_tokens) for p, t, s in requests]
            deadline = time.monotonic() + 120
            # Every stream under way (mid-stream, not waiting for its first token) before the kill.
            while not all(len(s.deltas) >= 2 or not s.is_alive() for s in streams) and time.monotonic() < deadline:
                time.sleep(0.005)
            after = decode_counts(cluster.metrics())
            victim = max(("decode-0", "decode-1"), key=lambda n: after.get(n, 0) - before.get(n, 0))
            cluster.procs[victim].send_signal(signal.SIGTERM if args.signal == "term" else signal.SIGKILL)
            killed_at = time.monotonic()
            status = cluster.procs[victim].wait()
            if args.signal == "term" and status != 0:
                failures += 1
                print(f"kill {kill + 1}: {victim} exited with {status} after SIGTERM", file=sys.stderr)
            for stream in streams:
                stream.join()
            gaps = []
            for index, (stream, ref) in enumerate(zip(streams, reference)):
                if stream.error or not stream.done:
                    failures += 1
                    print(f"kill {kill + 1}: stream {index} failed: {stream.error or 'no [DONE]'}", file=sys.stderr)
                if stream.text != ref.text:
                    mismatches += 1
                    print(f"kill {kill + 1}: stream {index} differs:\n  got      {stream.text!r}\n  expected "
                          f"{ref.text!r}", file=sys.stderr)
                times = [t for t, _ in stream.deltas]
                if not times or times[-1] < killed_at:
                    continue  # finished before the kill
                # The longest gap from the signal on: a killed worker's stream stops at once, a stopped one sends what it
                # generated before it paused first, so its pause comes after the signal.
                previous = max([t for t in times if t < killed_at], default=killed_at)
                following = [t for t in times if t >= killed_at]
                gaps.append((max(b - a for a, b in zip([previous] + following, following)), index))
            # The streams the router moved (its migration count) are the ones with the longest gaps over the kill;
            # the others only waited for their next token.
            after_metrics = cluster.metrics()
            counter = "baton_router_migrations_total" if args.signal == "kill" else 'baton_router_moves_total{outcome="moved"'
            moved_count = int(sum(v - before_metrics.get(k, 0) for k, v in after_metrics.items()
                                  if k.startswith(counter)))
            moved_gaps = sorted(gaps, reverse=True)[:moved_count]
            moved = [gap for gap, _ in moved_gaps]
            pauses += moved
            if moved:
                longest.append(max(moved))
            if not args.json:
                detail = ", ".join(f"stream {i} {gap * 1000:.0f} ms" for gap, i in moved_gaps)
                print(f"kill {kill + 1}: {victim}; {len(moved)} streams moved: {detail}", flush=True)
            # On a fresh port: a peer's pooled connection to the dead process's port would otherwise be found dead
            # only when used (the prefill worker then prefills the prompt again), which this does not measure.
            cluster.ports[victim] = free_port()
            cluster.start_worker(victim)
            cluster.wait_active({victim})
        end_metrics = cluster.metrics()
        migrations = sum(v - start_metrics.get(k, 0) for k, v in end_metrics.items()
                         if k.startswith("baton_router_migrations_total"))
        def grown(name):
            return sum(v - start_metrics.get(k, 0) for k, v in end_metrics.items() if k.startswith(name))
        recomputed = grown("baton_router_migration_recomputed_tokens_total")
        report = {
            "signal": args.signal, "kills": args.kills, "streams": args.streams, "max_tokens": args.max_tokens, "threads": args.threads,
            "moved_streams": len(pauses), "failed_streams": failures, "texts_differing": mismatches,
            "pause_ms": {"p50": percentile(pauses, 50), "p99": percentile(pauses, 99), "max": max(pauses, default=None)},
            "longest_pause_per_kill_ms": {"p50": percentile(longest, 50), "p99": percentile(longest, 99)},
            "migrations": migrations,
            "undisturbed_ttft_ms": {
                "p50": round(1000 * percentile([s.deltas[0][0] - s.started for s in reference], 50)),
                "max": round(1000 * max(s.deltas[0][0] - s.started for s in reference))},
            "recomputed_tokens_per_migration": recomputed / migrations if migrations else None,
            "recomputed_tokens": recomputed,
            "moves": {outcome: grown(f'baton_router_moves_total{{outcome="{outcome}"')
                      for outcome in ("moved", "kept", "failed")},
            "moved_kv_bytes": grown("baton_router_moved_kv_bytes_total"),
        }
        for key in ("pause_ms", "longest_pause_per_kill_ms"):
            report[key] = {k: (round(v * 1000) if v is not None else None) for k, v in report[key].items()}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(json.dumps(report, indent=2))
        return 0 if failures == 0 and mismatches == 0 else 1
    finally:
        cluster.stop()
        if args.keep_logs:
            print(f"logs: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
