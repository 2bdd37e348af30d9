"""What the scripts that start `baton` processes share: finding the binary and a free port, a cluster of real
processes (placement, workers, router) on loopback or across network namespaces, and a chat stream client."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))


def find_baton(explicit=None):
    """`explicit`, else $BATON_BIN, else this checkout's release build, a `baton` on PATH, or the debug build."""
    if explicit:
        return explicit
    if os.environ.get("BATON_BIN"):
        return os.environ["BATON_BIN"]
    for candidate in (os.path.join(REPO, ".build/release/baton"), shutil.which("baton"),
                      os.path.join(REPO, ".build/debug/baton")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("baton binary not found: build it (swift build -c release --product baton), set BATON_BIN or pass --baton PATH")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    """The nearest-rank `p`th percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Loopback:
    """Where each process of a `Cluster` runs and how it is reached: here, all on 127.0.0.1, directly."""
    description = "loopback"

    def command(self, name):
        """The prefix that runs a process on host `name` (none: this host)."""
        return []

    def bind(self, name):
        """The address the process on host `name` listens on."""
        return "127.0.0.1"

    def reach(self, name, port):
        """HOST:PORT the other processes use for host `name`'s listener on `port` (what it advertises)."""
        return f"127.0.0.1:{port}"

    def local(self, name, port):
        """(host, port) this script uses for host `name`'s listener on `port`."""
        return ("127.0.0.1", port)


class Cluster:
    """Placement, one prefill worker, two decode workers and a router as `baton` processes with mutual TLS, placed
    by `net` (default: all on loopback). `host_ids` gives each worker a host identity of its own (`profile:
    host_id:`), so KV goes over mutual-TLS HTTP/2 even where the processes share /dev/shm. Process logs go to
    `directory`."""

    WORKERS = ("prefill-0", "decode-0", "decode-1")

    def __init__(self, baton, threads, directory, net=None, host_ids=False,
                 policy="slo: {ttft_ms: 600000, tpot_ms: 600000}\nmembership: {heartbeat_timeout_seconds: 3}\n"
                        "resume: {max_migrations: 3}\n"):
        self.baton, self.threads, self.dir = baton, threads, directory
        self.net = net or Loopback()
        self.host_ids = host_ids
        self.certs = os.path.join(directory, "certs")
        subprocess.run([baton, "certs", "--out", self.certs, "--nodes",
                        "placement,router," + ",".join(self.WORKERS)], check=True, capture_output=True)
        self.policy = os.path.join(directory, "policy.yaml")
        with open(self.policy, "w") as f:
            f.write(policy)
        self.procs, self.ports = {}, {}
        try:
            self.start_all()
        except BaseException:
            self.stop()
            raise

    def start_all(self):
        self.ports["placement"] = free_port()
        self.placement_address = self.net.reach("placement", self.ports["placement"])
        self.start_placement()
        for name in self.WORKERS:
            self.ports[name] = free_port()
            self.start_worker(name)
        self.ports["router"] = free_port()
        self.router_address = self.net.local("router", self.ports["router"])
        self.spawn("router", ["router", "--placement", self.placement_address, "--certs", self.certs, "--node",
                              "router", "--host", self.net.bind("router"), "--port", str(self.ports["router"]),
                              "--context", "1024", "--served-model-name", "smollm2"])
        self.wait_active(set(self.WORKERS))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the router did not become ready")

    @property
    def router_port(self):
        return self.router_address[1]

    def spawn(self, name, arguments):
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(self.net.command(name) + [self.baton] + arguments, stdout=log, stderr=log)

    def start_placement(self):
        """Starts (or restarts, on the same state folder and address) the placement service."""
        host, port = self.net.bind("placement"), self.ports["placement"]
        self.spawn("placement", ["placement", "--config", self.policy, "--listen", f"{host}:{port}", "--state-dir",
                                 os.path.join(self.dir, "placement"), "--certs", self.certs, "--node", "placement"])

    def start_worker(self, name):
        """Starts (or restarts) worker `name` on `self.ports[name]`."""
        role = "prefill" if name.startswith("prefill") else "decode"
        config = os.path.join(self.dir, f"{name}.yaml")
        host_id = f", host_id: {name}-host" if self.host_ids else ""
        with open(config, "w") as f:
            f.write(f"name: {name}\nrole: {role}\nthreads: {self.threads}\nprofile: {{sgemm_gflops: 100, "
                    f"memory_read_gbps: 20, memory_total: 8GiB, memory_free: 4GiB, cores: 1, rdma_devices: []{host_id}}}\n")
        port = self.ports[name]
        arguments = ["worker", "--role", role, "--placement", self.placement_address, "--listen",
                     f"{self.net.bind(name)}:{port}", "--advertise", self.net.reach(name, port), "--certs", self.certs,
                     "--node", name, "--config", config, "--context", "1024", "--threads", str(self.threads)]
        self.spawn(name, arguments)

    def kill(self, name):
        """SIGKILL: no goodbye, connections just break."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def status(self, timeout=2):
        """`baton cluster status --json` from placement, or None while it does not answer."""
        host, port = self.net.local("placement", self.ports["placement"])
        result = subprocess.run([self.baton, "cluster", "status", "--placement", f"{host}:{port}", "--certs",
                                 self.certs, "--node", "router", "--json", "--timeout", str(timeout)],
                                capture_output=True, text=True)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def wait_active(self, names, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.status()
            if status is not None:
                if names <= {w["name"] for w in status.get("workers", []) if w.get("status") == "active"}:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"workers {sorted(names)} did not become active")

    def get(self, path):
        connection = http.client.HTTPConnection(*self.router_address, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()

    def metrics(self):
        return router_metrics(lambda: self.get("/metrics")[1])

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait()


def router_metrics(fetch):
    """The router's `baton_router_*` samples from the text `fetch()` returns, keyed by name and labels."""
    values = {}
    for line in fetch().splitlines():
        if line.startswith("baton_router_"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


class Stream(threading.Thread):
    """One chat stream to the router at `host`:`port`; records each text delta with its arrival time."""

    def __init__(self, port, prompt, temperature, seed, max_tokens, host="127.0.0.1", model="smollm2", path=""):
        super().__init__(daemon=True)
        body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": temperature,
                "messages": [{"role": "user", "content": prompt}]}
        if seed is not None:
            body["seed"] = seed
        self.host, self.port, self.path, self.body = host, port, path, json.dumps(body)
        self.deltas, self.error, self.done, self.id = [], None, False, None
        self.started = time.monotonic()
        self.start()

    def run(self):
        try:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=300)
            connection.request("POST", self.path + "/v1/chat/completions", self.body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                self.error = f"HTTP {response.status}: {response.read()[:300]!r}"
                return
            while True:
                line = response.readline()
                if not line:
                    break
                line = line.decode().strip()
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    self.done = True
                    break
                event = json.loads(payload)
                self.id = self.id or event.get("id")
                if "error" in event:
                    self.error = json.dumps(event["error"])
                    continue
                for choice in event.get("choices", []):
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        self.deltas.append((time.monotonic(), content))
        except Exception as error:  # noqa: BLE001 - any transport failure is a failed stream
            self.error = f"transport: {error}"

    @property
    def text(self):
        return "".join(content for _, content in self.deltas)

    @property
    def longest_gap(self):
        """Seconds of the longest pause mid-stream: between two text deltas (None with fewer than two)."""
        times = [t for t, _ in self.deltas]
        return max((b - a for a, b in zip(times, times[1:])), default=None)
