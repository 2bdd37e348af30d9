// Baton's page: chat, the cluster, live charts and placement's reasons, from the router's own endpoints.
//
// Safety rule for the whole file: text that comes from the model, a worker or placement is only ever put in the
// document through textContent / createTextNode, never as HTML, so nothing it contains can become markup or code.
// The server's Content-Security-Policy (no inline scripts, this origin only) is the second fence.
"use strict";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------------
// API access with an optional key (kept in sessionStorage: this tab only).

const keyStore = {
  get: () => sessionStorage.getItem("baton.apiKey") || "",
  set: (value) => sessionStorage.setItem("baton.apiKey", value),
};
let keyPrompt = null;

/** Asks for an API key once (concurrent callers share the dialog); resolves true when one was given. */
function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason;
  $("key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    const finish = (given) => {
      dialog.close();
      keyPrompt = null;
      resolve(given);
    };
    $("key-form").onsubmit = (event) => {
      event.preventDefault();
      const value = $("key-input").value.trim();
      if (!value) return;
      keyStore.set(value);
      finish(true);
    };
    $("key-cancel").onclick = () => finish(false);
    dialog.oncancel = (event) => { event.preventDefault(); finish(false); };
  });
  dialog.showModal();
  $("key-input").focus();
  return keyPrompt;
}

/** fetch() with the key; a 401 asks for a key (saying why the last one failed) and retries, until the user cancels.
 *  Throws ApiError for a non-2xx answer. */
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = keyStore.get();
  if (key) headers["Authorization"] = "Bearer " + key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    const message = await errorMessage(response);
    if (await askForKey(message)) return api(path, options);
    throw new ApiError(401, message);
  }
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorMessage(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return text || ("HTTP " + response.status);
}

// ---------------------------------------------------------------------------------------------------------------
// Safe markdown: paragraphs, headings, lists, fenced and inline code, bold, italics and http(s) links, built as
// DOM nodes. Anything else (HTML, images, javascript: links) stays literal text.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.split("\n");
  let paragraph = [];
  let list = null;
  const flushParagraph = () => {
    if (paragraph.length) {
      const p = el("p");
      appendInline(p, paragraph.join("\n"));
      root.appendChild(p);
    }
    paragraph = [];
  };
  const closeList = () => { list = null; };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/.exec(line);
    if (fence) {
      flushParagraph(); closeList();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      const pre = el("pre");
      const code = el("code", null, body.join("\n"));
      if (fence[2]) code.dataset.language = fence[2];
      pre.appendChild(code);
      root.appendChild(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      flushParagraph(); closeList();
      const p = el("p", "heading");
      const strong = el("strong");
      appendInline(strong, heading[2]);
      p.appendChild(strong);
      root.appendChild(p);
      continue;
    }
    const item = /^\s*(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/.exec(line);
    if (item) {
      flushParagraph();
      const tag = item[1] ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = el(tag);
        if (tag === "ol" && item[2] !== "1") list.start = Number(item[2]);
        root.appendChild(list);
      }
      const li = el("li");
      appendInline(li, item[3]);
      list.appendChild(li);
      continue;
    }
    if (line.trim() === "") { flushParagraph(); closeList(); continue; }
    closeList();
    paragraph.push(line);
  }
  flushParagraph();
  return root;
}

const inlinePattern = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*([^*\n]+)\*\*|\[([^\]\n]*)\]\(([^()\s]*)\)|(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<!\w)_([^_\n]+)_(?!\w)/g;

function appendInline(parent, text) {
  let last = 0;
  for (const match of text.matchAll(inlinePattern)) {
    if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
    last = match.index + match[0].length;
    if (match[1]) parent.appendChild(el("code", null, match[2]));
    else if (match[3] !== undefined) parent.appendChild(el("strong", null, match[3]));
    else if (match[5] !== undefined) parent.appendChild(link(match[4], match[5], match[0]));
    else parent.appendChild(el("em", null, match[6] !== undefined ? match[6] : match[7]));
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

/** An http(s) link that shows where it goes; any other scheme is left as the literal text. */
function link(label, target, literal) {
  let url;
  try { url = new URL(target); } catch (_) { return document.createTextNode(literal); }
  if (url.protocol !== "http:" && url.protocol !== "https:") return document.createTextNode(literal);
  const span = el("span");
  const a = el("a", null, label || url.href);
  a.href = url.href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.title = url.href;
  span.appendChild(a);
  span.appendChild(el("span", "link-host", " (" + url.host + ")"));
  return span;
}

// ---------------------------------------------------------------------------------------------------------------
// Chat.

const conversation = [];
let modelID = null;
let running = null; // { controller }

function addMessage(role, text) {
  const box = el("div", "message " + role);
  box.appendChild(el("div", "who", role === "user" ? "You" : "Assistant"));
  const body = el("div", "body");
  if (role === "user") body.textContent = text; else body.appendChild(renderMarkdown(text));
  box.appendChild(body);
  const meta = el("div", "meta");
  box.appendChild(meta);
  $("messages").appendChild(box);
  box.scrollIntoView({ block: "end" });
  return { box, body, meta };
}

function numberField(id) {
  const raw = $(id).value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  return Number.isFinite(value) ? value : null;
}

async function send(text) {
  if (running || !text.trim()) return;
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.meta.textContent = "waiting…";
  const controller = new AbortController();
  running = { controller };
  $("send").disabled = true;
  $("stop").disabled = false;

  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...conversation);
  const request = {
    model: modelID || "baton", messages, stream: true, stream_options: { include_usage: true },
  };
  const temperature = numberField("temperature");
  if (temperature !== null) request.temperature = temperature;
  const maxTokens = numberField("max-tokens");
  if (maxTokens !== null) request.max_tokens = Math.round(maxTokens);
  const seed = numberField("seed");
  if (seed !== null) request.seed = Math.round(seed);

  const started = performance.now();
  let firstAt = null, lastAt = null, chunks = 0, text_ = "", usage = null, served = null, finish = null, failure = null;
  const render = () => {
    reply.body.replaceChildren(renderMarkdown(text_));
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      signal: controller.signal,
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let done = false;
    while (!done) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { done = true; break; }
          const chunk = JSON.parse(data);
          if (chunk.error) { failure = chunk.error.message; continue; }
          if (chunk.usage) usage = chunk.usage;
          if (chunk.baton) served = chunk.baton;
          const choice = chunk.choices && chunk.choices[0];
          if (!choice) continue;
          if (choice.finish_reason) finish = choice.finish_reason;
          const piece = choice.delta && choice.delta.content;
          if (piece) {
            const now = performance.now();
            if (firstAt === null) firstAt = now;
            lastAt = now;
            chunks++;
            text_ += piece;
            render();
            reply.meta.textContent = "streaming…";
          }
        }
      }
    }
  } catch (error) {
    if (error.name === "AbortError") finish = "stopped";
    else failure = error.message;
  }
  running = null;
  $("send").disabled = false;
  $("stop").disabled = true;
  if (text_) conversation.push({ role: "assistant", content: text_ });
  if (failure) {
    reply.box.classList.add("failed");
    reply.body.appendChild(el("p", "error", "Error: " + failure));
  }
  reply.meta.textContent = replyFacts({ started, firstAt, lastAt, chunks, usage, served, finish });
  reply.box.scrollIntoView({ block: "end" });
}

/** "TTFT 210 ms · 48.2 tok/s · 31 tokens · prefill prefill-0 → decode decode-0 (shared-memory, 0.3 MB in 2 ms) · stop" */
function replyFacts(r) {
  const facts = [];
  if (r.firstAt !== null) facts.push("TTFT " + Math.round(r.firstAt - r.started) + " ms");
  const tokens = r.usage ? r.usage.completion_tokens : r.chunks;
  if (r.firstAt !== null && r.lastAt > r.firstAt && tokens > 1) {
    facts.push((((tokens - 1) * 1000) / (r.lastAt - r.firstAt)).toFixed(1) + " tok/s");
  }
  facts.push(tokens + " tokens");
  if (r.served) {
    const s = r.served;
    let where = s.prefill_worker ? "prefill " + s.prefill_worker + " → decode " + s.decode_worker
      : "prefill and decode on " + s.decode_worker;
    if (s.kv_transport) {
      where += " (KV " + (s.kv_bytes / 1e6).toFixed(2) + " MB over " + s.kv_transport + " in " + s.kv_transfer_ms + " ms"
        + (s.kv_cached_tokens ? "; " + s.kv_cached_tokens + " prompt tokens already on the decode worker" : "") + ")";
    }
    facts.push(where);
  } else if (!clusterAvailable && r.finish && r.finish !== "stopped") {
    facts.push("served in the router's process");
  }
  if (r.finish) facts.push(r.finish);
  return facts.join(" · ");
}

function setUpChat() {
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value;
    if (!text.trim() || running) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  // The skip link's target is focusable: focus it (fragment navigation alone only scrolls in some browsers).
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("prompt").focus();
  });
  $("stop").addEventListener("click", () => { if (running) running.controller.abort(); });
  $("clear").addEventListener("click", () => {
    if (running) running.controller.abort();
    conversation.length = 0;
    $("messages").replaceChildren();
  });
  $("key-button").addEventListener("click", () => askForKey("Enter the API key to use for requests from this tab."));
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster view, polled from /cluster/status.

const store = {
  span: 10 * 60 * 1000,
  metrics: [],   // { t, ttft, itl, tps, requests: {worker: n} }
  workers: [],   // { t, load: {worker: {queue, active}} }
};
let clusterAvailable = true;

function formatAge(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return new Date(iso).toLocaleString();
}

function renderCluster(status) {
  const rows = status.workers.map((w) => {
    const tr = el("tr");
    tr.dataset.worker = w.name;
    tr.dataset.status = w.status;
    const name = el("td", null, w.name);
    if (w.incarnation !== undefined) name.appendChild(el("span", "muted", " #" + w.incarnation));
    tr.appendChild(name);
    tr.appendChild(el("td", "status-" + w.status, w.status));
    const roles = el("td");
    const assigned = w.assigned_roles || [];
    assigned.forEach((role, i) => roles.appendChild(document.createTextNode((i ? ", " : "") + role)));
    (w.offered_roles || []).filter((r) => !assigned.includes(r)).forEach((role) => {
      roles.appendChild(document.createTextNode(roles.childNodes.length ? " " : ""));
      const span = el("span", "withheld", role);
      span.title = "offered, withheld by the policy";
      roles.appendChild(span);
    });
    if (!roles.childNodes.length) roles.textContent = "none";
    tr.appendChild(roles);
    const p = w.profile || {};
    const device = el("td", "wrap", Math.round(p.sgemm_gflops || 0) + " GFLOP/s, " + (p.memory_read_gbps || 0).toFixed(1) + " GB/s");
    device.appendChild(el("div", "muted", (p.isa ? p.isa + ", " : "") + (p.cores || "?") + " cores, "
      + ((p.memory_total_bytes || 0) / 2 ** 30).toFixed(1) + " GiB"));
    tr.appendChild(device);
    const load = el("td", "wrap", w.load.queue_depth + " queued");
    load.appendChild(el("div", "muted", w.load.active_sequences + " active"));
    tr.appendChild(load);
    const kv = el("td");
    const total = w.load.total_kv_blocks;
    if (total) {
      const bar = el("span", "bar");
      const fill = el("span");
      fill.style.width = Math.round((100 * w.load.free_kv_blocks) / total) + "%";
      bar.appendChild(fill);
      bar.setAttribute("aria-hidden", "true");
      kv.appendChild(bar);
      kv.appendChild(document.createTextNode(w.load.free_kv_blocks + "/" + total));
    } else {
      kv.textContent = String(w.load.free_kv_blocks);
    }
    tr.appendChild(kv);
    tr.appendChild(el("td", "wrap", (w.transports || []).join(", ")));
    tr.appendChild(el("td", null, formatAge(w.last_seen)));
    return tr;
  });
  $("workers").tBodies[0].replaceChildren(...rows);
  const counts = {};
  status.workers.forEach((w) => { counts[w.status] = (counts[w.status] || 0) + 1; });
  $("cluster-note").textContent = status.workers.length
    ? status.workers.length + " workers: " + Object.entries(counts).map(([k, v]) => v + " " + k).join(", ")
    : "No worker has registered yet.";
  $("policy").textContent = "Policy " + status.policy_file + ", loaded " + formatAge(status.policy_loaded_at)
    + " · membership log: " + status.events + " events";
  const error = $("policy-error");
  error.hidden = !status.policy_error;
  error.textContent = status.policy_error ? "Policy reload failed; the policy above stays in force: " + status.policy_error : "";
  const events = (status.recent_events || []).slice().reverse().map((e) => {
    const li = el("li");
    const time = el("time", null, new Date(e.time).toLocaleTimeString());
    time.dateTime = e.time;
    li.appendChild(time);
    li.appendChild(document.createTextNode(e.worker + " " + e.event.replace("_", " ") + (e.detail ? ": " + e.detail : "")));
    return li;
  });
  if (!events.length) events.push(el("li", "muted", "none since placement started"));
  $("events").replaceChildren(...events);

  const load = {};
  status.workers.forEach((w) => {
    load[w.name] = { queue: w.load.queue_depth, active: w.load.active_sequences, status: w.status };
  });
  pushSample(store.workers, { t: Date.now(), load });
}

async function pollCluster() {
  if (!clusterAvailable) return;
  try {
    const response = await api("/cluster/status");
    renderCluster(await response.json());
  } catch (error) {
    if (error.status === 404) {
      clusterAvailable = false;
      $("cluster-note").textContent = "No cluster: this server runs the model in its own process (baton serve).";
      $("placement").hidden = true;
    } else {
      $("cluster-note").textContent = "Cluster status unavailable: " + error.message;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Live charts from /metrics (Prometheus text), sampled every 2 s.

/** { metricName: [{ labels: {k: v}, value }] } */
function parsePrometheus(text) {
  const result = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    if (match[2]) for (const pair of match[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (result[match[1]] = result[match[1]] || []).push({ labels, value: Number(match[3]) });
  }
  return result;
}

function total(metrics, name) {
  return (metrics[name] || []).reduce((sum, sample) => sum + sample.value, 0);
}

let previousMetrics = null;

function pushSample(series, sample) {
  series.push(sample);
  while (series.length && sample.t - series[0].t > store.span) series.shift();
}

async function pollMetrics() {
  let metrics;
  try {
    const response = await fetch("/metrics");
    if (!response.ok) return;
    metrics = parsePrometheus(await response.text());
  } catch (_) { return; }
  const now = Date.now();
  const current = {
    t: now,
    ttftSum: total(metrics, "baton_router_time_to_first_token_seconds_sum"),
    ttftCount: total(metrics, "baton_router_time_to_first_token_seconds_count"),
    itlSum: total(metrics, "baton_router_inter_token_latency_seconds_sum"),
    itlCount: total(metrics, "baton_router_inter_token_latency_seconds_count"),
    requests: {},
  };
  for (const sample of metrics["baton_router_worker_requests_total"] || []) {
    const worker = sample.labels.worker;
    current.requests[worker] = (current.requests[worker] || 0) + sample.value;
  }
  if (previousMetrics) {
    const p = previousMetrics;
    const seconds = (now - p.t) / 1000;
    const ttftN = current.ttftCount - p.ttftCount, itlN = current.itlCount - p.itlCount;
    const requests = {};
    for (const worker of Object.keys(current.requests)) requests[worker] = current.requests[worker] - (p.requests[worker] || 0);
    pushSample(store.metrics, {
      t: now,
      ttft: ttftN > 0 ? (1000 * (current.ttftSum - p.ttftSum)) / ttftN : null,
      itl: itlN > 0 ? (1000 * (current.itlSum - p.itlSum)) / itlN : null,
      // Every generated token is timed once: the first as TTFT, the others as inter-token latency.
      tps: (ttftN + itlN) / seconds,
      requests,
    });
  }
  previousMetrics = current;
  drawCharts();
}

const palette = ["#2456c9", "#d2691e", "#167a3e", "#8e44ad", "#b3261e", "#00838f", "#6d4c41"];

/** Line chart of several series over the last `store.span` ms; null values are gaps. */
function drawChart(canvas, series, unit) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const now = Date.now(), left = 4, right = width - 4, top = 16, bottom = height - 14;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  const ceiling = max > 0 ? max * 1.15 : 1;
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6475";
  g.fillText("max " + formatValue(max) + " " + unit, left, 11);
  g.fillText("−10 min", left, height - 3);
  g.fillText("now", right - 20, height - 3);
  g.strokeStyle = "#e3e6ec";
  g.beginPath(); g.moveTo(left, bottom + 0.5); g.lineTo(right, bottom + 0.5); g.stroke();
  const legend = [];
  series.forEach((s, index) => {
    const color = palette[index % palette.length];
    g.strokeStyle = color;
    g.lineWidth = 1.6;
    g.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null) { pen = false; continue; }
      const x = right - ((now - t) / store.span) * (right - left);
      const y = bottom - (v / ceiling) * (bottom - top);
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    }
    g.stroke();
    if (series.length > 1) legend.push([s.name, color]);
  });
  let x = right;
  g.textAlign = "right";
  for (const [name, color] of legend.reverse()) {
    g.fillStyle = color;
    g.fillText(name, x, 11);
    x -= g.measureText(name).width + 10;
  }
  g.textAlign = "left";
}

function formatValue(value) {
  return value >= 100 ? String(Math.round(value)) : value.toFixed(value >= 10 ? 1 : 2);
}

function latest(points) {
  for (let i = points.length - 1; i >= 0; i--) if (points[i][1] !== null) return points[i][1];
  return null;
}

function drawCharts() {
  const m = store.metrics;
  const charts = [
    ["chart-ttft", "cap-ttft", "Time to first token", "ms", [{ name: "TTFT", points: m.map((s) => [s.t, s.ttft]) }]],
    ["chart-itl", "cap-itl", "Inter-token latency", "ms", [{ name: "ITL", points: m.map((s) => [s.t, s.itl]) }]],
    ["chart-tps", "cap-tps", "Throughput", "tokens/s", [{ name: "tokens/s", points: m.map((s) => [s.t, s.tps]) }]],
  ];
  const names = new Set();
  store.workers.forEach((s) => Object.keys(s.load).forEach((n) => names.add(n)));
  const queueSeries = [...names].sort().map((name) => ({
    name, points: store.workers.map((s) => [s.t, s.load[name] ? s.load[name].queue + s.load[name].active : null]),
  }));
  charts.push(["chart-queue", "cap-queue", "Queued + active per worker", "requests", queueSeries]);
  for (const [canvas, caption, title, unit, series] of charts) {
    drawChart($(canvas), series, unit);
    const now = series.map((s) => {
      const value = latest(s.points);
      return (series.length > 1 ? s.name + " " : "") + (value === null ? "—" : formatValue(value));
    }).join(", ");
    $(caption).textContent = title + " (" + unit + "): " + (now || "—");
  }
  renderBusy([...names].sort());
}

function renderBusy(names) {
  const rows = names.map((name) => {
    const samples = store.workers.filter((s) => s.load[name]);
    const busy = samples.filter((s) => s.load[name].active + s.load[name].queue > 0).length;
    const requests = store.metrics.reduce((sum, s) => sum + (s.requests[name] || 0), 0);
    const last = samples.length ? samples[samples.length - 1].load[name] : null;
    const tr = el("tr");
    tr.appendChild(el("td", null, name));
    tr.appendChild(el("td", null, samples.length ? Math.round((100 * busy) / samples.length) + "%" : "—"));
    tr.appendChild(el("td", null, String(requests)));
    tr.appendChild(el("td", null, last ? String(last.queue) : "—"));
    return tr;
  });
  $("busy").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------------------------------------------------------
// Why this placement: /cluster/explain.

function renderExplanation(answer) {
  const d = answer.decision;
  const out = [];
  const admission = d.admission;
  let verdict;
  if (admission.result === "admit") {
    verdict = admission.pair.prefill
      ? "Prefill on " + admission.pair.prefill + ", decode on " + admission.pair.decode + " (KV over " + (admission.pair.link || "?") + ")"
      : "Whole request on " + admission.pair.decode;
  } else if (admission.result === "reject") {
    verdict = "Refused now (429, retry after " + admission.retry_after_seconds + " s): " + admission.reason;
  } else {
    verdict = "Unavailable (503): " + admission.reason;
  }
  out.push(el("p", "chosen", verdict));
  out.push(el("p", null, d.prompt_tokens + "-token prompt · mode " + d.mode + " — " + d.mode_reason + " · strategy " + d.strategy));
  const wrap = el("div", "table-wrap");
  const table = el("table");
  table.appendChild(el("caption", null, "Candidates"));
  const head = el("tr");
  ["Role", "Rank", "Worker", "Outcome", "Score", "Compute", "Bandwidth", "Load", "Reasons"].forEach((h) => {
    const th = el("th", null, h);
    th.scope = "col";
    head.appendChild(th);
  });
  const thead = el("thead");
  thead.appendChild(head);
  table.appendChild(thead);
  const body = el("tbody");
  const fixed = (v) => (v === undefined || v === null ? "" : v.toFixed(3));
  for (const c of d.candidates) {
    const tr = el("tr");
    const s = c.score || {};
    [c.role, c.rank === null ? "–" : "#" + c.rank, c.worker, c.outcome, fixed(s.score), fixed(s.compute), fixed(s.bandwidth),
      fixed(s.load), c.reasons.join("; ")].forEach((v, i) => tr.appendChild(el("td", i === 3 && v === "chosen" ? "chosen" : null, String(v))));
    body.appendChild(tr);
  }
  table.appendChild(body);
  wrap.appendChild(table);
  out.push(wrap);
  if (d.pairs.length) {
    out.push(el("p", "muted", "Pairs compared, best first:"));
    const list = el("ol");
    for (const pair of d.pairs) {
      list.appendChild(el("li", null, (pair.prefill ? pair.prefill + " → " + pair.decode + " over " + (pair.link || "?")
        + " (link cost " + pair.link_cost + ")" : pair.decode + " alone") + " · score " + pair.score.toFixed(3)));
    }
    out.push(list);
  }
  const details = el("details");
  details.appendChild(el("summary", null, "As baton placement explain prints it"));
  details.appendChild(el("pre", null, answer.text));
  out.push(details);
  $("explain-out").replaceChildren(...out);
}

function setUpExplain() {
  $("explain-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = $("explain-prompt").value;
    const body = prompt.trim() ? { prompt } : { prompt_tokens: Math.max(0, Math.round(numberField("explain-tokens") || 0)) };
    $("explain-out").replaceChildren(el("p", "muted", "asking placement…"));
    try {
      const response = await api("/cluster/explain", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      renderExplanation(await response.json());
    } catch (error) {
      $("explain-out").replaceChildren(el("p", "error", "Could not explain: " + error.message));
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Model and health.

async function loadModel() {
  try {
    const response = await api("/v1/models");
    const list = await response.json();
    modelID = list.data && list.data[0] ? list.data[0].id : null;
    $("model").textContent = "model: " + (modelID || "?");
  } catch (error) {
    $("model").textContent = "model: unknown (" + error.message + ")";
  }
}

async function pollHealth() {
  const pill = $("health");
  try {
    // /health answers 503 with the reason while the cluster cannot serve.
    const response = await fetch("/health");
    const ok = response.ok;
    pill.className = "pill " + (ok ? "ok" : "bad");
    pill.textContent = ok ? "ready" : "not ready: " + (await errorMessage(response));
  } catch (error) {
    pill.className = "pill bad";
    pill.textContent = "router unreachable";
  }
}

function every(ms, task) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try { await task(); } finally { busy = false; }
  };
  tick();
  return setInterval(tick, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpChat();
  setUpExplain();
  loadModel();
  every(5000, pollHealth);
  every(2000, pollCluster);
  every(2000, pollMetrics);
  window.addEventListener("resize", drawCharts);
});
