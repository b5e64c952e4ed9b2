// The smd live view. Everything a peer sent reaches the document through textContent
// (or SVG text nodes), never as markup: see docs/web.md.
"use strict";

const MAX_ROWS = 1000;      // messages kept in the page
const MAX_HELD = 5000;      // messages kept while paused
const SEQ_ARROWS = 40;      // arrows in the sequence view
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
let messages = [];          // records, oldest first
let held = [];              // arrived while paused
let paused = false;
let epoch = null;
let peers = [];
let knownClasses = new Set();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function pretty(rec) {
  if (rec.json) {
    try { return JSON.stringify(JSON.parse(rec.text), null, 2); } catch (_) { /* as text */ }
  }
  return rec.text;
}

function clock(wall) {
  const d = new Date(wall * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// -- messages ---------------------------------------------------------------

function matches(rec) {
  const cls = $("filter-class").value;
  if (cls && rec.class !== cls) return false;
  const text = $("filter-text").value.toLowerCase();
  return !text || rec.text.toLowerCase().includes(text) || rec.class.toLowerCase().includes(text);
}

function messageRow(rec) {
  const tr = el("tr");
  tr.dataset.id = rec.id;
  tr.dataset.cls = rec.class;
  tr.append(el("td", rec.id, "num"), el("td", clock(rec.wall)), el("td", rec.class));
  const td = el("td");
  td.append(el("pre", pretty(rec), "payload"));
  tr.append(td);
  return tr;
}

function renderMessages() {
  const body = $("messages").tBodies[0];
  const rows = messages.filter(matches).slice(-MAX_ROWS).map(messageRow);
  body.replaceChildren(...rows.reverse());
  renderSequence();
}

function addMessages(recs) {
  if (paused) {
    held.push(...recs);
    if (held.length > MAX_HELD) held.splice(0, held.length - MAX_HELD);
    $("held").textContent = held.length + " new while paused";
    return;
  }
  messages.push(...recs);
  if (messages.length > MAX_ROWS) messages.splice(0, messages.length - MAX_ROWS);
  const body = $("messages").tBodies[0];
  for (const rec of recs) {
    if (matches(rec)) body.prepend(messageRow(rec));
  }
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  scheduleSequence();
}

let seqTimer = null;
function scheduleSequence() {
  if (seqTimer === null) seqTimer = setTimeout(() => { seqTimer = null; renderSequence(); }, 250);
}

// -- the sequence view (Bustle-like) --------------------------------------------

function renderSequence() {
  const s = $("sequence");
  const shown = messages.filter(matches).slice(-SEQ_ARROWS);
  const cols = ["bus"];
  const label = { bus: "bus" };
  for (const p of peers) {
    if (p.state === "closed") continue;
    const key = "#" + p.id;
    cols.push(key);
    label[key] = key + " " + (p.command || "pid " + (p.pid ?? "?"));
  }
  for (const r of shown) {
    if (!cols.includes(r.from)) { cols.push(r.from); label[r.from] = r.from; }
  }
  const colW = 140, rowH = 22, top = 30, left = 170;
  const x = (key) => left + cols.indexOf(key) * colW + colW / 2;
  const height = top + rowH * (shown.length + 1);
  s.setAttribute("width", left + cols.length * colW);
  s.setAttribute("height", height);
  const parts = [];
  cols.forEach((c) => {
    parts.push(svg("text", { x: x(c), y: 14, "text-anchor": "middle", class: "col" }, label[c]));
    parts.push(svg("line", { x1: x(c), y1: 20, x2: x(c), y2: height, class: "life" }));
  });
  shown.forEach((r, i) => {
    const y = top + rowH * (i + 0.5);
    const g = svg("g", { class: "msg", "data-id": r.id });
    g.append(svg("text", { x: 4, y: y + 4 }, clock(r.wall) + " " + r.class));
    const from = x(r.from);
    const to = r.to.map((id) => "#" + id).filter((k) => cols.includes(k));
    if (to.length === 0) {
      g.append(svg("circle", { cx: from, cy: y, r: 3, class: "head" }));
    }
    for (const k of to) {
      const tx = x(k);
      const dir = tx >= from ? 1 : -1;
      g.append(svg("line", { x1: from, y1: y, x2: tx - dir * 6, y2: y, class: "arrow" }));
      g.append(svg("polygon", {
        points: `${tx},${y} ${tx - dir * 6},${y - 3} ${tx - dir * 6},${y + 3}`, class: "head",
      }));
    }
    const title = svg("title", {}, r.text.slice(0, 200));
    g.append(title);
    parts.push(g);
  });
  s.replaceChildren(...parts);
}

// -- snapshots: state, boot, classes, peers ----------------------------------------

function renderState(snap) {
  const st = $("state");
  st.textContent = snap.state ?? "—";
  st.className = "badge " + (snap.state ?? "");
  const w = snap.web;
  $("counters").textContent = `${w.seen} seen · ${w.shown} shown · ${w.skipped} over ${w.max_rate}/s not shown`;
  $("skipped").textContent = w.skipped ? `${w.skipped} not shown (over ${w.max_rate}/s; counted in the class table)` : "";
  const ol = $("timeline");
  const items = snap.boot.entries.map((e) => {
    const li = el("li");
    li.dataset.state = e.state;
    li.append(el("span", e.state, "name"), el("span", `+${(e.at * 1000).toFixed(1)} ms · ${clock(e.wall)}`, "when"));
    if (e.held_by.length) {
      li.append(el("span", `held by ${e.held_by.join(", ")} for ${(e.waited * 1000).toFixed(1)} ms`, "held"));
    }
    return li;
  });
  ol.replaceChildren(...items);
  const wt = snap.boot.waiting;
  $("waiting").textContent = wt ? `waiting for ${wt.state}: held by ${wt.held_by.join(", ")} for ${wt.for.toFixed(1)} s` : "";
  $("send-section").hidden = !w.allow_send;
}

function spark(values) {
  const s = svg("svg", { class: "spark", viewBox: "0 0 60 18", preserveAspectRatio: "none" });
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${i + 60 - values.length},${17 - (v / max) * 16}`).join(" ");
  s.append(svg("polyline", { points: pts || "0,17" }));
  return s;
}

function renderClasses(rows) {
  const body = $("classes").tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    tr.dataset.cls = r.class;
    const sp = el("td");
    sp.append(spark(r.spark));
    const pl = el("td");
    pl.append(el("pre", pretty(r), "payload"));
    tr.append(el("td", r.class), el("td", r.count, "num"), el("td", r.rate, "num"), sp,
      el("td", r.age.toFixed(1) + " s", "num"), pl);
    return tr;
  }));
  const sel = $("filter-class");
  for (const r of rows) {
    if (!knownClasses.has(r.class)) {
      knownClasses.add(r.class);
      const o = el("option", r.class);
      o.value = r.class;
      sel.append(o);
    }
  }
}

function renderPeers(list) {
  peers = list;
  const body = $("peers").tBodies[0];
  body.replaceChildren(...list.map((p) => {
    const tr = el("tr");
    tr.dataset.id = p.id;
    tr.append(el("td", p.id, "num"), el("td", p.pid ?? "?", "num"), el("td", p.uid ?? "?", "num"),
      el("td", p.command || p.streamtype), el("td", p.mask_names), el("td", p.queued, "num"),
      el("td", p.delivered, "num"), el("td", p.dropped, "num"), el("td", p.denials ?? "—", "num"),
      el("td", p.state, "reason"));
    if (p.state === "closed") tr.className = "closed";
    tr.lastChild.title = p.reason || "";
    return tr;
  }));
}

function renderSnapshot(snap) {
  renderState(snap);
  renderClasses(snap.classes);
  renderPeers(snap.peers);
}

// -- the event stream ------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/events");
  let batch = [];
  let flush = null;
  es.addEventListener("open", () => { $("link").textContent = "live"; $("link").className = "link up"; });
  es.addEventListener("error", () => { $("link").textContent = "reconnecting"; $("link").className = "link down"; });
  es.addEventListener("hello", (ev) => {
    const h = JSON.parse(ev.data);
    if (epoch !== null && h.epoch !== epoch) { messages = []; held = []; renderMessages(); }
    epoch = h.epoch;
    if (h.missed) $("held").textContent = `${h.missed} messages missed while disconnected`;
  });
  es.addEventListener("message", (ev) => {
    batch.push(JSON.parse(ev.data));
    if (flush === null) flush = requestAnimationFrame(() => { flush = null; const b = batch; batch = []; addMessages(b); });
  });
  es.addEventListener("snapshot", (ev) => renderSnapshot(JSON.parse(ev.data)));
  es.addEventListener("state", (ev) => renderState(JSON.parse(ev.data)));
}

// -- controls ------------------------------------------------------------------------

function setup() {
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("pause").classList.toggle("on", paused);
    if (!paused) {
      const h = held; held = [];
      $("held").textContent = "";
      messages.push(...h);
      if (messages.length > MAX_ROWS) messages.splice(0, messages.length - MAX_ROWS);
      renderMessages();
    }
  });
  $("filter-class").addEventListener("change", renderMessages);
  $("filter-text").addEventListener("input", renderMessages);
  $("export").addEventListener("click", () => {
    const lines = messages.filter(matches).map((r) => JSON.stringify(r) + "\n");
    const url = URL.createObjectURL(new Blob(lines, { type: "application/x-ndjson" }));
    const a = el("a");
    a.href = url;
    a.download = "smd-messages.jsonl";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  $("send").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/send", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ class: $("send-class").value, payload: $("send-payload").value }),
    });
    $("send-result").textContent = r.ok ? "sent" : (await r.text());
  });
  connect();
}

document.addEventListener("DOMContentLoaded", setup);
