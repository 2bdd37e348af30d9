#!/usr/bin/env python3
"""Checks `baton simulate` against the real thing on this box: TTFT and ITL p50 of the split (`baton up`) and the
one-process (`baton serve`) set-ups, measured by `baton bench serve --compare` and simulated, at two request rates.

1. Calibrates the cost model twice (`baton simulate --calibrate`): at 1 thread (each worker of `baton up
   --prefill-threads 1 --decode-threads 1`) and at --threads (`baton serve --threads N`). Skipped with --reuse.
2. Runs `baton bench serve --compare --systems split,serve` at the rates (Poisson arrivals, seeded).
3. For every system and rate, replays what the real run sent as a JSONL trace (each request's send time, its prompt
   tokens as the server counted them and the tokens it actually generated) through `baton simulate`, on a cluster
   file built from the calibration's device profile: two one-core workers on one host for split, one worker with
   both roles for serve; with the policy `baton up` writes (Deploy/config/simulate/policy-up.yaml) and, for serve,
   one without a queue limit (policy-serve.yaml).
4. Prints measured, simulated and the error (simulated / measured - 1) of TTFT p50 and ITL p50.

Usage: python3 Deploy/scripts/simulate_validate.py [--baton PATH] [--rates 0.5,1.5] [--requests 24] [--threads 2]
       [--preset short-chat] [--work DIR] [--reuse] [--json]
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import REPO, find_baton  # noqa: E402

CONFIG = os.path.join(REPO, "Deploy/config/simulate")


def run(args, **kwargs):
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(args, check=True, **kwargs)


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def calibrate(baton, threads, path, reuse):
    if reuse and os.path.exists(path):
        return json.load(open(path))
    run([baton, "simulate", "--calibrate", "--threads", str(threads), "--costs", path], stdout=sys.stderr)
    return json.load(open(path))


def cluster_file(path, system, reference):
    """The set-up as simulated workers, with the calibrated box's profile (so the costs apply unscaled)."""
    profile = (f"{{sgemm_gflops: {reference['sgemm_gflops']:.3f}, memory_read_gbps: {reference['memory_read_gbps']:.3f}, "
               f"cores: {reference['threads']}, host_id: box}}")
    if system == "split":
        text = ("workers:\n"
                f"  - {{name: prefill-0, role: prefill, profile: {profile}}}\n"
                f"  - {{name: decode-0, role: decode, profile: {profile}, max_batch: 8}}\n")
    else:
        text = f"workers:\n  - {{name: serve, role: both, profile: {profile}, max_batch: 8}}\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def trace_file(path, records):
    """What the real run sent, as a trace: send time, prompt tokens (input_length with 1 token per word) and output."""
    with open(path, "w") as f:
        for r in sorted(records, key=lambda r: r["sent_ms"]):
            if r.get("error"):
                continue
            f.write(json.dumps({"timestamp": r["sent_ms"], "input_length": max(1, r["prompt_tokens"]),
                                "output_length": max(1, r["completion_tokens"])}) + "\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baton")
    parser.add_argument("--rates", default="0.5,1.5")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="short-chat")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default="/tmp/baton-simulate-validate")
    parser.add_argument("--reuse", action="store_true", help="reuse the work directory's calibrations and bench report")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    baton = find_baton(args.baton)
    os.makedirs(args.work, exist_ok=True)

    costs = {"split": os.path.join(args.work, "costs-1t.json"),
             "serve": os.path.join(args.work, f"costs-{args.threads}t.json")}
    references = {"split": calibrate(baton, 1, costs["split"], args.reuse)["reference"],
                  "serve": calibrate(baton, args.threads, costs["serve"], args.reuse)["reference"]}

    report_path = os.path.join(args.work, "bench.json")
    if not (args.reuse and os.path.exists(report_path)):
        out = run([baton, "bench", "serve", "--compare", "--systems", "split,serve", "--threads", str(args.threads),
                   "--split-threads", "1,1", "--preset", args.preset, "--rate", args.rates, "--requests", str(args.requests),
                   "--seed", str(args.seed), "--json"], stdout=subprocess.PIPE, text=True).stdout
        with open(report_path, "w") as f:
            f.write(out.strip().splitlines()[-1])
    report = json.load(open(report_path))

    policies = {"split": os.path.join(CONFIG, "policy-up.yaml"), "serve": os.path.join(CONFIG, "policy-serve.yaml")}
    rows = []
    for system in report["systems"]:
        name = system["name"]
        kind = "split" if "split" in name else "serve"
        cluster = cluster_file(os.path.join(args.work, f"cluster-{kind}.yaml"), kind, references[kind])
        for level in system["levels"]:
            rate = level.get("rate")
            trace = trace_file(os.path.join(args.work, f"trace-{kind}-{rate}.jsonl"), level["records"])
            sim = last_json(run([baton, "simulate", "--cluster", cluster, "--policy", policies[kind], "--costs", costs[kind],
                                 "--trace", trace, "--json"], stdout=subprocess.PIPE, text=True).stdout)
            simulated = sim["systems"][0]["levels"][0]
            measured_ttft, measured_itl = level["ttft_ms"]["p50"], level["itl_ms"]["p50"]
            sim_ttft, sim_itl = simulated["ttft_ms"]["p50"], simulated["itl_ms"]["p50"]
            rows.append({"system": kind, "rate": rate, "requests": level["succeeded"],
                         "ttft_p50_measured_ms": measured_ttft, "ttft_p50_simulated_ms": sim_ttft,
                         "ttft_error": sim_ttft / measured_ttft - 1 if measured_ttft else None,
                         "itl_p50_measured_ms": measured_itl, "itl_p50_simulated_ms": sim_itl,
                         "itl_error": sim_itl / measured_itl - 1 if measured_itl else None})

    print(f"{'system':8} {'rate/s':>6} {'ok':>4}  {'TTFT p50 measured':>17} {'simulated':>9} {'error':>7}  "
          f"{'ITL p50 measured':>16} {'simulated':>9} {'error':>7}")
    for r in rows:
        def err(e):
            return f"{e * 100:+6.0f}%" if e is not None else "      -"
        print(f"{r['system']:8} {r['rate']:>6} {r['requests']:>4}  {r['ttft_p50_measured_ms']:>14.0f} ms {r['ttft_p50_simulated_ms']:>6.0f} ms "
              f"{err(r['ttft_error'])}  {r['itl_p50_measured_ms']:>13.1f} ms {r['itl_p50_simulated_ms']:>6.1f} ms {err(r['itl_error'])}")
    within = [abs(e) <= 0.2 for r in rows for e in (r["ttft_error"], r["itl_error"]) if e is not None]
    print(f"{sum(within)} of {len(within)} figures within ±20 % (machine load when the bench ran: "
          f"{report['configuration']['machine'].get('load_average')})")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
