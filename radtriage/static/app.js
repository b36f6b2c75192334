// The worklist page: plain JS, no build step, no CDN. Every value from the server goes in
// through textContent (never innerHTML), so nothing in a study can inject markup.
"use strict";

const TOKEN_KEY = "radtriage.token";
const SHAPES = { STAT: "\u25C6", URGENT: "\u25B2", ROUTINE: "\u25CB" }; // ◆ ▲ ○: priority without colour
const state = { me: null, items: [], cursor: null, selected: 0, detailUid: null, lastEventId: null, stream: null };

function $(id) { return document.getElementById(id); }
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// Sign-in: a pasted personal token in sessionStorage, or none when a reverse proxy adds the bearer.
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) { showSignIn("Your token was not accepted; sign in again."); throw new Error("signed out"); }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { const body = await response.json(); if (body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showSignIn(message) {
  stopStream();
  clearInterval(deliveriesTimer);
  $("app").hidden = true; $("whoami").hidden = true; $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("token").focus();
}

async function start() {
  try {
    const response = await fetch("/api/me", { headers: authHeaders() });
    if (response.status === 401) { showSignIn(""); return; }
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    state.me = await response.json();
  } catch (err) { showSignIn("Cannot reach the server: " + err.message); return; }
  $("sign-in").hidden = true; $("app").hidden = false; $("whoami").hidden = false;
  $("user-name").textContent = state.me.name;
  $("user-role").textContent = state.me.role;
  await refresh();
  startStream();
  startDeliveries();
}

// ---- worklist ---------------------------------------------------------------------------------
function query(cursor, limit) {
  const params = new URLSearchParams();
  const form = new FormData($("filters"));
  for (const [k, v] of form.entries()) if (v) params.set(k, v);
  if (cursor) params.set("cursor", cursor);
  params.set("limit", String(limit));
  return "/api/worklist?" + params.toString();
}

async function refresh() {
  // Reload as many items as are shown, so a live update never shortens the list.
  const limit = Math.min(200, Math.max(50, state.items.length));
  try {
    const page = await (await api(query(null, limit))).json();
    state.items = page.items; state.cursor = page.next_cursor;
    $("error").textContent = "";
    render();
  } catch (err) { if (err.message !== "signed out") $("error").textContent = err.message; }
}

async function loadMore() {
  if (!state.cursor) return;
  try {
    const page = await (await api(query(state.cursor, 50))).json();
    state.items = state.items.concat(page.items); state.cursor = page.next_cursor;
    render();
  } catch (err) { $("error").textContent = err.message; }
}

function badge(priority) {
  return el("span", { class: "badge " + priority }, el("span", { class: "shape", "aria-hidden": "true", text: SHAPES[priority] || "" }), priority);
}

function waited(receivedAt) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(receivedAt)) / 1000));
  const m = Math.floor(seconds / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (d > 0) return d + " d " + (h % 24) + " h";
  if (h > 0) return h + " h " + String(m % 60).padStart(2, "0") + " min";
  if (m > 0) return m + " min";
  return seconds + " s";
}

function renderRow(item, index) {
  const row = $("row-template").content.firstElementChild.cloneNode(true);
  row.dataset.uid = item.study_instance_uid;
  row.dataset.index = String(index);
  const cell = (name) => row.querySelector("." + name);
  cell("prio").append(badge(item.priority));
  if (item.escalated_from) cell("prio").append(el("span", { class: "esc", text: "\u2191 waited, was " + item.escalated_from }));
  const wait = cell("wait");
  wait.dataset.received = item.received_at; wait.textContent = waited(item.received_at);
  wait.title = "received " + new Date(item.received_at).toLocaleString();
  cell("acc").textContent = item.accession_number || "\u2014";
  const orders = cell("orders");
  orders.append("ordered " + item.ordered_priority, el("br"));
  const ai = item.ai_priority || "\u2014";
  orders.append(el("span", { class: item.ai_priority && item.ai_priority !== item.ordered_priority ? "raised" : "", text: "AI " + ai }));
  cell("urg").textContent = item.urgency_score == null ? "\u2014" : item.urgency_score.toFixed(0);
  for (const f of item.findings) cell("chips").append(el("span", { class: "chip" }, f.name + " ", el("b", { text: f.score.toFixed(2) })));
  if (item.draft_preview) {
    cell("draft").append(el("span", { class: "unverified", text: "UNVERIFIED AI DRAFT", title: item.draft_preview.disclaimer }), el("br"),
      item.draft_preview.text);
  } else if (item.draft_status) cell("draft").textContent = "draft " + item.draft_status;
  const reader = cell("reader");
  if (item.read_by) reader.textContent = "read by " + item.read_by;
  else if (item.claimed_by) { reader.textContent = item.claimed_by === state.me.name ? "you" : item.claimed_by; reader.classList.toggle("mine", item.claimed_by === state.me.name); }
  else reader.textContent = "\u2014";
  cell("status").textContent = item.read_at ? "read" : item.status;
  row.classList.toggle("is-read", Boolean(item.read_at));
  const mine = item.claimed_by === state.me.name;
  row.querySelector('[data-action="claim"]').disabled = Boolean(item.claimed_by || item.read_at);
  row.querySelector('[data-action="release"]').disabled = !item.claimed_by || item.read_at || !(mine || state.me.role === "admin");
  row.querySelector('[data-action="read"]').disabled = Boolean(item.read_at) || Boolean(item.claimed_by && !mine);
  return row;
}

function render() {
  const uid = state.items[state.selected] && state.items[state.selected].study_instance_uid;
  const rows = state.items.map(renderRow);
  $("rows").replaceChildren(...rows);
  const keep = state.items.findIndex((i) => i.study_instance_uid === uid);
  select(keep >= 0 ? keep : Math.min(state.selected, state.items.length - 1), false);
  $("more").hidden = !state.cursor;
  $("count").textContent = state.items.length + (state.cursor ? "+" : "") + " studies";
}

function select(index, scroll = true) {
  state.selected = Math.max(0, index);
  for (const row of $("rows").children) row.classList.toggle("selected", Number(row.dataset.index) === state.selected);
  const row = $("rows").children[state.selected];
  if (row && scroll) { row.scrollIntoView({ block: "nearest" }); row.focus({ preventScroll: true }); }
}

function tick() { for (const cell of document.querySelectorAll("td.wait")) cell.textContent = waited(cell.dataset.received); }

// ---- actions ----------------------------------------------------------------------------------
async function act(action, uid) {
  if (!uid) return;
  try {
    await api("/api/studies/" + encodeURIComponent(uid) + "/" + action, { method: "POST" });
    $("error").textContent = "";
  } catch (err) { if (err.message !== "signed out") $("error").textContent = err.message; }
  await refresh();
  if (state.detailUid === uid) openDetail(uid);
}

// ---- detail -----------------------------------------------------------------------------------
function dl(pairs) {
  const list = el("dl");
  for (const [k, v] of pairs) if (v !== null && v !== undefined && v !== "") list.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  return list;
}

async function openDetail(uid) {
  let d;
  try { d = await (await api("/api/studies/" + encodeURIComponent(uid))).json(); } catch (err) { $("error").textContent = err.message; return; }
  state.detailUid = uid;
  const pane = $("detail");
  const close = el("button", { type: "button", text: "Close (Esc)" });
  close.addEventListener("click", closeDetail);
  const s = d.study;
  const parts = [el("h2", {}, badge(s.priority), " ", s.accession_number || "no accession"), close];
  if (d.header) parts.push(dl([["Patient", d.header.patient_name], ["Patient ID", d.header.patient_id], ["Born", d.header.patient_birth_date],
    ["Sex", d.header.patient_sex], ["Study date", d.header.study_date], ["Description", d.header.study_description],
    ["Referrer", d.header.referring_physician]]));
  if (s.viewer_url) parts.push(el("p", {}, el("a", { href: s.viewer_url, target: "_blank", rel: "noopener", text: "Open in viewer \u2197" })));
  const img = el("img", { alt: "Frontal image preview" });
  parts.push(img);
  api("/api/studies/" + encodeURIComponent(uid) + "/preview.png").then((r) => r.blob())
    .then((blob) => { img.src = URL.createObjectURL(blob); }).catch(() => { img.alt = "No preview"; img.hidden = true; });
  parts.push(el("h3", { text: "Priority" }), dl([["Reading as", s.priority + (s.escalated_from ? " (escalated from " + s.escalated_from + ")" : "")],
    ["Ordered", s.ordered_priority], ["AI", s.ai_priority], ["Urgency", s.urgency_score == null ? null : s.urgency_score.toFixed(1)],
    ["Status", s.read_at ? "read by " + s.read_by : s.status], ["Claimed by", s.claimed_by]]));
  if (d.reasons.length) parts.push(el("h3", { text: "Reasons" }), el("ul", {}, ...d.reasons.map((r) => el("li", { text: r }))));
  if (d.findings.length) {
    const body = el("tbody");
    for (const f of d.findings) body.append(el("tr", {}, el("td", { text: f.name }), el("td", { text: f.score.toFixed(3) }),
      el("td", { text: f.threshold == null ? "\u2014" : f.threshold.toFixed(3) }), el("td", { text: f.validation || "not validated" })));
    parts.push(el("h3", { text: "Findings (AI scores)" }), el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "finding" }),
      el("th", { text: "score" }), el("th", { text: "threshold" }), el("th", { text: "validation" }))), body));
  }
  if (d.draft) parts.push(el("h3", { text: "Draft" }), el("p", { class: "unverified", text: d.draft.disclaimer }),
    el("pre", { text: "Findings: " + d.draft.findings }), el("pre", { text: "Impression: " + d.draft.impression }));
  parts.push(el("h3", { text: "Images" }), el("ul", {}, ...d.instances.map((i) => el("li", { text: [i.view || "view?", i.modality, i.view_position].filter(Boolean).join(" \u00b7 ") }))));
  parts.push(el("h3", { text: "History" }), el("ul", {}, ...d.history.map((h) =>
    el("li", { text: new Date(h.at).toLocaleTimeString() + " \u2014 " + h.stage + (h.detail ? ": " + h.detail : "") }))));
  pane.replaceChildren(...parts);
  pane.hidden = false;
}

function closeDetail() { state.detailUid = null; $("detail").hidden = true; }

// ---- deliveries (admins only) -----------------------------------------------------------------
// Each destination's state and the dead letters an admin may send again or drop (both audited).
const DELIVERIES_EVERY_MS = 15000;
let deliveriesTimer = null;

function isAdmin() { return Boolean(state.me && state.me.role === "admin"); }

function ago(iso) { return iso ? waited(iso) : "\u2014"; }

async function refreshDeliveries() {
  if (!isAdmin()) return;
  try {
    renderDeliveries(await (await api("/api/deliveries")).json());
    $("deliveries-error").textContent = "";
  } catch (err) { if (err.message !== "signed out") $("deliveries-error").textContent = err.message; }
}

function renderDeliveries(d) {
  $("destinations").replaceChildren(...d.destinations.map((s) => el("tr", {},
    el("td", { text: s.destination + (s.kind ? " (" + s.kind + ")" : "") + (s.active ? "" : " \u2014 no longer configured"),
      title: "receives: " + (s.receives.join(", ") || "nothing") }),
    el("td", { class: s.state, text: s.state }), el("td", { text: String(s.backlog) }),
    el("td", { text: ago(s.oldest_pending_at), title: s.oldest_pending_at || "" }), el("td", { text: String(s.sent) }),
    el("td", { text: String(s.dead) }), el("td", { text: String(s.dropped) }),
    el("td", { text: s.last_error ? s.last_error + " (" + ago(s.last_error_at) + " ago)" : "\u2014" }))));
  $("dead-letters").replaceChildren(...d.dead_letters.map((letter) => {
    const retry = el("button", { type: "button", "data-delivery": String(letter.id), "data-verb": "retry", text: "Retry" });
    const drop = el("button", { type: "button", "data-delivery": String(letter.id), "data-verb": "drop", text: "Drop" });
    return el("tr", {}, el("td", { text: String(letter.id) }), el("td", { text: letter.destination }), el("td", { text: letter.content }),
      el("td", { text: "#" + letter.study_id + (letter.accession_number ? " \u00b7 " + letter.accession_number : "") }),
      el("td", { text: String(letter.attempts) }), el("td", { text: letter.last_error || "\u2014" }),
      el("td", { text: ago(letter.dead_since), title: letter.dead_since || "" }), el("td", { class: "actions" }, retry, " ", drop));
  }));
}

async function actOnDelivery(id, verb) {
  if (verb === "drop" && !window.confirm("Drop delivery " + id + "? It will never be sent.")) return;
  try {
    await api("/api/deliveries/" + encodeURIComponent(id) + "/" + verb, { method: "POST" });
    $("deliveries-error").textContent = "";
  } catch (err) { if (err.message !== "signed out") $("deliveries-error").textContent = err.message; }
  await refreshDeliveries();
}

function startDeliveries() {
  clearInterval(deliveriesTimer);
  $("deliveries").hidden = !isAdmin();
  if (!isAdmin()) return;
  refreshDeliveries();
  deliveriesTimer = setInterval(refreshDeliveries, DELIVERIES_EVERY_MS);
}

// ---- live updates -----------------------------------------------------------------------------
// fetch streaming, not EventSource: EventSource cannot send the Authorization header, and a
// token in the URL would land in proxy logs and browser history. We resume with Last-Event-ID.
let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(async () => { await refresh(); if (state.detailUid) openDetail(state.detailUid); }, 250);
}

function stopStream() { if (state.stream) { state.stream.abort(); state.stream = null; } $("live").classList.remove("on"); }

async function startStream() {
  stopStream();
  const controller = new AbortController();
  state.stream = controller;
  const headers = { ...authHeaders(), Accept: "text/event-stream" };
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  try {
    const response = await fetch("/api/events", { headers, signal: controller.signal });
    if (response.status === 401) { showSignIn("Your token was not accepted; sign in again."); return; }
    if (!response.ok || !response.body) throw new Error("event stream " + response.status);
    $("live").classList.add("on");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) { handleEvent(buffer.slice(0, end)); buffer = buffer.slice(end + 2); }
    }
  } catch (err) { if (controller.signal.aborted) return; }
  $("live").classList.remove("on");
  if (state.stream === controller) setTimeout(startStream, 2000); // the server went away: try again
}

function handleEvent(block) {
  let data = null;
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) state.lastEventId = line.slice(3).trim();
    else if (line.startsWith("data:")) data = line.slice(5).trim();
  }
  if (data !== null) scheduleRefresh(); // comments (keep-alives) carry no data
}

// ---- keyboard ---------------------------------------------------------------------------------
function onKey(event) {
  if ($("app").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (typing) { if (event.key === "Escape") document.activeElement.blur(); return; }
  const item = state.items[state.selected];
  const uid = item && item.study_instance_uid;
  const keys = {
    j: () => select(state.selected + 1 < state.items.length ? state.selected + 1 : state.selected),
    ArrowDown: () => select(state.selected + 1 < state.items.length ? state.selected + 1 : state.selected),
    k: () => select(state.selected - 1), ArrowUp: () => select(state.selected - 1),
    Enter: () => uid && openDetail(uid), Escape: closeDetail,
    c: () => act("claim", uid), r: () => act("release", uid), m: () => act("read", uid),
    "/": () => $("filters").elements.q.focus(),
  };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); state.me = null; showSignIn(""); });
  $("filters").addEventListener("change", () => { state.items = []; refresh(); });
  $("filters").addEventListener("input", (event) => { if (event.target.name === "q") { state.items = []; scheduleRefresh(); } });
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("more").addEventListener("click", loadMore);
  $("deliveries-refresh").addEventListener("click", refreshDeliveries);
  $("dead-letters").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-delivery]");
    if (button) actOnDelivery(button.dataset.delivery, button.dataset.verb);
  });
  $("rows").addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (!row) return;
    select(Number(row.dataset.index));
    const button = event.target.closest("button[data-action]");
    if (button) act(button.dataset.action, row.dataset.uid); else openDetail(row.dataset.uid);
  });
  document.addEventListener("keydown", onKey);
  setInterval(tick, 1000);
  start();
});
