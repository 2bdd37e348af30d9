"""Drives the router's page in headless Chromium (Chrome DevTools protocol) against a live `baton up`.

    python3 page_browser_check.py --url http://127.0.0.1:PORT --kill-pid PID --kill-name NAME --artifacts DIR

Checks, each printed as PASS/FAIL, then "N passed, M failed" (exit status 1 when any failed):
  - the page loads with no console errors, exceptions or failed loads (including Content-Security-Policy reports);
  - every form control has a label, and Tab reaches the message box, Send, the settings and placement's form;
  - a message typed and sent with the keyboard streams a reply (text grows over several updates) whose facts name
    the TTFT, tokens/s and the prefill and decode workers; Stop ends a long reply and frees it on the router;
  - model output with <script>, an <img onerror>, a javascript: link and markdown renders as text and safe elements;
  - the cluster table lists the workers; the worker the test kills (SIGKILL) shows as lost, with the event;
  - "why this placement" shows placement's candidates for a prompt length;
  - at 380 px wide the panels stack and nothing scrolls sideways.
Screenshots (wide, after the kill, narrow) go to --artifacts.

Only the standard library: a minimal WebSocket client (RFC 6455) is enough for the DevTools protocol.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class DevTools:
    """One DevTools WebSocket session: `call` sends a command and waits for its answer; events are queued."""

    def __init__(self, ws_url):
        assert ws_url.startswith("ws://"), ws_url
        host_port, _, path = ws_url[len("ws://"):].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head!r}")
        self.next_id = 0
        self.events = []

    def _read_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            data += chunk
        return data

    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read_message(self):
        message = b""
        while True:
            first, second = self._read_exact(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if second & 0x80 else None
            payload = self._read_exact(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            message += payload
            if first & 0x80:
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        self._send_frame(0x1, json.dumps({"id": ident, "method": method, "params": params}).encode())
        while True:
            message = self._read_message()
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def pump(self, seconds):
        """Reads events for `seconds` (while nothing else is asked)."""
        self.sock.settimeout(0.1)
        deadline = time.time() + seconds
        try:
            while time.time() < deadline:
                try:
                    message = self._read_message()
                except (socket.timeout, TimeoutError):
                    continue
                if "method" in message:
                    self.events.append(message)
        finally:
            self.sock.settimeout(60)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self.pump(0.25)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}")

    def key(self, key, code=None, text=None, key_code=0, shift=False):
        base = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_code, "modifiers": 8 if shift else 0}
        self.call("Input.dispatchKeyEvent", type="keyDown", **base, **({"text": text} if text else {}))
        self.call("Input.dispatchKeyEvent", type="keyUp", **base)

    def press_tab(self):
        self.key("Tab", key_code=9)

    def press_enter(self):
        self.key("Enter", key_code=13, text="\r")

    def screenshot(self, path, full_page=False):
        options = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            options["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", **options)["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return condition


def launch_chromium(binary, profile):
    process = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(port_file):
            lines = open(port_file).read().split("\n")
            if len(lines) >= 2 and lines[0].strip():
                port = int(lines[0])
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return process, pages[0]["webSocketDebuggerUrl"]
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with status {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("chromium did not open its DevTools port within 60 s")


def console_problems(events, expected=()):
    """Console errors, uncaught exceptions and failed loads (Log domain: network errors, CSP violations), except the
    failed loads in `expected`, (status, path) pairs: answers the page relies on (401 before it has a key; 404 from
    `/cluster/status`, asked once, is how it learns that the server has no cluster)."""
    problems = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            problems.append("exception: " + details.get("exception", {}).get("description", details.get("text", "?")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            if any(f"status of {status} " in entry.get("text", "") and (path is None or entry.get("url", "").endswith(path))
                   for status, path in expected):
                continue
            problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
    return problems


HOSTILE_REPLY = (
    "Here is the page you asked for:\n"
    "<script>window.__pwned = 'script'</script>\n"
    "<img src=x onerror=\"window.__pwned = 'img'\">\n"
    "[click me](javascript:window.__pwned='link') and [harmless](https://example.com/docs)\n"
    "[data](data:text/html,<script>alert(1)</script>)\n"
    "**bold** and `inline <b>code</b>`\n"
    "```html\n<script>alert('in a fence')</script>\n```\n"
)


def hostile_stream():
    """An OpenAI stream whose content is HOSTILE_REPLY, split into small chunks as a model would send it."""
    events = []
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "x"}
    events.append(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
    for start in range(0, len(HOSTILE_REPLY), 7):
        piece = HOSTILE_REPLY[start:start + 7]
        events.append(dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    body = "".join("data: " + json.dumps(e) + "\n\n" for e in events) + "data: [DONE]\n\n"
    return base64.b64encode(body.encode()).decode()


def metric(url, name):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.split("\n"):
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--kill-pid", type=int, help="a cluster worker to SIGKILL (cluster mode)")
    parser.add_argument("--kill-name", help="its name")
    parser.add_argument("--api-key", help="key mode: the server is `baton serve --api-keys` accepting this key")
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    report = Report()
    profile = tempfile.mkdtemp(prefix="baton-chromium-")
    chromium, ws_url = launch_chromium(args.chromium, profile)
    try:
        if args.api_key:
            run_with_key(args, report, DevTools(ws_url))
        else:
            run(args, report, DevTools(ws_url))
    except Exception as error:  # a step that could not run is a failure, reported with what happened
        report.check("the browser session ran to the end", False, f"{type(error).__name__}: {error}")
    finally:
        chromium.kill()
        chromium.wait()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    sys.exit(1 if report.failed else 0)


def run(args, report, page):
    for domain in ("Page", "Runtime", "Log"):
        page.call(f"{domain}.enable")
    page.call("Page.navigate", url=args.url + "/")
    page.wait_for("document.readyState === 'complete'", 30, "the page to load")
    workers_listed = page.wait_for(
        f"(() => {{ const rows = [...document.querySelectorAll('#workers tbody tr')];"
        f" const names = rows.map(r => r.dataset.worker);"
        f" return rows.length >= 3 && rows.every(r => r.dataset.status === 'active') && names.includes({json.dumps(args.kill_name)})"
        f" ? names : null; }})()", 60, "the cluster table to list three active workers")
    report.check("the cluster table lists the workers", {"prefill-0", "decode-0", args.kill_name} <= set(workers_listed),
                 workers_listed)
    model = page.wait_for("document.getElementById('model').textContent.includes('SmolLM2') && "
                          "document.getElementById('model').textContent", 20, "the model name")
    report.check("the header names the served model", "SmolLM2" in model, model)

    # Labels: every control has an accessible name.
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, textarea, select, button')].filter(e =>"
        " !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id || e.outerHTML)")
    report.check("every form control has a label", unlabelled == [], unlabelled)

    # Keyboard: Tab order reaches the controls that matter.
    page.evaluate("document.activeElement && document.activeElement.blur(), window.scrollTo(0, 0)")
    reached = []
    for _ in range(40):
        page.press_tab()
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName.toLowerCase()"))
    wanted = {"prompt", "send", "key-button", "explain-tokens", "explain-prompt", "summary"}
    report.check("Tab reaches the message box, Send, the API key, the settings and placement's form",
                 wanted <= set(reached), f"reached {reached}")

    # Hostile model output, through the page's real streaming and rendering path.
    page.call("Fetch.enable", patterns=[{"urlPattern": "*/v1/chat/completions", "requestStage": "Request"}])
    page.evaluate("document.getElementById('prompt').focus()")
    page.call("Input.insertText", text="Show me some HTML.")
    page.press_enter()
    paused = None
    deadline = time.time() + 20
    while paused is None and time.time() < deadline:
        page.pump(0.1)
        paused = next((e for e in page.events if e["method"] == "Fetch.requestPaused"), None)
    if paused is None:
        raise TimeoutError("the chat request was not intercepted")
    page.events.remove(paused)
    page.call("Fetch.fulfillRequest", requestId=paused["params"]["requestId"], responseCode=200,
              responseHeaders=[{"name": "Content-Type", "value": "text/event-stream"}], body=hostile_stream())
    page.call("Fetch.disable")
    page.wait_for("(() => { const m = [...document.querySelectorAll('.message.assistant')].pop();"
                  " return m.querySelector('.meta').textContent.includes('stop'); })()", 20, "the hostile reply")
    rendered = page.evaluate(
        "(() => { const m = [...document.querySelectorAll('.message.assistant')].pop().querySelector('.body');"
        " return { text: m.textContent, scripts: m.querySelectorAll('script, img, iframe, object, embed').length,"
        " links: [...m.querySelectorAll('a')].map(a => a.getAttribute('href')),"
        " strong: m.querySelectorAll('strong').length, code: [...m.querySelectorAll('code')].map(c => c.textContent),"
        " pwned: window.__pwned || null, pageScripts: document.scripts.length }; })()")
    report.check("<script> and <img onerror> in model output render as text",
                 "<script>window.__pwned = 'script'</script>" in rendered["text"]
                 and "<img src=x onerror=" in rendered["text"] and rendered["scripts"] == 0
                 and rendered["pwned"] is None and rendered["pageScripts"] == 1, rendered)
    report.check("javascript: and data: links stay text; http(s) links show their host",
                 rendered["links"] == ["https://example.com/docs"]
                 and "[click me](javascript:window.__pwned='link')" in rendered["text"]
                 and "(example.com)" in rendered["text"] and "[data](data:text/html," in rendered["text"], rendered)
    report.check("markdown bold and code render as elements, code contents as text",
                 rendered["strong"] == 1 and "inline <b>code</b>" in rendered["code"]
                 and "<script>alert('in a fence')</script>" in rendered["code"], rendered)

    # Clear conversation empties the chat (and keeps the hostile text out of the screenshots).
    page.evaluate("document.getElementById('settings').open = true; document.getElementById('clear').focus()")
    page.press_enter()
    left = page.evaluate("document.querySelectorAll('#messages .message').length")
    report.check("Clear conversation empties the chat", left == 0, f"{left} messages left")
    page.evaluate("document.getElementById('settings').open = false")

    # Chat, with the keyboard only: the skip link to the message box, type, Enter.
    page.evaluate("document.activeElement.blur()")
    page.evaluate("document.querySelector('.skip').focus()")
    page.press_enter()
    focused = page.wait_for("document.activeElement.id === 'prompt' && 'prompt'", 5, "the skip link to focus the message box")
    report.check("the skip link moves focus to the message box", focused == "prompt", focused)
    page.evaluate("document.getElementById('temperature').value = '0'; document.getElementById('max-tokens').value = '40'")
    page.call("Input.insertText", text="Write two sentences about the sea.")
    watch_reply_lengths(page)
    page.press_enter()
    lengths = set()
    deadline = time.time() + 120
    facts = ""
    while time.time() < deadline:
        state = page.evaluate(
            "(() => { const m = [...document.querySelectorAll('.message.assistant')].pop();"
            " return m ? [m.querySelector('.body').textContent.length, m.querySelector('.meta').textContent] : null; })()")
        if state:
            if state[0]:
                lengths.add(state[0])
            facts = state[1]
            if "tokens" in facts:
                break
        page.pump(0.05)
    lengths |= reply_lengths(page)
    report.check("a chat message streams a reply", len(lengths) >= 3, f"saw text lengths {sorted(lengths)}; facts {facts!r}")
    report.check("the reply's facts give TTFT and tokens/s", "TTFT" in facts and "tok/s" in facts, facts)
    report.check("the reply names its prefill and decode workers",
                 ("prefill prefill-0 → decode decode-0" in facts or f"prefill {args.kill_name} → decode decode-0" in facts),
                 facts)
    explained = "".join(page.evaluate("[...document.querySelectorAll('.message.user')].map(m => m.textContent)"))
    report.check("the user's message is shown", "Write two sentences about the sea." in explained, explained)

    # Stop: a long reply, stopped after its first text; the router frees it.
    page.evaluate("document.getElementById('max-tokens').value = '400'")
    page.evaluate("document.getElementById('prompt').focus()")
    page.call("Input.insertText", text="Tell me a very long story about a lighthouse keeper.")
    page.press_enter()
    page.wait_for("(() => { const m = [...document.querySelectorAll('.message.assistant')].pop();"
                  " return m.querySelector('.body').textContent.length > 0; })()", 60, "the long reply to start")
    page.evaluate("document.getElementById('stop').focus()")
    page.press_enter()
    stopped = page.wait_for("(() => { const m = [...document.querySelectorAll('.message.assistant')].pop();"
                            " const t = m.querySelector('.meta').textContent; return t.includes('stopped') && t; })()",
                            20, "the reply to stop")
    report.check("Stop ends a streaming reply", "stopped" in stopped, stopped)
    in_flight = None
    for _ in range(40):
        in_flight = metric(args.url, "baton_router_requests_in_flight")
        if in_flight == 0:
            break
        time.sleep(0.25)
    report.check("a stopped reply is freed on the router", in_flight == 0, f"requests in flight: {in_flight}")

    # Why this placement, with the keyboard.
    page.evaluate("document.getElementById('explain-tokens').focus(); document.getElementById('explain-tokens').value = ''")
    page.call("Input.insertText", text="300")
    page.press_enter()
    candidates = page.wait_for(
        "(() => { const rows = [...document.querySelectorAll('#explain-out tbody tr')];"
        " return rows.length ? rows.map(r => r.textContent) : null; })()", 20, "placement's explanation")
    verdict = page.evaluate("document.querySelector('#explain-out .chosen').textContent")
    report.check("why this placement lists the candidates and the choice",
                 any("prefill-0" in row for row in candidates) and any("decode-0" in row for row in candidates)
                 and "decode on decode-0" in verdict, f"{verdict!r} {candidates}")

    page.pump(4.5)  # two samples of the charts after the chats
    caption = page.evaluate("document.getElementById('cap-tps').textContent")
    report.check("the live charts have samples", "—" not in caption.split(":", 1)[1], caption)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(os.path.join(args.artifacts, "page-wide.png"), full_page=True)

    # A worker killed outright shows as lost, with its membership event.
    os.kill(args.kill_pid, signal.SIGKILL)
    lost = page.wait_for(
        f"(() => {{ const r = document.querySelector('#workers tbody tr[data-worker={json.dumps(args.kill_name)}]');"
        f" return r && r.dataset.status === 'lost' && r.textContent; }})()", 40, "the killed worker to show as lost")
    event = page.wait_for(
        f"[...document.querySelectorAll('#events li')].map(e => e.textContent)"
        f".find(t => t.includes({json.dumps(args.kill_name + ' heartbeat lost')}))", 10, "the loss event")
    report.check("a killed worker shows as lost, with its event", "lost" in lost and bool(event), f"{lost!r} {event!r}")
    page.screenshot(os.path.join(args.artifacts, "page-lost.png"))

    # Narrow window: panels stack, no sideways scrolling.
    page.call("Emulation.setDeviceMetricsOverride", width=380, height=820, deviceScaleFactor=1, mobile=True)
    page.pump(1.0)
    layout = page.evaluate(
        "(() => { const r = (id) => document.getElementById(id).getBoundingClientRect();"
        " return { scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
        " chat: [r('chat').left, r('chat').bottom], cluster: [r('cluster').left, r('cluster').top],"
        " send: r('send').width }; })()")
    report.check("at 380 px the panels stack and nothing scrolls sideways",
                 layout["scroll"] <= layout["inner"] and abs(layout["chat"][0] - layout["cluster"][0]) < 1
                 and layout["cluster"][1] >= layout["chat"][1] and layout["send"] > 0, layout)
    page.screenshot(os.path.join(args.artifacts, "page-narrow.png"))

    problems = console_problems(page.events)
    report.check("no console errors, exceptions or failed loads", problems == [], problems)


def watch_reply_lengths(page):
    """Records the last reply's text length at every change of the page, so a fast stream's steps are all seen
    (polling every 50 ms saw only two on an idle machine where the reply took 130 ms)."""
    page.evaluate(
        "window.__replyLengths = []; new MutationObserver(() => {"
        " const m = [...document.querySelectorAll('.message.assistant')].pop();"
        " if (m) window.__replyLengths.push(m.querySelector('.body').textContent.length);"
        " }).observe(document.body, {subtree: true, childList: true, characterData: true})")


def reply_lengths(page):
    """The distinct non-zero text lengths `watch_reply_lengths` recorded."""
    return {length for length in (page.evaluate("window.__replyLengths") or []) if length}


def last_reply_state(page):
    return page.evaluate(
        "(() => { const m = [...document.querySelectorAll('.message.assistant')].pop();"
        " return m ? [m.querySelector('.body').textContent.length, m.querySelector('.meta').textContent] : null; })()")


def run_with_key(args, report, page):
    """`baton serve --api-keys`: the page asks for the key, then works; it says there is no cluster."""
    for domain in ("Page", "Runtime", "Log"):
        page.call(f"{domain}.enable")
    page.call("Page.navigate", url=args.url + "/")
    page.wait_for("document.readyState === 'complete'", 30, "the page to load")
    asked = page.wait_for("document.getElementById('key-dialog').open && document.activeElement.id", 20,
                          "the page to ask for a key")
    report.check("the page asks for an API key, with focus in the key field", asked == "key-input", asked)
    page.call("Input.insertText", text="wrong-key")
    page.press_enter()
    asked_again = page.wait_for("document.getElementById('key-dialog').open && document.activeElement.id", 20,
                                "the page to ask again after a wrong key")
    reason = page.evaluate("document.getElementById('key-reason').textContent")
    report.check("a wrong key is refused and the page asks again with the server's reason",
                 asked_again == "key-input" and "Incorrect API key" in reason, reason)
    page.call("Input.insertText", text=args.api_key)
    page.press_enter()
    model = page.wait_for("!document.getElementById('key-dialog').open && "
                          "document.getElementById('model').textContent.includes('SmolLM2') && "
                          "document.getElementById('model').textContent", 20, "the models list with the key")
    report.check("with the key the page lists the model", "SmolLM2" in model, model)
    note = page.wait_for("document.getElementById('cluster-note').textContent.includes('No cluster') && "
                         "document.getElementById('cluster-note').textContent", 20, "the cluster note")
    hidden = page.evaluate("document.getElementById('placement').hidden")
    report.check("without a cluster the page says so and hides placement's box", bool(note) and hidden is True, note)
    page.evaluate("document.getElementById('temperature').value = '0'; document.getElementById('max-tokens').value = '24'")
    page.evaluate("document.getElementById('prompt').focus()")
    page.call("Input.insertText", text="Name three colours.")
    watch_reply_lengths(page)
    page.press_enter()
    lengths, facts = set(), ""
    deadline = time.time() + 120
    while time.time() < deadline:
        state = last_reply_state(page)
        if state:
            if state[0]:
                lengths.add(state[0])
            facts = state[1]
            if "tokens" in facts:
                break
        page.pump(0.05)
    lengths |= reply_lengths(page)
    report.check("with the key a chat reply streams, served in the router's process",
                 len(lengths) >= 3 and "TTFT" in facts and "served in the router's process" in facts,
                 f"lengths {sorted(lengths)}; facts {facts!r}")
    problems = console_problems(page.events, expected=[(401, None), (404, "/cluster/status")])
    cluster_asks = sum(1 for e in page.events if e["method"] == "Log.entryAdded"
                       and e["params"]["entry"].get("url", "").endswith("/cluster/status")
                       and "status of 404" in e["params"]["entry"].get("text", ""))
    report.check("no console errors besides the 401s before the key and the one 404 that says there is no cluster",
                 problems == [] and cluster_asks == 1, f"{problems}; /cluster/status 404s: {cluster_asks}")


if __name__ == "__main__":
    main()
