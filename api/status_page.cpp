// The operator's status page served at GET /: one HTML document with its CSS and JS inline.
#include "api/status_page.hpp"

namespace sessiond::api {

namespace {

// Figures live in elements with stable ids (tests/integration/test_status_page.cpp reads them);
// units are in the labels, so each element holds a bare number or word. textContent only, never
// innerHTML: the node id and policy come from the server.
const char* const page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sessiond status</title>
<style>
  :root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #687085; --ok: #1a7f37;
          --warn: #9a6700; --bad: #cf222e; --line: #d8dce3; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         background: var(--bg); color: var(--ink); }
  header { display: flex; flex-wrap: wrap; gap: 1em; align-items: baseline;
           padding: 12px 20px; background: var(--ink); color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: #c5cad6; }
  #error { margin: 12px 20px 0; padding: 10px 14px; border-radius: 6px; background: #ffebe9;
           border: 1px solid var(--bad); color: var(--bad); font-weight: 600; }
  main { display: grid; gap: 14px; padding: 14px 20px;
         grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 12px 16px; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
       margin: 0 0 8px; }
  dl { display: grid; grid-template-columns: 1fr auto; gap: 4px 12px; margin: 0; }
  dt { color: var(--muted); }
  dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
  .v { font-weight: 600; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
  footer { padding: 0 20px 16px; color: var(--muted); font-size: 12px; }
  p.meta { margin: 0 0 8px; color: var(--muted); }
  .wide { grid-column: 1 / -1; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  .charts { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); }
  figure { margin: 0; }
  figcaption { color: var(--muted); font-size: 12px; display: flex; justify-content: space-between; }
  svg.chart { width: 100%; height: 64px; background: #fafbfc; border: 1px solid var(--line);
              border-radius: 4px; }
  svg.chart polyline { fill: none; stroke: #0969da; stroke-width: 1.5; }
  svg.chart polyline.second { stroke: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>sessiond</h1>
  <span class="meta">node <span id="node-id" class="v">…</span></span>
  <span class="meta">mode <span id="mode" class="v">…</span></span>
  <span class="meta">degraded <span id="degraded" class="v">…</span></span>
</header>
<div id="error" role="alert" hidden></div>
<main>
  <section>
    <h2>Redis</h2>
    <dl>
      <dt>connection</dt><dd><span id="redis-up" class="v">…</span></dd>
      <dt>writes per second</dt><dd><span id="redis-writes" class="v">…</span></dd>
      <dt>Redis commands per second</dt><dd><span id="redis-ops" class="v">…</span></dd>
      <dt>latency, average (ms)</dt><dd><span id="redis-latency-avg" class="v">…</span></dd>
      <dt>latency, p99 (ms)</dt><dd><span id="redis-latency-p99" class="v">…</span></dd>
    </dl>
  </section>
  <section>
    <h2>Redis memory</h2>
    <dl>
      <dt>used (MiB)</dt><dd><span id="redis-memory-used" class="v">…</span></dd>
      <dt>maxmemory</dt><dd><span id="redis-memory-max" class="v">…</span></dd>
      <dt>used of max</dt><dd><span id="redis-memory-ratio" class="v">…</span></dd>
      <dt>maxmemory-policy</dt><dd><span id="redis-policy" class="v">…</span></dd>
    </dl>
  </section>
  <section>
    <h2>Sync to PostgreSQL</h2>
    <dl>
      <dt>PostgreSQL</dt><dd><span id="postgres-up" class="v">…</span></dd>
      <dt>backlog (sessions)</dt><dd><span id="sync-backlog" class="v">…</span></dd>
      <dt>since last sync (s)</dt><dd><span id="sync-age" class="v">…</span></dd>
      <dt>last sync took (ms)</dt><dd><span id="sync-duration" class="v">…</span></dd>
      <dt>failed syncs</dt><dd><span id="sync-failed" class="v">…</span></dd>
      <dt>sessions PostgreSQL refused</dt><dd><span id="sync-rejected" class="v">…</span></dd>
      <dt>circuit</dt><dd><span id="sync-circuit" class="v">…</span></dd>
    </dl>
  </section>
  <section>
    <h2>Encryption at rest</h2>
    <dl>
      <dt>current key</dt><dd><span id="enc-key" class="v">…</span></dd>
      <dt>values not under it (last pass)</dt><dd><span id="enc-old" class="v">…</span></dd>
      <dt>values that did not decrypt</dt><dd><span id="enc-errors" class="v">…</span></dd>
    </dl>
  </section>
  <section class="wide">
    <h2>Queues</h2>
    <table>
      <thead><tr><th>queue</th><th>waiting</th><th>delayed</th><th>active</th><th>failed</th>
        <th>oldest waiting (s)</th><th>enqueued/s</th><th>completed/s</th><th>failed/s</th>
        <th>workers busy</th><th>circuits</th></tr></thead>
      <tbody id="queues"><tr><td colspan="11">…</td></tr></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Cache</h2>
    <p class="meta">Redis <span id="cache-degraded" class="v">…</span>
      · invalidations subscribed <span id="cache-subscribed" class="v">…</span>
      · Redis memory used of max <span id="cache-memory-ratio" class="v">…</span></p>
    <table>
      <thead><tr><th>namespace</th><th>hit ratio</th><th>hits</th><th>misses</th>
        <th>near hits</th><th>loads</th><th>load errors</th><th>stale served</th>
        <th>near entries</th></tr></thead>
      <tbody id="cache-namespaces"><tr><td colspan="9">…</td></tr></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Nodes</h2>
    <p class="meta">the sessiond nodes sharing this Redis, from <code>/v1/cluster</code>
      · sync partitions <span id="cluster-partitions" class="v">…</span></p>
    <table>
      <thead><tr><th>node</th><th>mode</th><th>address</th><th>version</th>
        <th>last seen (s ago)</th><th>live</th><th>partitions last sync</th>
        <th>leases held now</th></tr></thead>
      <tbody id="cluster-nodes"><tr><td colspan="8">…</td></tr></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Redis topology</h2>
    <p class="meta"><span id="topology-kind" class="v">…</span>
      · slots unserved <span id="topology-unserved" class="v">…</span>
      · redirects <span id="topology-redirects" class="v">…</span>
      · more in <code>/v1/cluster</code></p>
    <table>
      <thead><tr><th>master</th><th>slots</th><th>slot ranges</th><th>health</th>
        <th>connected</th><th>replicas</th></tr></thead>
      <tbody id="topology-masters"><tr><td colspan="6">…</td></tr></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Last 15 minutes</h2>
    <div class="charts" id="charts"></div>
  </section>
</main>
<footer>Refreshes every 2 s from <code>/v1/status</code>. Last update:
  <span id="updated">never</span>.</footer>
<script>
"use strict";
const none = "\u2014"; // a dash where the server has no figure (null)
const $ = (id) => document.getElementById(id);
const isNum = (v) => typeof v === "number" && isFinite(v);
function pick(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}
function set(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = "v" + (cls ? " " + cls : "");
}
function num(v, digits) { return isNum(v) ? v.toFixed(digits) : none; }
function int(v) { return isNum(v) ? String(Math.round(v)) : none; }
function yesNo(v, good, bad) {
  return v === true ? [good, "ok"] : v === false ? [bad, "bad"] : [none, ""];
}
function render(s) {
  set("node-id", s.node == null ? none : String(s.node));
  set("mode", s.mode == null ? none : String(s.mode));
  const degraded = s.degraded === true;
  set("degraded", s.degraded == null ? none : degraded ? "yes" : "no", degraded ? "bad" : "ok");
  set("redis-up", ...yesNo(pick(s, "redis.up"), "up", "down"));
  set("redis-writes", num(pick(s, "redis.writes_per_s"), 1));
  set("redis-ops", num(pick(s, "redis.ops_per_s"), 1));
  set("redis-latency-avg", num(pick(s, "redis.latency_avg_ms"), 2));
  set("redis-latency-p99", num(pick(s, "redis.latency_p99_ms"), 2));
  const used = pick(s, "redis.used_memory_bytes");
  const max = pick(s, "redis.maxmemory_bytes");
  const ratio = pick(s, "redis.memory_ratio");
  set("redis-memory-used", isNum(used) ? (used / 1048576).toFixed(1) : none);
  set("redis-memory-max", isNum(max) ? (max > 0 ? (max / 1048576).toFixed(1) + " MiB" : "no limit")
                                     : none);
  const ratioCls = isNum(ratio) && max > 0 ? (ratio >= 0.85 ? "bad" : ratio >= 0.7 ? "warn" : "ok")
                                           : "";
  set("redis-memory-ratio", isNum(max) && max > 0 && isNum(ratio) ? (ratio * 100).toFixed(1) + "%"
                                                                  : isNum(max) ? "no limit" : none,
      ratioCls);
  const policy = pick(s, "redis.maxmemory_policy");
  const unsafe = pick(s, "redis.eviction_unsafe") === true;
  set("redis-policy", policy == null ? none : String(policy) + (unsafe ? " (evicts sessions!)" : ""),
      policy == null ? "" : unsafe ? "bad" : "ok");
  set("postgres-up", ...yesNo(pick(s, "postgres.up"), "up", "down"));
  const backlog = pick(s, "sync.backlog");
  set("sync-backlog", int(backlog), isNum(backlog) && backlog > 0 ? "warn" : "");
  const age = pick(s, "sync.last_success_age_s");
  set("sync-age", isNum(age) ? age.toFixed(1) : "never", isNum(age) && age > 300 ? "bad" : "");
  set("sync-duration", num(pick(s, "sync.last_duration_ms"), 1));
  const failed = pick(s, "sync.failed");
  set("sync-failed", int(failed), isNum(failed) && failed > 0 ? "warn" : "");
  const rejected = pick(s, "sync.rejected");
  set("sync-rejected", int(rejected), isNum(rejected) && rejected > 0 ? "warn" : "");
  const circuit = pick(s, "sync.circuit");
  set("sync-circuit", circuit == null ? none : String(circuit), circuit === "open" ? "bad" : "");
  const encKey = pick(s, "encryption.current_key");
  set("enc-key", encKey == null ? "off (plaintext)" : String(encKey));
  const pass = pick(s, "encryption.last_pass");
  let old = null;
  if (pass && encKey != null) {
    old = pass.plaintext || 0;
    for (const [id, n] of Object.entries(pass.by_key || {})) if (id !== encKey) old += n;
  }
  set("enc-old", old == null ? none : int(old), old > 0 ? "warn" : "");
  const encErr = (pick(s, "encryption.errors.key_missing") || 0) +
                 (pick(s, "encryption.errors.auth_failed") || 0);
  set("enc-errors", int(encErr), encErr > 0 ? "bad" : "");
}
const svgNS = "http://www.w3.org/2000/svg";
// A line per series over the history's points (null: no point), scaled to the largest value.
function chart(id, title, unit, series) {
  let fig = $(id);
  if (!fig) {
    fig = document.createElement("figure");
    fig.id = id;
    const cap = document.createElement("figcaption");
    const name = document.createElement("span");
    name.textContent = title;
    const last = document.createElement("span");
    last.className = "last";
    cap.append(name, last);
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 300 64");
    svg.setAttribute("preserveAspectRatio", "none");
    fig.append(cap, svg);
    $("charts").append(fig);
  }
  const svg = fig.querySelector("svg");
  svg.replaceChildren();
  let max = 0;
  for (const s of series) for (const v of s) if (isNum(v)) max = Math.max(max, v);
  const scale = max > 0 ? 58 / max : 0;
  series.forEach((values, k) => {
    const n = values.length;
    const pts = [];
    values.forEach((v, i) => {
      if (!isNum(v)) return;
      const x = n > 1 ? (i * 300) / (n - 1) : 150;
      pts.push(x.toFixed(1) + "," + (61 - v * scale).toFixed(1));
    });
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    if (k > 0) line.setAttribute("class", "second");
    svg.append(line);
  });
  const lastValues = series.map((s) => s.length ? s[s.length - 1] : null);
  fig.querySelector(".last").textContent =
    lastValues.map((v) => (isNum(v) ? (Math.round(v * 10) / 10) + unit : none)).join(" / ") +
    " (max " + (Math.round(max * 10) / 10) + unit + ")";
}
function renderHistory(s) {
  const points = (pick(s, "history.points") || []).slice();
  // The live figures as the newest point, so a chart shows something from the first refresh.
  const live = { requests_per_s: pick(s, "http.requests_per_s"), p99_ms: pick(s, "redis.latency_p99_ms"),
                 sync_backlog: pick(s, "sync.backlog"), queues: {} };
  for (const q of pick(s, "queues.list") || [])
    live.queues[q.name] = { depth: q.waiting + q.delayed + q.active + q.paused,
                            failed_per_s: q.failed_per_s };
  points.push(live);
  chart("chart-requests", "requests per second", "", [points.map((p) => p.requests_per_s)]);
  chart("chart-p99", "session latency p99", " ms", [points.map((p) => p.p99_ms)]);
  chart("chart-backlog", "sync backlog (sessions)", "", [points.map((p) => p.sync_backlog)]);
  for (const name of Object.keys(live.queues).sort())
    chart("chart-queue-" + name, "queue " + name + ": depth / failures per s", "",
          [points.map((p) => (p.queues[name] ? p.queues[name].depth : 0)), // not yet: empty
           points.map((p) => (p.queues[name] ? p.queues[name].failed_per_s : 0))]);
}
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function renderQueues(s) {
  const list = pick(s, "queues.list") || [];
  const body = $("queues");
  body.replaceChildren();
  if (list.length === 0) {
    const tr = document.createElement("tr");
    const td = cell("no queue yet");
    td.colSpan = 11;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const q of list) {
    const tr = document.createElement("tr");
    tr.id = "queue-" + q.name;
    const circuits = Object.entries(pick(q, "workers.circuits") || {});
    const open = circuits.filter(([, st]) => st !== "closed");
    const busy = pick(q, "workers.busy");
    tr.append(cell(q.name + (q.is_paused ? " (paused)" : "")),
              cell(int(q.is_paused ? q.paused : q.waiting), q.waiting > 1000 ? "warn" : ""),
              cell(int(q.delayed)), cell(int(q.active)),
              cell(int(q.failed), q.failed > 0 ? "warn" : ""),
              cell(num(q.oldest_waiting_age_s, 1)),
              cell(num(q.enqueued_per_s, 1)), cell(num(q.completed_per_s, 1)),
              cell(num(q.failed_per_s, 1), q.failed_per_s > 0 ? "warn" : ""),
              cell(isNum(busy) ? busy + " of " + pick(q, "workers.concurrency") : none),
              cell(circuits.length === 0 ? none : open.length === 0 ? "closed"
                   : open.map(([t, st]) => t + " " + st).join(", "),
                   circuits.length === 0 ? "" : open.length ? "bad" : "ok"));
    body.append(tr);
  }
}
// One row per namespace of /v1/status "cache" (counters since the node started); the member is
// absent when cache.enabled = false.
function renderCache(s) {
  const c = s.cache;
  const body = $("cache-namespaces");
  body.replaceChildren();
  const note = (text) => {
    const tr = document.createElement("tr");
    const td = cell(text);
    td.colSpan = 9;
    tr.append(td);
    body.append(tr);
  };
  if (c == null) {
    for (const id of ["cache-degraded", "cache-subscribed", "cache-memory-ratio"]) set(id, none);
    return note("cache disabled (cache.enabled = false)");
  }
  set("cache-degraded", c.degraded === true ? "unreachable (degraded)" : c.degraded === false
                        ? "up" : none, c.degraded === true ? "bad" : c.degraded === false ? "ok" : "");
  set("cache-subscribed", ...yesNo(c.subscribed, "yes", "no"));
  const ratio = c.redis_memory_used_ratio;
  set("cache-memory-ratio", !isNum(ratio) ? none : ratio > 0 ? (ratio * 100).toFixed(1) + "%"
                                                             : "no limit",
      isNum(ratio) && ratio > 0 ? (ratio >= 0.8 ? "bad" : ratio >= 0.7 ? "warn" : "ok") : "");
  const list = c.namespaces || [];
  if (list.length === 0) return note("no namespace configured");
  for (const n of list) {
    const tr = document.createElement("tr");
    tr.id = "cache-ns-" + n.name; // not "cache-": a namespace may be called "degraded"
    const reads = (isNum(n.hits) ? n.hits : 0) + (isNum(n.misses) ? n.misses : 0);
    const r = n.hit_ratio;
    // Below 50% is the CacheHitRatioLow alert's level, 80% and above healthy; no reads: a dash.
    tr.append(cell(n.name + (n.loader ? "" : " (no loader)")),
              cell(reads > 0 && isNum(r) ? (r * 100).toFixed(1) + "%" : none,
                   reads > 0 && isNum(r) ? (r < 0.5 ? "bad" : r < 0.8 ? "warn" : "ok") : ""),
              cell(int(n.hits)), cell(int(n.misses)), cell(int(n.near_hits)), cell(int(n.loads)),
              cell(int(n.load_errors), n.load_errors > 0 ? "warn" : ""),
              cell(int(n.stale_served), n.stale_served > 0 ? "warn" : ""),
              cell(n.near_cache_entries === 0 ? "off"
                   : int(n.near_entries) + " of " + int(n.near_cache_entries)));
    body.append(tr);
  }
}
// One row per master of /v1/status redis.topology: a single Redis shows as one master with
// every slot.
function renderTopology(s) {
  const t = s.redis && s.redis.topology;
  const body = $("topology-masters");
  body.replaceChildren();
  if (t == null) return;
  set("topology-kind", t.cluster ? "Redis Cluster, " + t.masters.length + " masters"
                                 : "a single Redis");
  set("topology-unserved", int(t.slots_unserved), t.slots_unserved > 0 ? "bad" : "ok");
  set("topology-redirects", int(t.redirects.moved) + " moved, " + int(t.redirects.ask) + " ask");
  t.masters.forEach((m, i) => {
    const tr = document.createElement("tr");
    tr.id = "topology-master-" + i;
    const ranges = (m.slots || []).map(([a, b]) => a === b ? String(a) : a + "-" + b);
    tr.append(cell(m.address), cell(int(m.slot_count)),
              cell(ranges.length ? ranges.join(", ") : none),
              cell(m.health || none, m.health && m.health !== "online" ? "bad" : ""),
              cell(m.connected ? "yes" : "no", m.connected ? "ok" : "bad"),
              cell((m.replicas || []).map((r) => r.address).join(", ") || none));
    body.append(tr);
  });
}
// One row per node of /v1/cluster: its sync partitions are those its last successful run
// drained (a partition belongs to whichever node takes its lease next, not to a node).
function renderNodes(c) {
  const body = $("cluster-nodes");
  body.replaceChildren();
  let partitions = null;
  c.nodes.forEach((n, i) => {
    const tr = document.createElement("tr");
    tr.id = "cluster-node-" + i;
    const s = n.sync || {};
    if (s.enabled && isNum(s.partitions)) partitions = s.partitions;
    const ranges = (s.last_run_partitions || []).map(([a, b]) => a === b ? String(a) : a + "-" + b);
    tr.append(cell(n.id + (n.self ? " (this node)" : "")), cell(n.mode || none),
              cell(n.address || none), cell(n.version || none),
              cell(isNum(n.age_ms) && n.age_ms >= 0 ? (n.age_ms / 1000).toFixed(1) : none),
              cell(n.live ? "yes" : "no", n.live ? "ok" : "bad"),
              cell(!s.enabled ? "no sync"
                   : int(s.last_run_partition_count) +
                     (ranges.length ? " (" + ranges.slice(0, 8).join(", ") +
                                      (ranges.length > 8 ? ", …" : "") + ")" : "")),
              cell(s.enabled ? int(s.holding_count) : none));
    body.append(tr);
  });
  set("cluster-partitions", partitions == null ? none : int(partitions));
}
async function refreshNodes(headers) {
  try {
    const res = await fetch("/v1/cluster", { cache: "no-store", headers });
    if (!res.ok) throw new Error("HTTP " + res.status);
    renderNodes(await res.json());
  } catch (e) {
    const body = $("cluster-nodes");
    const tr = document.createElement("tr");
    tr.append(cell("Cannot load /v1/cluster: " + e.message, "bad"));
    body.replaceChildren(tr);
  }
}
// With auth on, /v1/status needs an admin token: open the page as /#token=<admin token>. The
// fragment is never sent to the server (so it is in no access log); it is kept in this tab's
// sessionStorage and taken out of the address bar at once.
const authToken = (() => {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("sessiond-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("sessiond-token");
})();
async function refresh() {
  try {
    const headers = authToken ? { Authorization: "Bearer " + authToken } : {};
    const res = await fetch("/v1/status", { cache: "no-store", headers });
    if (res.status === 401 || res.status === 403)
      throw new Error("/v1/status answered HTTP " + res.status +
                      ": it needs an admin token; open this page as /#token=<admin token>");
    if (!res.ok) throw new Error("/v1/status answered HTTP " + res.status);
    const status = await res.json();
    render(status);
    renderQueues(status);
    renderCache(status);
    renderTopology(status);
    renderHistory(status);
    await refreshNodes(headers);
    $("error").hidden = true;
    $("updated").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    $("error").textContent = "Cannot load /v1/status: " + e.message +
                             ". The figures below are from the last successful refresh.";
    $("error").hidden = false;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)html";

} // namespace

const std::string& status_page_html() {
  static const std::string html(page);
  return html;
}

} // namespace sessiond::api
