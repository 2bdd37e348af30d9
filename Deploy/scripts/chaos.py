#!/usr/bin/env python3
"""Chaos with real processes across hosts: nothing one failure can break, checked from the client's side.

Starts placement, the router, one prefill worker and two decode workers (mutual TLS), each a
host of its own: its own network namespace joined to this one by a veth pair (10.x addresses; needs root and
`ip`), and its own host identity (`profile: host_id:`), so KV goes over mutual-TLS HTTP/2 rather than shared
memory. Every connection between hosts passes a userspace TCP proxy in this script that adds each link's delay
(seeded, --delay-ms) and can cut a host's link: its connections stop moving (--cut-mode stall) or are reset and
refused (--cut-mode reset) until the cut ends. Where namespaces cannot be made (not root, no `ip`), or with
--loopback, the same hosts run on 127.0.0.1 behind the same proxies and the output says so; there a cut stops
the connections *to* the host only (this script cannot tell which host opened a loopback connection).

It runs --streams concurrent chat streams (greedy and seeded, short prompts and ~190-token ones) once undisturbed,
then keeps them running in rounds while, in a seeded random order with random gaps, it
  - kills a decode worker with SIGKILL and restarts it --restart-after seconds later (as `baton up` would),
  - kills the prefill worker the same way,
  - kills placement the same way (restarted on its state folder),
  - cuts one decode worker's link for --cut-seconds,
each after the previous one has recovered. Every stream's text is compared with the undisturbed run of the same
request. Reports requests, client-visible failures, texts differing, migrations by reason (the router's
`baton_router_migrations_total`), KV bytes by transport and the longest pause mid-stream. Exits 1 when any
stream failed or differs, 2 when the cluster could not be set up.

Against a cluster of your own (--router URL): runs the streams once undisturbed, then in rounds for --duration
seconds while you kill processes or cut links yourself, and reports the same (the router's /metrics when it is
reachable at the same URL).

Usage: python3 Deploy/scripts/chaos.py [--baton PATH] [--streams 8] [--max-tokens 48] [--seed N]
           [--events decode,prefill,placement,cut] [--cut-seconds 10] [--loopback] [--json]
       python3 Deploy/scripts/chaos.py --router http://HOST:PORT [--model ID] [--duration 60] [--streams 8]
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import Cluster, Loopback, Stream, find_baton, free_port, percentile, router_metrics  # noqa: E402
from migration_pause import PROMPTS  # noqa: E402

HOSTS = ("placement", "router") + Cluster.WORKERS
EVENTS = ("decode", "prefill", "placement", "cut")


class Links:
    """Each host's link to the hub: its one-way delay, and until when it is cut. Read by the proxy's event loop,
    changed from the chaos thread (single assignments of immutable values)."""

    def __init__(self, delays, cut_mode):
        self.delays, self.cut_mode = delays, cut_mode
        self.cut_until = {}
        self.loop = None
        self.connections = set()

    def delay(self, *hosts):
        return sum(self.delays.get(h, 0.0) for h in hosts if h)

    def is_cut(self, *hosts):
        now = time.monotonic()
        return any(self.cut_until.get(h, 0) > now for h in hosts if h)

    def cut(self, host, seconds):
        self.cut_until[host] = time.monotonic() + seconds
        if self.cut_mode == "reset":
            self.loop.call_soon_threadsafe(self._reset, host)

    def _reset(self, host):
        for connection in list(self.connections):
            if host in connection.hosts:
                connection.abort()

    async def wait_open(self, hosts):
        while self.is_cut(*hosts):
            await asyncio.sleep(0.05)


class Connection:
    """One proxied TCP connection between two hosts (the source is None when it cannot be told)."""

    def __init__(self, hosts, writers):
        self.hosts, self.writers = hosts, writers

    def abort(self):
        for writer in self.writers:
            writer.transport.abort()


class Proxy:
    """Userspace TCP proxies, one per listener, on an asyncio loop in a thread of their own."""

    def __init__(self, links, host_of_address):
        self.links, self.host_of_address = links, host_of_address
        self.loop = asyncio.new_event_loop()
        links.loop = self.loop
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def listen(self, listen_host, listen_port, target_host, target_port, host):
        """Forwards connections to listen_host:listen_port to target_host:target_port, host `host`'s listener."""
        async def serve():
            return await asyncio.start_server(lambda r, w: self.handle(r, w, target_host, target_port, host),
                                              listen_host, listen_port, reuse_address=True)
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)

    async def handle(self, reader, writer, target_host, target_port, host):
        peer = writer.get_extra_info("peername")
        hosts = (self.host_of_address(peer[0]) if peer else None, host)
        connection = Connection(hosts, [writer])
        self.links.connections.add(connection)
        try:
            if self.links.cut_mode == "reset" and self.links.is_cut(*hosts):
                writer.transport.abort()
                return
            await self.links.wait_open(hosts)  # a cut link: the new connection stalls until the cut ends
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
            except OSError:
                writer.transport.abort()
                return
            connection.writers.append(upstream_writer)
            delay = self.links.delay(*hosts)
            await asyncio.gather(self.pump(reader, upstream_writer, delay, hosts, connection),
                                 self.pump(upstream_reader, writer, delay, hosts, connection))
        finally:
            self.links.connections.discard(connection)
            for w in connection.writers:
                w.close()

    async def pump(self, reader, writer, delay, hosts, connection):
        """Copies one direction, each chunk held until `delay` after it was read; a cut stops both ends."""
        queue = asyncio.Queue()

        async def read():
            while True:
                await self.links.wait_open(hosts)
                try:
                    data = await reader.read(1 << 16)
                except OSError:
                    data = None
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return

        async def write():
            while True:
                due, data = await queue.get()
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                await self.links.wait_open(hosts)
                try:
                    if data is None:  # the other side reset: pass the reset on
                        connection.abort()
                        return
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
                except OSError:
                    connection.abort()
                    return

        await asyncio.gather(read(), write())


class Namespaces:
    """Each host in a network namespace of its own, joined to this (the hub) by a veth pair: host i is
    10.X.i.2/24 on its side, the hub 10.X.i.1 on its. Nothing forwards between the namespaces: a host reaches
    another only through the hub's proxy on 10.X.j.1, which connects to 10.X.j.2."""
    description = "network namespaces"

    def __init__(self, hosts):
        self.remove_stale()
        tag = os.getpid() % 10000
        self.prefix = f"10.{100 + os.getpid() % 100}"
        self.names, self.index = {}, {}
        try:
            for i, host in enumerate(hosts, start=1):
                namespace = f"baton-chaos-{os.getpid()}-{host}"
                self.names[host], self.index[host] = namespace, i
                hub, side = f"bc{tag}h{i}", f"bc{tag}n{i}"
                run("ip", "netns", "add", namespace)
                run("ip", "link", "add", hub, "type", "veth", "peer", "name", side)
                run("ip", "link", "set", side, "netns", namespace)
                run("ip", "addr", "add", f"{self.prefix}.{i}.1/24", "dev", hub)
                run("ip", "link", "set", hub, "up")
                run("ip", "-n", namespace, "link", "set", "lo", "up")
                run("ip", "-n", namespace, "addr", "add", f"{self.prefix}.{i}.2/24", "dev", side)
                run("ip", "-n", namespace, "link", "set", side, "up")
                run("ip", "-n", namespace, "route", "add", "default", "via", f"{self.prefix}.{i}.1")
        except Exception:
            self.close()
            raise
        self.proxy = None
        self.proxied = {}

    @staticmethod
    def remove_stale():
        """Deletes the namespaces (and with them the veth pairs) of runs that were killed before cleaning up."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for namespace in (line.split()[0] for line in listed.splitlines() if line.startswith("baton-chaos-")):
            pid = namespace.split("-")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def close(self):
        for namespace in self.names.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def command(self, name):
        return ["ip", "netns", "exec", self.names[name]]

    def bind(self, name):
        return f"{self.prefix}.{self.index[name]}.2"

    def reach(self, name, port):
        if (name, port) not in self.proxied:
            hub = f"{self.prefix}.{self.index[name]}.1"
            self.proxy.listen(hub, port, self.bind(name), port, name)
            self.proxied[(name, port)] = f"{hub}:{port}"
        return self.proxied[(name, port)]

    def local(self, name, port):
        return (self.bind(name), port)

    def host_of_address(self, address):
        for host, i in self.index.items():
            if address == f"{self.prefix}.{i}.2":
                return host
        return None


class ProxiedLoopback(Loopback):
    """Every host on 127.0.0.1, each listener behind a proxy port of its own."""
    description = "loopback"

    def __init__(self):
        self.proxy = None
        self.proxied = {}

    def reach(self, name, port):
        if (name, port) not in self.proxied:
            proxy_port = free_port()
            self.proxy.listen("127.0.0.1", proxy_port, "127.0.0.1", port, name)
            self.proxied[(name, port)] = f"127.0.0.1:{proxy_port}"
        return self.proxied[(name, port)]

    def host_of_address(self, address):
        return None

    def close(self):
        pass


def run(*command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def namespaces_unavailable():
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no `ip` command"
    probe = f"baton-chaos-probe-{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Clients:
    """--streams client threads, each sending its request again and again until `stop` is set; every outcome
    is kept for the comparison."""

    def __init__(self, requests, start_stream):
        self.requests, self.start_stream = requests, start_stream
        self.outcomes = []  # (request index, Stream)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(len(requests))]
        for thread in self.threads:
            thread.start()

    def loop(self, index):
        while not self.stop.is_set():
            stream = self.start_stream(self.requests[index])
            stream.join()
            self.outcomes.append((index, stream))

    def join(self):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def run_once(requests, start_stream):
    streams = [start_stream(request) for request in requests]
    for stream in streams:
        stream.join()
    return streams


def migrations_by_reason(before, after):
    moved = {}
    for key, value in after.items():
        if key.startswith("baton_router_migrations_total"):
            reason = key.split('reason="')[1].split('"')[0] if 'reason="' in key else ""
            delta = value - before.get(key, 0)
            if delta:
                moved[reason] = int(delta)
    return moved


def kv_bytes_by_transport(before, after):
    moved = {}
    for key, value in after.items():
        if key.startswith("baton_router_kv_transfer_bytes_total{"):
            delta = value - before.get(key, 0)
            if delta:
                moved[key.split('transport="')[1].split('"')[0]] = int(delta)
    return moved


def compare(reference, outcomes, started):
    """Counts the failed streams and those whose text differs from the undisturbed run's, naming each."""
    failures, differing = 0, 0
    for index, stream in outcomes:
        which = f"request {index} ({stream.id}, sent at t={stream.started - started:.1f}s)"
        if stream.error or not stream.done:
            failures += 1
            print(f"{which} failed: {stream.error or 'no [DONE]'}", file=sys.stderr)
        elif stream.text != reference[index].text:
            differing += 1
            print(f"{which} differs:\n  got      {stream.text!r}\n  expected {reference[index].text!r}",
                  file=sys.stderr)
    return failures, differing


def summary(mode, seed, reference, outcomes, before, after, events, started, chaos_started):
    failures, differing = compare(reference, outcomes, chaos_started)
    gaps = [s.longest_gap for _, s in outcomes if s.longest_gap is not None]
    undisturbed = [s.longest_gap for s in reference if s.longest_gap is not None]
    ms = lambda v: None if v is None else round(v * 1000)  # noqa: E731
    return {
        "mode": mode, "seed": seed, "events": events,
        "seconds": round(time.monotonic() - started, 1),
        "requests": len(outcomes), "failed": failures, "differing": differing,
        "migrations_by_reason": migrations_by_reason(before, after) if after is not None else None,
        "kv_bytes_by_transport": kv_bytes_by_transport(before, after) if after is not None else None,
        "longest_pause_per_stream_ms": {"p50": ms(percentile(gaps, 50)), "p99": ms(percentile(gaps, 99)),
                                        "max": ms(max(gaps, default=None))},
        "undisturbed_longest_pause_ms": {"p50": ms(percentile(undisturbed, 50)), "max": ms(max(undisturbed, default=None))},
    }


def report(result, as_json):
    if as_json:
        print(json.dumps(result, indent=2))
        return
    seed = f"; seed {result['seed']}" if result["seed"] is not None else ""
    print(f"mode: {result['mode']}{seed}; {result['seconds']} s")
    for event in result["events"]:
        print(f"  t={event['at']:.1f}s {event['what']}" + (f" (recovered in {event['recovered_s']} s)"
                                                            if "recovered_s" in event else ""))
    print(f"requests {result['requests']}, failed {result['failed']}, differing {result['differing']}")
    print(f"migrations by reason: {result['migrations_by_reason']}; KV bytes by transport: "
          f"{result['kv_bytes_by_transport']}")
    pause = result["longest_pause_per_stream_ms"]
    print(f"longest pause mid-stream per request: p50 {pause['p50']} ms, p99 {pause['p99']} ms, max {pause['max']} ms "
          f"(undisturbed: p50 {result['undisturbed_longest_pause_ms']['p50']} ms)")


def own_cluster(args, requests):
    """--router URL: the user's cluster; the user disturbs it while the streams run."""
    url = urllib.parse.urlsplit(args.router.rstrip("/"))
    host, port, path = url.hostname, url.port or 80, url.path.removesuffix("/v1")
    base = f"http://{host}:{port}{path}"
    model = args.model
    if model is None:
        with urllib.request.urlopen(base + "/v1/models", timeout=10) as response:
            model = json.loads(response.read())["data"][0]["id"]

    def metrics():
        try:
            return router_metrics(lambda: urllib.request.urlopen(base + "/metrics", timeout=5).read().decode())
        except OSError:
            return None

    def start_stream(request):
        return Stream(port, *request, args.max_tokens, host=host, model=model, path=path)

    started = time.monotonic()
    reference = run_once(requests, start_stream)
    if any(s.error or not s.done for s in reference):
        print(f"the undisturbed run failed: {[s.error for s in reference if s.error]}", file=sys.stderr)
        return 2
    before = metrics() or {}
    print(f"undisturbed run done; for the next {args.duration:.0f} s kill workers, placement, cut links...",
          file=sys.stderr, flush=True)
    clients, chaos_started = Clients(requests, start_stream), time.monotonic()
    time.sleep(args.duration)
    clients.join()
    after = metrics()
    result = summary(f"your cluster at {base}", None, reference, clients.outcomes, before, after,
                     [{"at": 0.0, "what": f"{args.duration:.0f} s of whatever you did"}], started, chaos_started)
    report(result, args.json)
    return 0 if result["failed"] == 0 and result["differing"] == 0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baton")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, help="seeds the events' order, moments, targets and link delays (default: random, printed)")
    parser.add_argument("--events", default=",".join(EVENTS), help="comma-separated subset of " + ",".join(EVENTS))
    parser.add_argument("--gap", default="1:4", help="MIN:MAX seconds before each event (default 1:4)")
    parser.add_argument("--restart-after", type=float, default=3, help="seconds a killed process stays down")
    parser.add_argument("--cut-seconds", type=float, default=10)
    parser.add_argument("--cut-mode", choices=("stall", "reset"), default="stall")
    parser.add_argument("--delay-ms", default="5:20", help="MIN:MAX one-way delay of each host's link (default 5:20)")
    parser.add_argument("--loopback", action="store_true", help="run on loopback even where namespaces can be made")
    parser.add_argument("--router", help="a running cluster's router URL: run the streams there, disturb it yourself")
    parser.add_argument("--model", help="with --router: the model id (default: the first of /v1/models)")
    parser.add_argument("--duration", type=float, default=60, help="with --router: seconds of disturbed rounds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (their folder is printed)")
    args = parser.parse_args()
    # SIGTERM (a test's timeout, Ctrl-C's sibling) still stops the processes and removes the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    events = [e for e in args.events.split(",") if e]
    unknown = set(events) - set(EVENTS)
    if unknown:
        parser.error(f"--events: unknown {sorted(unknown)}; choose from {','.join(EVENTS)}")
    try:
        gap = tuple(float(v) for v in args.gap.split(":"))
        delay = tuple(float(v) / 1000 for v in args.delay_ms.split(":"))
        assert len(gap) == 2 and len(delay) == 2 and 0 <= gap[0] <= gap[1] and 0 <= delay[0] <= delay[1]
    except (ValueError, AssertionError):
        parser.error("--gap and --delay-ms take MIN:MAX with 0 <= MIN <= MAX")
    requests = [PROMPTS[i % len(PROMPTS)] for i in range(args.streams)]
    if args.router:
        return own_cluster(args, requests)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    print(f"chaos seed {seed} (--seed {seed} repeats the events, targets and delays)", file=sys.stderr, flush=True)
    baton = find_baton(args.baton)
    links = Links({host: rng.uniform(*delay) for host in HOSTS}, args.cut_mode)
    why_not = "--loopback given" if args.loopback else namespaces_unavailable()
    directory = tempfile.mkdtemp(prefix="baton-chaos-")
    net, cluster = None, None
    try:
        try:
            net = ProxiedLoopback() if why_not else Namespaces(HOSTS)
            net.proxy = Proxy(links, net.host_of_address)
            mode = net.description + (f" ({why_not}; a cut stops only the connections to the host)" if why_not else "")
            print(f"mode: {mode}", file=sys.stderr, flush=True)
            # The default heartbeat timeout (10 s): it must exceed the workers' reconnect backoff (up to 5 s), or
            # a restarted placement marks every worker it restored lost before their next heartbeat arrives.
            cluster = Cluster(baton, args.threads, directory, net=net, host_ids=True,
                              policy="slo: {ttft_ms: 600000, tpot_ms: 600000}\nresume: {max_migrations: 3}\n")
        except Exception as error:  # noqa: BLE001 - any set-up failure ends the run with its reason
            print(f"could not set up the cluster: {error}", file=sys.stderr)
            return 2
        host, port = cluster.router_address

        def start_stream(request):
            return Stream(port, *request, args.max_tokens, host=host)

        started = time.monotonic()
        reference = run_once(requests, start_stream)
        if any(s.error or not s.done for s in reference):
            print(f"the undisturbed run failed: {[s.error for s in reference if s.error]}", file=sys.stderr)
            return 2
        before = cluster.metrics()
        plan = rng.sample(events, len(events))
        clients = Clients(requests, start_stream)
        chaos_started, log = time.monotonic(), []
        for event in plan:
            time.sleep(rng.uniform(*gap))
            at = time.monotonic() - chaos_started
            if event == "cut":
                target = rng.choice(("decode-0", "decode-1"))
                what = f"cut {target}'s link for {args.cut_seconds:g} s ({args.cut_mode})"
            else:
                target = {"decode": rng.choice(("decode-0", "decode-1")), "prefill": "prefill-0",
                          "placement": "placement"}[event]
                what = f"kill -9 {target}, restarted {args.restart_after:g} s later"
            print(f"t={at:.1f}s {what}", file=sys.stderr, flush=True)
            if event == "cut":
                links.cut(target, args.cut_seconds)
                time.sleep(args.cut_seconds)
            else:
                cluster.kill(target)
                time.sleep(args.restart_after)
                cluster.start_placement() if target == "placement" else cluster.start_worker(target)
            cluster.wait_active(set(Cluster.WORKERS) if target == "placement" else {target})
            log.append({"at": round(at, 1), "what": what,
                        "recovered_s": round(time.monotonic() - chaos_started - at, 1)})
        clients.join()
        result = summary(mode, seed, reference, clients.outcomes, before, cluster.metrics(), log, started, chaos_started)
        report(result, args.json)
        return 0 if result["failed"] == 0 and result["differing"] == 0 else 1
    finally:
        if cluster:
            cluster.stop()
        if net:
            net.close()
        if args.keep_logs:
            print(f"logs: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
