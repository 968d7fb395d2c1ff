// The operator page: state and rejects live over server-sent events (/api/events), charts with
// uPlot, operator actions as POSTs carrying the session's CSRF token. No build step, no framework.
"use strict";

const page = { csrf: "", role: null, user: null, rejects: new Map(), charts: {}, viewing: null };
const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 1) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));
const num = (v) => (v === null || v === undefined ? "-" : Number(v).toPrecision(4));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

function say(text) { $("message").textContent = text; }

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function post(url, body = {}) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": page.csrf },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status}`);
  return data;
}

// ------------------------------------------------------------------------------ session
function showSession(s) {
  page.csrf = s.csrf; page.role = s.role; page.user = s.user;
  const operator = s.role === "operator";
  $("who").textContent = operator ? `operator ${s.user}` : "read-only";
  $("login-form").hidden = operator;
  $("logout-button").hidden = !operator;
  document.body.dataset.role = s.role || "";
  document.querySelectorAll(".operator-only").forEach((b) => { b.hidden = !operator; });
  $("false-reject-button").hidden = !operator || !page.viewing || page.viewing.false_reject;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const s = await post("/api/login", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    showSession(s);
    say(`logged in as ${s.user}`);
  } catch (error) { say(`login refused: ${error.message}`); }
});

$("logout-button").addEventListener("click", async () => {
  showSession(await post("/api/logout"));
  say("logged out");
});

// ------------------------------------------------------------------------------ state
function pill(node, text, kind) { node.textContent = text; node.className = `pill ${kind}`; }

function showState(s) {
  const h = s.health;
  pill($("health"), h.alive ? (h.ready ? "daemon: ready" : "daemon: NOT READY") : "daemon: NO HEARTBEAT",
       h.alive && h.ready ? "good" : "bad");
  pill($("line-stop"), s.line_stop === null ? "line: PLC not readable" : s.line_stop ? "LINE STOP" : "line: running",
       s.line_stop === null ? "warn" : s.line_stop ? "bad" : "good");
  $("since").textContent = new Date(s.since_ns / 1e6).toLocaleString();
  const a = s.archive;
  $("archive-figures").textContent = `${a.entries} entries, ${(a.bytes / 1048576).toFixed(1)} of ` +
    `${(a.quota_bytes / 1048576).toFixed(0)} MiB; deleted by quota ${a.deleted_quota || 0}, by age ` +
    `${a.deleted_age || 0}; corrupt ${a.corrupt_entries || 0}; false rejects marked ${a.false_rejects_marked || 0}`;
  const body = $("cameras").querySelector("tbody");
  for (const [camera, c] of Object.entries(s.cameras)) {
    let row = document.getElementById(`cam-${camera}`);
    if (!row) {
      row = el("tr", { id: `cam-${camera}`, "data-camera": camera });
      for (const key of ["name", "OK", "REJECT", "FAULT", "total", "rate", "reject-rate", "p50", "p99", "seq"]) {
        row.append(el("td", { class: key, "data-field": key }));
      }
      body.append(row);
    }
    const cell = (key) => row.querySelector(`[data-field="${key}"]`);
    cell("name").textContent = camera;
    for (const d of ["OK", "REJECT", "FAULT"]) cell(d).textContent = c.counts[d];
    cell("total").textContent = c.total;
    cell("rate").textContent = fmt(c.rates.OK + c.rates.REJECT + c.rates.FAULT);
    cell("reject-rate").textContent = fmt(c.rates.REJECT + c.rates.FAULT);
    cell("p50").textContent = fmt(c.latency_ms.p50);
    cell("p99").textContent = fmt(c.latency_ms.p99);
    cell("seq").textContent = c.last_seq === null ? "-" : c.last_seq;
  }
  showGateways(s.line);
}

function showGateways(line) {
  const body = $("gateways").querySelector("tbody");
  body.replaceChildren();
  for (const [name, g] of Object.entries(line)) {
    const ack = el("button", { type: "button", class: "operator-only", textContent: "acknowledge",
                               hidden: page.role !== "operator" || !g.reachable });
    ack.addEventListener("click", async () => {
      try { await post(`/api/line-stop/${encodeURIComponent(name)}/ack`); say(`line stop of ${name} acknowledged`); }
      catch (error) { say(`acknowledge failed: ${error.message}`); }
    });
    const counts = g.cameras ? Object.entries(g.cameras).map(([c, k]) => `${c}: ${k.OK}/${k.REJECT}/${k.FAULT}`).join("  ") : "";
    body.append(el("tr", { "data-gateway": name },
      el("td", {}, name),
      el("td", { class: g.line_stop ? "FAULT" : "" }, !g.readable ? "not readable (private sim)" : !g.reachable ?
        "PLC unreachable" : g.line_stop ? "STOP" : "running"),
      el("td", {}, (g.causes || []).join(", ")),
      el("td", {}, g.reachable ? `${g.daemon_alive ? "yes" : "no"} / ${g.daemon_ready ? "yes" : "no"}` : "-"),
      el("td", { "data-field": "plc-counts" }, counts),
      el("td", {}, ack)));
  }
}

// ------------------------------------------------------------------------------ charts
function makeChart(id, title, series) {
  const target = $(id);
  return new uPlot({ width: Math.min(560, window.innerWidth - 60), height: 220, title,
                     scales: { x: { time: true } }, series: [{}, ...series] }, [[]], target);
}

const COLOURS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2"];

async function refreshCharts() {
  if (typeof uPlot === "undefined") return;
  const data = await getJSON("/api/series");
  const cameras = Object.keys(data);
  const key = cameras.join(",");
  if (page.charts.key !== key) {
    for (const id of ["rate-chart", "score-chart"]) $(id).replaceChildren();
    page.charts.rate = makeChart("rate-chart", "", cameras.map((c, i) => ({ label: c, stroke: COLOURS[i % 6] })));
    page.charts.score = makeChart("score-chart", "", [
      ...cameras.map((c, i) => ({ label: c, stroke: COLOURS[i % 6], width: 0, points: { show: true, size: 4 } })),
      { label: "threshold", stroke: "#b91c1c", dash: [6, 4] }]);
    page.charts.key = key;
  }
  const seconds = [...new Set(cameras.flatMap((c) => data[c].rate.map((b) => b[0])))].sort((a, b) => a - b);
  page.charts.rate.setData([seconds, ...cameras.map((c) => {
    const byS = new Map(data[c].rate.map((b) => [b[0], b[1] + b[2] + b[3]]));
    return seconds.map((t) => byS.get(t) ?? 0);
  })]);
  const points = cameras.flatMap((c, i) => data[c].scores.map((p) => [p[0], i, p[1], p[2]])).sort((a, b) => a[0] - b[0]);
  page.charts.score.setData([points.map((p) => p[0]),
    ...cameras.map((c, i) => points.map((p) => (p[1] === i ? p[2] : null))), points.map((p) => p[3])]);
}

// ------------------------------------------------------------------------------ rejects
function addReject(entry, live) {
  if (page.rejects.has(entry.id)) return;
  page.rejects.set(entry.id, entry);
  const over = entry.score !== null && entry.threshold !== null && entry.score >= entry.threshold;
  const img = el("img", { alt: `${entry.camera} ${entry.seq}`, loading: "eager" });
  const figure = el("figure", { class: `reject${entry.false_reject ? " marked" : ""}`, id: `reject-${entry.id}`,
                                "data-id": entry.id, "data-camera": entry.camera, "data-seq": entry.seq,
                                "data-decided-ns": entry.decided_ns, "data-decision": entry.decision },
    img,
    el("figcaption", {}, `${entry.decision} ${entry.camera} #${entry.seq} `,
       el("span", { class: `score${over ? " over" : ""}` }, `score ${num(entry.score)} / threshold ${num(entry.threshold)}`),
       el("br"), entry.reason));
  img.addEventListener("load", () => { figure.dataset.shownMs = String(Date.now()); });
  img.src = entry.files.includes("thumb.jpg") ? `/archive/${entry.id}/thumb.jpg` : "";
  if (!entry.files.includes("thumb.jpg")) figure.dataset.shownMs = String(Date.now());
  figure.addEventListener("click", () => openViewer(entry.id));
  const list = $("rejects");
  if (live) list.prepend(figure); else list.append(figure);
  while (list.children.length > 60) { const last = list.lastElementChild; page.rejects.delete(Number(last.dataset.id)); last.remove(); }
}

function openViewer(id) {
  const entry = page.rejects.get(id);
  page.viewing = entry;
  $("viewer-title").textContent = `${entry.decision} ${entry.camera} #${entry.seq}: score ${num(entry.score)}, ` +
    `threshold ${num(entry.threshold)}, ${entry.reason}${entry.defect_area_px ? `, area ${entry.defect_area_px} px` : ""}`;
  $("viewer-original").style.width = "";
  $("viewer-original").src = entry.files.includes("original.png") ? `/archive/${id}/original.png` : "";
  $("viewer-overlay").src = entry.files.includes("overlay.jpg") ? `/archive/${id}/overlay.jpg` : "";
  $("false-reject-button").hidden = page.role !== "operator" || entry.false_reject;
  $("viewer").showModal();
}

// the overlay of a narrow image is enlarged by whole pixels (its caption stays legible): show the
// original at the same scale, so the two are side by side pixel for pixel
$("viewer-overlay").addEventListener("load", () => {
  const original = $("viewer-original");
  const scale = original.naturalWidth ? $("viewer-overlay").naturalWidth / original.naturalWidth : 1;
  if (scale > 1) original.style.width = `${original.naturalWidth * scale}px`;
});

$("viewer-close").addEventListener("click", () => { $("viewer").close(); page.viewing = null; });

$("false-reject-button").addEventListener("click", async () => {
  const entry = page.viewing;
  try {
    const updated = await post(`/api/rejects/${entry.id}/false-reject`);
    page.rejects.set(entry.id, updated);
    $(`reject-${entry.id}`).classList.add("marked");
    $("false-reject-button").hidden = true;
    say(`entry ${entry.id} marked as a false reject`);
  } catch (error) { say(`not marked: ${error.message}`); }
});

// ------------------------------------------------------------------------------ calibration
async function showCalibration() {
  const body = $("calibration").querySelector("tbody");
  for (const [camera, c] of Object.entries(await getJSON("/api/calibration"))) {
    if (c.error) { body.append(el("tr", {}, el("td", {}, camera), el("td", { colSpan: 7 }, c.error))); continue; }
    const e = c.estimated_frr || {}, t = c.thresholds || {};
    const pct = (v) => (v === null || v === undefined ? "-" : `${(100 * v).toPrecision(3)} %`);
    const report = c.report ? el("a", { href: `/calibration/${encodeURIComponent(camera)}/report.png`, target: "_blank" }, "report.png") : "-";
    body.append(el("tr", { "data-camera": camera }, el("td", {}, camera), el("td", {}, num(t.image)),
      el("td", {}, t.pixel === null || t.pixel === undefined ? "off" : `>= ${t.min_defect_area} px at ${num(t.pixel)}`),
      el("td", {}, c.method || "-"), el("td", {}, pct(c.target_frr)),
      el("td", { class: "estimated-frr" }, `${pct(e.estimated_frr)} (${pct(e.ci_low)} .. ${pct(e.ci_high)})`),
      el("td", {}, `${c.n_fit ?? "-"}`), el("td", {}, report)));
  }
}

// ------------------------------------------------------------------------------ start
async function start() {
  showSession(await getJSON("/api/session"));
  showState(await getJSON("/api/state"));
  const recent = await getJSON("/api/rejects?limit=24");
  recent.forEach((entry) => addReject(entry, false));
  showCalibration().catch((error) => say(`calibration: ${error.message}`));
  const newest = recent.length ? recent[0].id : 0;
  const events = new EventSource(`/api/events?after_id=${newest}`);
  events.addEventListener("open", () => pill($("live"), "live", "good"));
  events.addEventListener("error", () => pill($("live"), "live: reconnecting", "warn"));
  events.addEventListener("state", (e) => showState(JSON.parse(e.data)));
  events.addEventListener("reject", (e) => addReject(JSON.parse(e.data), true));
  refreshCharts().catch(() => {});
  setInterval(() => refreshCharts().catch(() => {}), 2000);
  document.body.dataset.ready = "1";
}

start().catch((error) => say(`page failed to start: ${error.message}`));
