// The Arbor dashboard: renders /api/events' views (statusview.Fabric JSON).
// No framework, no build step: plain DOM and SVG.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const CELL_W = 176, CELL_H = 58, BOX_W = 160, BOX_H = 44;
const ROW_GAP = 34;    // room above each row for the incoming edges' labels
const PER_ROW = 5;     // items of one site and depth per row before wrapping
const MIN_SCALE = 0.7; // below this the tree scrolls rather than shrinks
const SITE_PAD = 12, SITE_HEAD = 26, SITE_GAP = 18;
const HISTORY_MS = 5 * 60 * 1000;
// Lag thresholds: beyond the first an edge is amber, beyond the second red.
const WARN_MS = 1000, BAD_MS = 10000;
const WARN_BYTES = 1 << 20, BAD_BYTES = 64 << 20;

const lagHistory = new Map(); // site -> [{t, bytes}]

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function ms(n) {
  if (n >= 60000) return (n / 60000).toFixed(1) + " min";
  if (n >= 1000) return (n / 1000).toFixed(1) + " s";
  return n + " ms";
}

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// items turns the view into the tree's nodes: the master, relays, nodes,
// each with its parent (what it follows), health and incoming edge.
function items(v) {
  const out = new Map();
  const linkTo = new Map(); // child id -> its parent relay's link to it
  for (const r of v.relays) for (const l of r.links || []) linkTo.set(l.node || l.id, l);
  for (const r of v.relays) {
    let parent = r.upstream;
    if (parent === "master" || (parent || "").startsWith("redis://")) parent = v.master;
    let health = "ok", why = [];
    if (!r.live) { health = "down"; why.push("no status (down?)"); }
    else {
      if (r.link !== "streaming") { health = "warn"; why.push("link " + (r.link || "?")); }
      if (r.stale_epoch) { health = "bad"; why.push("stale: " + r.stale_epoch); }
      if (r.topology_error) { health = health === "ok" ? "warn" : health; why.push("topology refused: " + r.topology_error); }
    }
    if (!r.in_topology) why.push("not in the topology");
    if (r.last_error) why.push("last error: " + r.last_error);
    const l = linkTo.get(r.id);
    let edge;
    if (r.live && parent !== v.master && l) {
      edge = { bytes: l.lag_bytes, ms: l.lag_ms, ratio: l.wire_bytes > 0 ? l.raw_bytes / l.wire_bytes : 0 };
    } else if (r.live) {
      edge = { bytes: r.lag_bytes, ms: null, ratio: r.upstream_wire_bytes > 0 ? r.upstream_raw_bytes / r.upstream_wire_bytes : 0 };
    }
    out.set(r.id, {
      id: r.id, kind: "relay", site: r.site || "?", parent, health, why, edge,
      sub: r.live ? "relay · " + (r.link || "?") : "relay · no status",
      sub2: r.live ? "stored " + r.stored_offset + " · " + r.children + " children" : "",
    });
  }
  for (const n of v.nodes) {
    let health = "ok", why = [];
    if (!n.live) { health = "down"; why.push("no status (agent down?)"); }
    else if (!n.healthy) { health = "bad"; why.push("unhealthy"); }
    else if (n.role === "replica" && n.link !== "streaming") { health = "warn"; why.push("link " + (n.link || "?")); }
    if (n.last_error) why.push("last error: " + n.last_error);
    if (!n.in_topology) why.push("not in the topology");
    const isMaster = n.id === v.master;
    // The relay's link to the replica (the view names its node from the
    // address it announces) measures its acks, as the lag traces do; the
    // agent's own figure stands in when no relay reports the node.
    const l = linkTo.get(n.id);
    let edge;
    if (!isMaster && l) edge = { bytes: l.lag_bytes, ms: l.lag_ms, ratio: 0 };
    else if (!isMaster && n.live && n.healthy) edge = { bytes: n.lag_bytes, ms: n.lag_ms, ratio: 0 };
    let role = isMaster ? "master" : (n.role || (n.candidate ? "candidate" : "replica"));
    if (n.candidate && !isMaster) role += " · p" + n.priority;
    out.set(n.id, {
      id: n.id, kind: isMaster ? "master" : "node", site: n.site || "?", parent: isMaster ? "" : n.follow,
      health, why, edge, sub: role + (n.live ? (n.healthy ? "" : " · UNHEALTHY") : " · no status"),
      sub2: n.live ? "offset " + n.offset : "",
    });
  }
  return out;
}

function edgeClass(e, health) {
  if (!e || health === "down") return "unk";
  if ((e.ms !== null && e.ms >= BAD_MS) || e.bytes >= BAD_BYTES) return "bad";
  if ((e.ms !== null && e.ms >= WARN_MS) || e.bytes >= WARN_BYTES) return "warn";
  return "ok";
}

function edgeLabel(e) {
  if (!e) return "no link";
  let s = bytes(e.bytes);
  if (e.ms !== null) s += " · " + ms(e.ms);
  if (e.ratio > 0) s += " · z " + e.ratio.toFixed(1) + "×";
  return s;
}

// layout places the items: a column per site, a row per depth (wrapped
// every PER_ROW items), rows aligned across sites.
function layout(v, its) {
  const depth = new Map();
  const depthOf = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    const it = its.get(id);
    if (!it || !it.parent || seen.has(id)) return 0;
    seen.add(id);
    const p = its.get(it.parent);
    const d = p ? depthOf(it.parent, seen) + 1 : 1;
    depth.set(id, d);
    return d;
  };
  for (const id of its.keys()) depth.set(id, depthOf(id, new Set()));
  const sites = v.sites.map(s => s.name);
  for (const it of its.values()) if (!sites.includes(it.site)) sites.push(it.site);
  const order = { master: 0, relay: 1, node: 2 };
  const groups = new Map(); // site -> depth -> [item]
  let maxDepth = 0;
  for (const it of its.values()) {
    const d = depth.get(it.id);
    maxDepth = Math.max(maxDepth, d);
    if (!groups.has(it.site)) groups.set(it.site, new Map());
    const g = groups.get(it.site);
    if (!g.has(d)) g.set(d, []);
    g.get(d).push(it);
  }
  const rows = []; // per depth: how many wrapped rows
  for (let d = 0; d <= maxDepth; d++) {
    let n = 1;
    for (const g of groups.values()) n = Math.max(n, Math.ceil((g.get(d) || []).length / PER_ROW));
    rows.push(n);
  }
  const rowY = [];
  let y = SITE_HEAD + SITE_PAD;
  for (let d = 0; d <= maxDepth; d++) { rowY.push(y + ROW_GAP); y += rows[d] * (CELL_H + ROW_GAP); }
  const height = y + SITE_PAD;
  const cols = [];
  let x = 0;
  for (const s of sites) {
    const g = groups.get(s) || new Map();
    let w = 1;
    for (const list of g.values()) w = Math.max(w, Math.min(list.length, PER_ROW));
    const width = w * CELL_W + 2 * SITE_PAD;
    cols.push({ site: s, x, width });
    for (const [d, list] of g) {
      list.sort((a, b) => order[a.kind] - order[b.kind] || a.id.localeCompare(b.id));
      list.forEach((it, i) => {
        const row = Math.floor(i / PER_ROW), col = i % PER_ROW;
        it.x = x + SITE_PAD + col * CELL_W + (CELL_W - BOX_W) / 2;
        it.y = rowY[d] + row * (CELL_H + ROW_GAP);
      });
    }
    x += width + SITE_GAP;
  }
  return { cols, width: Math.max(x - SITE_GAP, 200), height };
}

function renderTree(v) {
  const its = items(v);
  const lay = layout(v, its);
  const svg = document.getElementById("tree");
  const frag = document.createDocumentFragment();
  for (const c of lay.cols) {
    const g = sv("g", { class: "site", "data-site": c.site });
    g.append(sv("rect", { class: "site-box", x: c.x, y: 0, width: c.width, height: lay.height, rx: 8 }));
    g.append(sv("text", { class: "site-title", x: c.x + SITE_PAD, y: 18 }, "site " + c.site));
    frag.append(g);
  }
  const edges = sv("g", { class: "edges" });
  const labels = sv("g", { class: "labels" });
  for (const it of its.values()) {
    const p = its.get(it.parent);
    if (!p) continue;
    const x1 = p.x + BOX_W / 2, y1 = p.y + BOX_H, x2 = it.x + BOX_W / 2, y2 = it.y;
    const cls = edgeClass(it.edge, it.health);
    const my = (y1 + y2) / 2;
    edges.append(sv("path", {
      class: "edge " + cls, "data-edge": it.id, "data-from": p.id,
      d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`,
    }));
    // The label sits just above the child: each child has one incoming
    // edge, so labels never overlap.
    const text = edgeLabel(it.edge);
    const lw = text.length * 5.6 + 8;
    labels.append(sv("rect", { class: "lag-bg", x: x2 - lw / 2, y: y2 - 19, width: lw, height: 14, rx: 3 }));
    labels.append(sv("text", { class: "lag", "data-edge": it.id, x: x2, y: y2 - 8, "text-anchor": "middle" }, text));
  }
  frag.append(edges);
  for (const it of its.values()) {
    const g = sv("g", {
      class: `node ${it.health}${it.kind === "master" ? " master" : ""}`,
      "data-id": it.id, "data-kind": it.kind, "data-health": it.health,
      transform: `translate(${it.x},${it.y})`,
    });
    g.append(sv("title", {}, [it.id, ...it.why].join("\n")));
    g.append(sv("rect", { width: BOX_W, height: BOX_H, rx: 6 }));
    g.append(sv("text", { class: "id", x: 8, y: 15 }, clip(it.id, 22)));
    g.append(sv("text", { class: "sub", x: 8, y: 28 }, clip(it.sub, 26)));
    g.append(sv("text", { class: "sub", x: 8, y: 40 }, clip(it.sub2, 26)));
    if (it.health === "bad" || it.health === "down") {
      g.append(sv("text", { class: "flag", x: BOX_W - 8, y: 15, "text-anchor": "end" }, it.health === "down" ? "DOWN" : "!"));
    }
    frag.append(g);
  }
  frag.append(labels);
  svg.replaceChildren(frag);
  // Fit the panel's width, but never below MIN_SCALE (then it scrolls).
  const avail = document.getElementById("tree-wrap").clientWidth || lay.width;
  const scale = Math.max(MIN_SCALE, Math.min(1, avail / lay.width));
  svg.setAttribute("width", Math.round(lay.width * scale));
  svg.setAttribute("height", Math.round(lay.height * scale));
  svg.setAttribute("viewBox", `0 0 ${lay.width} ${lay.height}`);
}

// recordLag adds each site's largest lag in this view (computed by the
// server over the same edges the tree draws: site_lag) to the sites'
// charts, at the view's own time, so the points continue the history the
// server kept before the page opened (loadHistory).
function recordLag(v) {
  const t = Date.parse(v.time);
  const lags = v.site_lag || {};
  for (const s of v.sites) {
    if (!lagHistory.has(s.name)) lagHistory.set(s.name, []);
    const h = lagHistory.get(s.name);
    if (h.length && h[h.length - 1].t >= t) continue;
    h.push({ t, bytes: lags[s.name] || 0 });
    while (h.length && h[0].t < t - HISTORY_MS) h.shift();
  }
}

// loadHistory seeds the sites' charts with the lag history the server
// kept (the last minutes), so they do not start empty.
async function loadHistory() {
  try {
    const resp = await fetch("/api/lag-history");
    if (!resp.ok) return;
    const body = await resp.json();
    for (const [site, points] of Object.entries(body.sites || {})) {
      const h = lagHistory.get(site) || [];
      const first = h.length ? h[0].t : Infinity;
      lagHistory.set(site, points.filter(p => p.t < first).concat(h));
    }
  } catch (e) {
    // The charts then start from the live views.
  }
}

function sparkline(points) {
  const W = 150, H = 30;
  const svg = sv("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart", "data-points": String(points.length) });
  svg.append(sv("rect", { class: "spark-frame", x: 0.5, y: 0.5, width: W - 1, height: H - 1 }));
  if (points.length === 0) return svg;
  // The x axis spans the samples kept (at most HISTORY_MS, at least 10 s),
  // ending at the newest (server time: no clock skew with the page).
  const now = points[points.length - 1].t, top = Math.max(1, ...points.map(p => p.bytes));
  const span = Math.min(HISTORY_MS, Math.max(10000, now - points[0].t));
  const xy = points.map(p => [W - ((now - p.t) / span) * W, H - 2 - (p.bytes / top) * (H - 4)]);
  const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  svg.append(sv("polygon", { class: "spark-area", points: `${xy[0][0].toFixed(1)},${H} ${line} ${W},${H}` }));
  svg.append(sv("polyline", { class: "spark", points: line }));
  svg.append(sv("title", {}, "max lag " + bytes(top) + " in the last 5 min"));
  return svg;
}

function renderSites(v) {
  const body = document.querySelector("#sites tbody");
  const rows = v.sites.map(s => {
    const tr = el("tr", { "data-site": s.name });
    tr.append(el("td", {}, s.name));
    tr.append(el("td", { class: "num" }, s.acked ? String(s.acked_offset) : "–"));
    const risk = el("td", { class: "num" }, s.acked ? bytes(s.bytes_at_risk) : "–");
    if (s.acked && s.bytes_at_risk >= WARN_BYTES) risk.className += " inel";
    tr.append(risk);
    const h = lagHistory.get(s.name) || [];
    const td = el("td");
    td.append(sparkline(h));
    td.append(el("span", { class: "muted" }, " " + bytes(Math.max(0, ...h.map(p => p.bytes)))));
    tr.append(td);
    return tr;
  });
  body.replaceChildren(...rows);
}

// renderSyncs lists the full syncs in progress with the server's figures:
// bytes sent of the snapshot, percent, the rate seen so far and the time
// left at that rate.
function renderSyncs(v) {
  const list = [];
  for (const f of v.full_syncs || []) {
    let s = `${f.relay} → ${f.child}: ${bytes(f.bytes)} sent`;
    if (f.total_bytes > 0) s += ` of ${bytes(f.total_bytes)} (${(f.percent || 0).toFixed(0)}%)`;
    if (f.rate_bytes_per_sec > 0) s += ` · ${bytes(Math.round(f.rate_bytes_per_sec))}/s`;
    s += f.eta_ms != null ? ` · ETA ${ms(f.eta_ms)}` : " · ETA –";
    list.push(el("li", { "data-sync": f.child, "data-relay": f.relay, "data-eta-ms": f.eta_ms != null ? String(f.eta_ms) : "" }, s));
  }
  document.getElementById("syncs").replaceChildren(...list);
  document.getElementById("syncs-panel").hidden = list.length === 0;
}

function renderElection(v) {
  const e = v.election || {};
  const box = document.getElementById("election");
  const ps = [];
  if (e.record) {
    const since = e.since ? new Date(e.since).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "?";
    ps.push(el("p", {}, `epoch ${e.epoch} · master ${e.master} (${e.redis_addr}) since ${since}${e.reason ? " · " + e.reason : ""}`));
    const lead = el("p");
    if (e.live) lead.append(el("span", { class: "badge ok" }, "leader"), ` ${e.leader} holds the election`);
    else if (e.leader) lead.append(el("span", { class: "badge bad" }, "leader differs"), ` ${e.leader} (epoch ${e.leader_epoch})`);
    else lead.append(el("span", { class: "badge bad" }, "no leader"), " nobody holds the election");
    ps.push(lead);
  } else if (e.bad_record) {
    ps.push(el("p", {}, "master record REFUSED (relays keep the last good one): " + e.bad_record));
  } else {
    ps.push(el("p", { class: "muted" }, `no master record yet: the topology's master key names the master (${v.master || "–"})`));
  }
  for (const r of (e.relays || []).filter(r => r.stale)) {
    const p = el("p");
    p.append(el("span", { class: "badge bad" }, "stale"), ` relay ${r.id}: ${r.stale}`);
    ps.push(p);
  }
  box.replaceChildren(...ps);
  const rows = (e.candidates || []).map(c => {
    const ok = c.rank > 0;
    const tr = el("tr", { "data-candidate": c.id, class: ok ? "" : "inel" });
    tr.append(el("td", {}, ok ? String(c.rank) : "–"), el("td", {}, c.id), el("td", {}, c.site),
      el("td", { class: "num" }, String(c.priority)), el("td", { class: "num" }, String(c.offset)), el("td", {}, c.reason));
    if (actions.allowed) {
      const td = el("td", { class: "act" });
      if (ok && e.live) {
        const b = el("button", { type: "button", "data-switchover": c.id, title: `Switch over to ${c.id}: writes pause until it has the master's offset` }, "Switch over to…");
        b.disabled = actions.busy;
        td.append(b);
      }
      tr.append(td);
    }
    return tr;
  });
  document.querySelector("#candidates tbody").replaceChildren(...rows);
  document.getElementById("candidates").hidden = rows.length === 0;
}

// Actions: only when the server was started with --allow-actions
// (GET /api/config). The token is asked once per tab and kept in
// sessionStorage, never in the page's URL or in localStorage.
const actions = { allowed: false, busy: false };
const TOKEN_KEY = "arbor-action-token";

function showResult(text, ok) {
  const p = document.getElementById("action-result");
  p.textContent = text;
  p.className = ok ? "result ok" : "result bad";
  p.hidden = false;
}

async function switchover(to) {
  if (actions.busy) return;
  if (!window.confirm(`Switch the master over to ${to}?\n\nWrites pause until ${to} has the master's offset (at most 5 s), then ${to} becomes master.`)) return;
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = window.prompt("Action token (--action-token / $ARBOR_DASHBOARD_TOKEN):");
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  actions.busy = true;
  for (const b of document.querySelectorAll("button[data-switchover]")) b.disabled = true;
  showResult(`switching over to ${to}…`, true);
  try {
    const resp = await fetch("/api/switchover", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify({ to: to, timeout_ms: 5000 }),
    });
    const body = await resp.json().catch(() => ({}));
    if (resp.status === 401) sessionStorage.removeItem(TOKEN_KEY); // ask again next time
    if (resp.ok) showResult(`switched over: ${body.node} is master (epoch ${body.epoch})`, true);
    else showResult(`switchover refused (${resp.status}): ${body.error || resp.statusText}`, false);
  } catch (err) {
    showResult(`switchover: ${err}`, false);
  } finally {
    actions.busy = false;
    for (const b of document.querySelectorAll("button[data-switchover]")) b.disabled = false;
  }
}

async function loadConfig() {
  try {
    const resp = await fetch("/api/config", { cache: "no-store" });
    const cfg = await resp.json();
    actions.allowed = cfg.actions === true;
  } catch (err) {
    actions.allowed = false;
  }
  const mode = document.getElementById("mode");
  if (actions.allowed) {
    mode.textContent = "actions allowed";
    mode.className = "ro actions";
    mode.title = "Started with --allow-actions: switchovers need the action token";
  }
  for (const th of document.querySelectorAll("#candidates th.act")) th.hidden = !actions.allowed;
  document.getElementById("candidates").addEventListener("click", ev => {
    const b = ev.target.closest("button[data-switchover]");
    if (b && actions.allowed) switchover(b.dataset.switchover);
  });
}

function renderHistory(v) {
  const hist = (v.election && v.election.history) || [];
  const list = hist.map(h => {
    const li = el("li", { "data-epoch": String(h.epoch) });
    const at = new Date(h.at).toISOString().replace("T", " ").slice(0, 19);
    const total = (h.steps || []).reduce((a, s) => a + s.took_ns, 0);
    li.append(el("div", {}, `epoch ${h.epoch} · ${at} · ${h.previous || "–"} → ${h.node} · ${h.reason}` +
      (total > 0 ? ` · took ${ms(Math.round(total / 1e6))}` : "")));
    if (total > 0) {
      const bar = el("div", { class: "steps" });
      for (const s of h.steps) {
        const span = el("span", { title: `${s.name} ${ms(Math.round(s.took_ns / 1e6))}${s.note ? " (" + s.note + ")" : ""}` });
        span.style.width = Math.max(1, (100 * s.took_ns) / total) + "%";
        bar.append(span);
      }
      li.append(bar);
      li.append(el("div", { class: "muted" }, h.steps.map(s => `${s.name} ${ms(Math.round(s.took_ns / 1e6))}`).join(" · ")));
    }
    return li;
  });
  if (list.length === 0) list.push(el("li", { class: "muted" }, "no failover yet"));
  document.getElementById("history").replaceChildren(...list);
}

function renderAlerts(v) {
  const refused = [];
  for (const p of v.refused || []) refused.push(el("li", { "data-key": p.key }, `${p.key || "(topology)"}: ${p.problem}`));
  for (const r of v.relays) if (r.topology_error) refused.push(el("li", { "data-relay": r.id }, `relay ${r.id} refused it: ${r.topology_error}`));
  document.getElementById("refused-list").replaceChildren(...refused);
  document.getElementById("refused").hidden = refused.length === 0;
  const probs = (v.status_problems || []).map(p => el("li", {}, `${p.key}: ${p.problem}`));
  document.getElementById("problems-list").replaceChildren(...probs);
  document.getElementById("problems").hidden = probs.length === 0;
}

function render(v) {
  document.getElementById("cluster").textContent = v.cluster;
  document.getElementById("meta").textContent =
    `etcd revision ${v.revision} · ${v.relays.length} relays · ${v.nodes.length} nodes · ${new Date(v.time).toLocaleTimeString()}`;
  renderTree(v);
  recordLag(v);
  renderSites(v);
  renderSyncs(v);
  renderElection(v);
  renderHistory(v);
  renderAlerts(v);
  document.body.dataset.revision = String(v.revision);
  document.body.dataset.updated = String(Date.now());
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
  es.addEventListener("error", () => { conn.textContent = "reconnecting"; conn.className = "conn down"; });
  es.addEventListener("view", ev => {
    conn.textContent = "live"; conn.className = "conn live";
    render(JSON.parse(ev.data));
  });
}

Promise.allSettled([loadConfig(), loadHistory()]).finally(connect);
