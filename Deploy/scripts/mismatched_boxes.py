#!/usr/bin/env python3
"""Mismatched boxes on one machine, for real: policy placement against naive round-robin, measured and simulated.

Builds five hosts as network namespaces joined to this one by veth pairs (chaos.py's `Namespaces`): placement, the
router, a `prefill` worker and two decode workers, `decode-fast` and `decode-slow`, each with a host identity of its own
(`profile: host_id:`), so every prompt's KV crosses the links over mutual-TLS HTTP/2 (nothing through shared
memory). The decode boxes differ the way real ones do:
  - `decode-slow` runs in a cgroup v1 `cpu` group whose `cpu.cfs_quota_us` gives it --share of one core (a short
    --period-us, so that even the worker's quarter-second profile probes are throttled and its measured GFLOP/s
    and GB/s fall with it);
  - each worker's link is capped with `tc qdisc … tbf` on both ends of its veth (--fast-mbit for `prefill` and
    `decode-fast`, --slow-mbit for `decode-slow`) and delayed by chaos.py's userspace proxy (--fast-delay-ms, --slow-delay-ms;
    this kernel has no netem).
Nothing is declared: the workers measure their own profiles, and `baton cluster status` shows what they found.

Then the same workload (`baton bench serve`, Poisson arrivals at --rate, goodput at --slo) runs against the same
processes under two placement policies, switched by rewriting the policy file and SIGHUP to placement:
  - policy: --policy (default Deploy/config/policy.yaml: least_loaded scoring by the measured profiles);
  - round-robin: the same file with `balancing.strategy: round_robin` (each role's eligible workers in turn: the
    decode workers alternate).
--rounds > 1 alternates them again. Last, `baton simulate` runs the same boxes (the measured profiles, the links)
under both policies on the same workload, with a cost model from `baton simulate --calibrate` (--costs; calibrated
at --threads when the file is missing).

Needs root, `ip`, `tc` and cgroup v1's cpu controller; without them (or with --loopback) the hosts run on 127.0.0.1
behind the same proxies, without tbf or the quota, and the output says so. --dry-run prints the set-up commands and
the simulator's cluster file for example profiles, running nothing.

Usage: python3 Deploy/scripts/mismatched_boxes.py [--baton PATH] [--rate 1] [--requests 30]
           [--slo ttft=2s,itl=100ms] [--share 0.1] [--rounds 1] [--costs FILE] [--json] [--dry-run]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import REPO, Cluster, find_baton  # noqa: E402
from chaos import Links, Namespaces, Proxy, ProxiedLoopback, namespaces_unavailable  # noqa: E402

# Worker names start with their role: `baton certs` gives each node the roles its name begins with.
HOSTS = ("placement", "router", "prefill", "decode-fast", "decode-slow")
ROLES = {"prefill": "prefill", "decode-fast": "decode", "decode-slow": "decode"}
CGROUP_CPU = "/sys/fs/cgroup/cpu"


def tbf_commands(device, mbit, namespace=None):
    """`tc` commands capping `device` (in `namespace`, or here) at `mbit` megabits per second. The bucket holds 10 ms
    of traffic (at least 32 kbit), and packets wait at most 100 ms before tbf drops them."""
    burst_kbit = max(32, int(mbit * 10))
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return [prefix + ["tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{mbit:g}mbit",
                      "burst", f"{burst_kbit}kbit", "latency", "100ms"]]


def cgroup_plan(name, share, period_us):
    """(folder, {file: value}) of a cgroup v1 cpu group holding `share` of one core: quota = share × period, at least
    the kernel's 1 ms."""
    quota = max(1000, int(round(share * period_us)))
    return os.path.join(CGROUP_CPU, name), {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota)}


class Throttled:
    """A `Cluster` placement (`Namespaces`, `ProxiedLoopback`) whose processes on some hosts start inside a cgroup:
    the command prefix moves the shell into the group before it execs the rest, so the worker is born there."""

    def __init__(self, net, groups):
        self.net, self.groups = net, groups

    def command(self, name):
        prefix = []
        if name in self.groups:
            prefix = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.groups[name]]
        return prefix + self.net.command(name)

    def __getattr__(self, attribute):
        return getattr(self.net, attribute)


class Boxes(Cluster):
    """chaos.py's cluster with a prefill worker and two decode workers that measure their own profiles: only the
    host id is declared."""
    WORKERS = tuple(ROLES)

    def start_worker(self, name):
        config = os.path.join(self.dir, f"{name}.yaml")
        with open(config, "w") as f:
            f.write(f"name: {name}\nrole: {ROLES[name]}\nthreads: {self.threads}\nprofile: {{host_id: {name}-host}}\n")
        port = self.ports[name]
        self.spawn(name, ["worker", "--role", ROLES[name], "--placement", self.placement_address, "--listen",
                          f"{self.net.bind(name)}:{port}", "--advertise", self.net.reach(name, port), "--certs",
                          self.certs, "--node", name, "--config", config, "--context", "1024", "--threads",
                          str(self.threads)])
        # One at a time: each worker measures its profile at start, and two probes at once would measure each other.
        self.wait_active({name}, timeout=300)

    def set_policy(self, text):
        """Rewrites the policy file, has placement reload it (SIGHUP), and waits until it has and the router had
        time to receive the new snapshot."""
        before = (self.status() or {}).get("policy_loaded_at")
        with open(self.policy, "w") as f:
            f.write(text)
        self.procs["placement"].send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            status = self.status() or {}
            if status.get("policy_error"):
                raise RuntimeError(f"placement refused the policy: {status['policy_error']}")
            if status.get("policy_loaded_at") not in (None, before):
                time.sleep(3)  # the router's watch stream brings the new policy with the next snapshot
                return
            time.sleep(0.3)
        raise RuntimeError("placement did not reload the policy")


def round_robin(policy_text):
    """`policy_text` with its top-level `balancing` block replaced by `balancing: {strategy: round_robin}`."""
    out, skipping = [], False
    for line in policy_text.splitlines():
        if line.startswith("balancing:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out).rstrip() + "\nbalancing:\n  strategy: round_robin\n"


def simulate_cluster(profiles, links, max_batch=8, context=1024):
    """The simulator's cluster file for `profiles` (name → `cluster status` profile) and `links` (name →
    (mbit, one-way delay ms)): each worker on a host of its own, in its role (`ROLES`)."""
    lines = ["# Written by Deploy/scripts/mismatched_boxes.py from the profiles the workers measured.",
             "heartbeat_interval_ms: 1000", "workers:"]
    for name in sorted(profiles):
        p = profiles[name]
        mbit, delay_ms = links[name]
        lines += [f"  - name: {name}",
                  f"    role: {ROLES.get(name, 'both')}",
                  f"    profile: {{sgemm_gflops: {p['sgemm_gflops']:.3f}, memory_read_gbps: {p['memory_read_gbps']:.3f}, "
                  f"memory_total: {int(p.get('memory_total_bytes', 8 << 30))}, cores: {int(p.get('cores', 1))}, "
                  f"host_id: {name}-host}}",
                  f"    link: {{bandwidth_gbps: {mbit / 8000:.6f}, latency_ms: {delay_ms}}}",
                  f"    max_batch: {max_batch}",
                  f"    context: {context}"]
    return "\n".join(lines) + "\n"


def goodput_of(report):
    """(goodput, summary) of the first system's one level in a `bench serve --json` / `simulate --json` report."""
    systems = report.get("systems") or [{}]
    levels = systems[0].get("levels") or []
    if not levels:
        raise ValueError("the report has no levels")
    summary = levels[0].get("summary", levels[0])
    return summary.get("goodput"), summary


def decode_shares(before, after):
    """Requests each decode worker took between two readings of the router's metrics
    (`baton_router_worker_requests_total{role="decode",…}`)."""
    shares = {}
    for key, value in after.items():
        if key.startswith("baton_router_worker_requests_total") and 'role="decode"' in key:
            worker = key.split('worker="')[1].split('"')[0]
            shares[worker] = int(value - before.get(key, 0))
    return shares


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON report in the output:\n{text[-2000:]}")


def line(summary):
    t, i = summary.get("ttft_ms") or {}, summary.get("itl_ms") or {}
    return (f"ok {summary.get('succeeded')}/{summary.get('requests')}, TTFT p50 {t.get('p50', 0):.0f} ms, "
            f"ITL p50 {i.get('p50', 0):.1f} ms, goodput {summary.get('goodput') or 0:.3f}/s "
            f"({100 * (summary.get('slo_attainment') or 0):.0f} % met the SLO)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baton")
    parser.add_argument("--threads", type=int, default=1, help="engine threads of each worker")
    parser.add_argument("--share", type=float, default=0.1, help="share of one core the slow box gets")
    parser.add_argument("--period-us", type=int, default=10000, help="cfs period of the slow box's quota")
    parser.add_argument("--fast-mbit", type=float, default=1000)
    parser.add_argument("--slow-mbit", type=float, default=50)
    parser.add_argument("--fast-delay-ms", type=float, default=0.5)
    parser.add_argument("--slow-delay-ms", type=float, default=20)
    parser.add_argument("--policy", default=os.path.join(REPO, "Deploy/config/policy.yaml"))
    parser.add_argument("--preset", default="short-chat")
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--slo", default="ttft=2s,itl=100ms")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--costs", default=os.path.expanduser("~/.cache/baton/simulate-costs-1t.json"))
    parser.add_argument("--simulate-requests", type=int, default=400,
                        help="requests of each simulated run (more than the measured ones: steadier figures)")
    parser.add_argument("--loopback", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the folder with the logs")
    args = parser.parse_args()
    links = {"prefill": (args.fast_mbit, args.fast_delay_ms), "decode-fast": (args.fast_mbit, args.fast_delay_ms),
             "decode-slow": (args.slow_mbit, args.slow_delay_ms)}
    group, group_files = cgroup_plan(f"baton-boxes-{os.getpid()}", args.share, args.period_us)
    with open(args.policy) as f:
        policy_text = f.read()

    if args.dry_run:
        for name in ROLES:
            for side, namespace in ((f"hub-veth-{name}", None), (f"veth-{name}", f"ns-{name}")):
                for command in tbf_commands(side, links[name][0], namespace):
                    print(" ".join(command))
        for file, value in group_files.items():
            print(f"echo {value} > {os.path.join(group, file)}")
        print("--- round-robin policy")
        print(round_robin(policy_text), end="")
        print("--- simulated cluster")
        example = {"prefill": {"sgemm_gflops": 95.0, "memory_read_gbps": 18.0, "cores": 2},
                   "decode-fast": {"sgemm_gflops": 95.0, "memory_read_gbps": 18.0, "cores": 2},
                   "decode-slow": {"sgemm_gflops": 95.0 * args.share, "memory_read_gbps": 18.0 * args.share, "cores": 2}}
        print(simulate_cluster(example, links), end="")
        return 0

    baton = find_baton(args.baton)
    directory = tempfile.mkdtemp(prefix="baton-boxes-")
    why_not = "--loopback" if args.loopback else namespaces_unavailable()
    if why_not is None and not os.path.isdir(CGROUP_CPU):
        why_not = f"no cgroup v1 cpu controller at {CGROUP_CPU}"
    notes = []
    cluster = namespaces = None
    try:
        delays = {name: links[name][1] / 1000 for name in links}
        proxy_links = Links(delays, "stall")
        if why_not is None:
            namespaces = Namespaces(HOSTS)
            namespaces.proxy = Proxy(proxy_links, namespaces.host_of_address)
            for name in ROLES:
                i = namespaces.index[name]
                tag = os.getpid() % 10000
                for command in (tbf_commands(f"bc{tag}h{i}", links[name][0])
                                + tbf_commands(f"bc{tag}n{i}", links[name][0], namespaces.names[name])):
                    subprocess.run(command, check=True, capture_output=True)
            os.makedirs(group, exist_ok=True)
            for file, value in group_files.items():
                with open(os.path.join(group, file), "w") as f:
                    f.write(value)
            net = Throttled(namespaces, {"decode-slow": group})
            where = "network namespaces, tbf-capped veths, the slow box in a cpu cgroup"
        else:
            net = ProxiedLoopback()
            net.proxy = Proxy(proxy_links, net.host_of_address)
            where = f"loopback ({why_not}): no tbf, no CPU quota — the boxes do not differ"
            notes.append(where)
        started = time.time()
        cluster = Boxes(baton, args.threads, directory, net=net, host_ids=True, policy=policy_text)
        status = cluster.status() or {}
        profiles = {w["name"]: w["profile"] for w in status.get("workers", [])}
        if not args.json:
            print(f"hosts: {where}; cluster up in {time.time() - started:.0f} s")
            for name in sorted(profiles):
                p = profiles[name]
                print(f"  {name}: sgemm {p['sgemm_gflops']:.1f} GFLOP/s, memory read {p['memory_read_gbps']:.1f} GB/s, "
                      f"link {links[name][0]:g} Mbit/s + {links[name][1]:g} ms each way")

        url = "http://%s:%d" % cluster.router_address
        runs = []
        variants = [("policy", policy_text), ("round-robin", round_robin(policy_text))]
        for round_index in range(args.rounds):
            for label, text in variants:
                cluster.set_policy(text)
                load = os.getloadavg()[0]
                before = cluster.metrics()
                result = subprocess.run(
                    [baton, "bench", "serve", "--url", url, "--preset", args.preset, "--rate", str(args.rate),
                     "--requests", str(args.requests), "--slo", args.slo, "--seed", str(args.seed + round_index),
                     "--temperature", "0", "--json"], capture_output=True, text=True)
                if result.returncode != 0:
                    raise RuntimeError(f"bench serve failed: {result.stderr[-2000:]}")
                goodput, summary = goodput_of(last_json(result.stdout))
                shares = decode_shares(before, cluster.metrics())
                runs.append({"round": round_index, "policy": label, "load_average": load, "goodput": goodput,
                             "decode_requests": shares, "summary": summary})
                if not args.json:
                    took = ", ".join(f"{name} {count}" for name, count in sorted(shares.items()))
                    print(f"measured {label:12s} (load {load:.1f}): {line(summary)}; decode requests: {took}")

        simulated = []
        if not os.path.exists(args.costs):
            if not args.json:
                print(f"calibrating the simulator's cost model into {args.costs} …")
            subprocess.run([baton, "simulate", "--calibrate", "--threads", str(args.threads), "--costs", args.costs],
                           check=True, capture_output=True)
        cluster_file = os.path.join(directory, "simulated-cluster.yaml")
        with open(cluster_file, "w") as f:
            f.write(simulate_cluster(profiles, links))
        words = 100 if args.preset in ("short-chat", "multi-turn") else 2000
        measured_tokens = [r["summary"].get("prompt_tokens_mean") for r in runs if r["summary"].get("prompt_tokens_mean")]
        tokens_per_word = (sum(measured_tokens) / len(measured_tokens) / words) if measured_tokens else 1.3
        for label, text in variants:
            policy_file = os.path.join(directory, f"simulated-{label}.yaml")
            with open(policy_file, "w") as f:
                f.write(text)
            result = subprocess.run(
                [baton, "simulate", "--cluster", cluster_file, "--policy", policy_file, "--costs", args.costs,
                 "--preset", args.preset, "--rate", str(args.rate), "--requests", str(args.simulate_requests),
                 "--slo", args.slo, "--tokens-per-word", f"{tokens_per_word:.3f}", "--seed", str(args.seed), "--json"],
                capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"simulate failed: {result.stderr[-2000:]}")
            goodput, summary = goodput_of(last_json(result.stdout))
            simulated.append({"policy": label, "goodput": goodput, "summary": summary})
            if not args.json:
                print(f"simulated {label:11s}: {line(summary)}")

        def ratio(rows, round_index=None):
            by = {r["policy"]: r["goodput"] for r in rows if round_index is None or r.get("round") == round_index}
            return by["policy"] / by["round-robin"] if by.get("round-robin") else None

        report = {"where": where, "notes": notes, "profiles": profiles, "links_mbit_delay_ms": links,
                  "slow_share": args.share, "rate": args.rate, "requests": args.requests, "slo": args.slo,
                  "measured": runs, "simulated": simulated,
                  "measured_ratios": [ratio(runs, r) for r in range(args.rounds)], "simulated_ratio": ratio(simulated),
                  "simulated_cluster": simulate_cluster(profiles, links)}
        if args.json:
            print(json.dumps(report))
        else:
            ratios = ", ".join("n/a" if r is None else f"{r:.2f}×" for r in report["measured_ratios"])
            simulated_ratio = report["simulated_ratio"]
            print(f"goodput policy / round-robin: measured {ratios}; simulated "
                  f"{'n/a' if simulated_ratio is None else f'{simulated_ratio:.2f}×'}")
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        if namespaces is not None:
            namespaces.close()
        if os.path.isdir(group):
            try:
                os.rmdir(group)
            except OSError:
                pass
        if args.keep:
            print(f"logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
