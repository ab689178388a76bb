// WasmWiz console: a page over the public API (api.js), nothing else. No inline scripts, no
// HTML strings: the DOM is built with createElement and textContent (the page's CSP requires
// Trusted Types for any HTML sink, so a string can never become markup).
import { API, ApiError } from "./api.js";

const KEY_STORE = "wasmwiz.key"; // sessionStorage: gone when the tab closes
const SCOPES = ["execute", "modules:read", "modules:write", "keys:manage", "usage:read"];

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c);
  return e;
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}
const ms = (v) => (v === undefined || v === null ? "–" : `${Number(v).toFixed(v < 10 ? 2 : 1)} ms`);
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const statusEl = (s) => el("span", { class: `status status-${s}` }, s);

function message(err) {
  if (err instanceof ApiError) {
    let m = `${err.status}${err.code ? " " + err.code : ""}: ${err.message}`;
    if (err.retryAfter) m += ` (retry in ${err.retryAfter}s)`;
    return m;
  }
  return String(err && err.message ? err.message : err);
}

let api = null;

// ---- sign in -------------------------------------------------------------------------------

async function signIn(key) {
  const candidate = new API(key);
  // Any authenticated read tells a valid key from a wrong one; a key without modules:read
  // (403) is still a key.
  try {
    await candidate.listExecutions({ limit: 1 });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) throw err;
  }
  api = candidate;
  sessionStorage.setItem(KEY_STORE, key);
  $("who-key").textContent = `${key.slice(0, 11)}…`;
  $("who").hidden = false;
  $("signin-view").hidden = true;
  $("app").hidden = false;
  show("run");
}

function signOut() {
  stopEvents();
  sessionStorage.removeItem(KEY_STORE);
  api = null;
  $("who").hidden = true;
  $("app").hidden = true;
  $("signin-view").hidden = false;
  $("key").value = "";
}

// ---- tabs ----------------------------------------------------------------------------------

const loaders = {
  run: loadModules,
  history: () => loadHistory(true),
  keys: loadKeys,
  usage: loadUsage,
  events: () => {},
};

function show(view) {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.view === view));
  }
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${view}`;
  loaders[view]();
}

// ---- modules and runs ----------------------------------------------------------------------

async function loadModules(selectID) {
  const sel = $("module");
  try {
    const list = await api.listModules();
    const mods = (list.modules || []).slice().sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    sel.replaceChildren(...mods.map((m) => el("option", { value: m.id }, `${m.name || "(unnamed)"} — ${m.id.slice(0, 19)}… (${bytes(m.size)})`)));
    if (selectID) sel.value = selectID;
    if (!mods.length) sel.replaceChildren(el("option", { value: "" }, "no modules yet: upload one"));
    describeModule(mods);
  } catch (err) {
    $("upload-status").textContent = message(err);
  }
}

function describeModule(mods) {
  const m = (mods || []).find((x) => x.id === $("module").value);
  $("module-info").textContent = m ? `imports ${(m.imports || []).length}, exports ${(m.exports || []).join(", ") || "none"}; uploaded ${when(m.created_at)}` : "";
}

async function upload(file) {
  const status = $("upload-status");
  if (!file) return;
  status.textContent = `Uploading ${file.name} (${bytes(file.size)}) and compiling…`;
  try {
    const buf = await file.arrayBuffer();
    const m = await api.uploadModule(file.name.replace(/\.wasm$/, ""), buf);
    status.textContent = `Uploaded ${m.name}: ${m.id}`;
    await loadModules(m.id);
  } catch (err) {
    status.textContent = `Upload failed: ${message(err)}`;
  }
}

function lines(text) {
  return text.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l !== "");
}

async function run(ev) {
  ev.preventDefault();
  const module = $("module").value;
  if (!module) {
    $("upload-status").textContent = "Upload a module first.";
    return;
  }
  const req = { module_id: module };
  const stdin = $("stdin").value;
  if (stdin) req.stdin = stdin;
  const args = lines($("args").value);
  if (args.length) req.args = args;
  const env = {};
  for (const l of lines($("env").value)) {
    const i = l.indexOf("=");
    if (i > 0) env[l.slice(0, i)] = l.slice(i + 1);
  }
  if (Object.keys(env).length) req.env = env;
  const btn = $("run");
  btn.disabled = true;
  try {
    let ex = await api.execute(req);
    showResult(ex);
    // A 202 (the wait ran out) goes on in the background: follow it.
    for (let wait = 250; ex.status === "queued" || ex.status === "running"; wait = Math.min(wait * 2, 2000)) {
      await new Promise((r) => setTimeout(r, wait));
      ex = await api.getExecution(ex.id);
      showResult(ex);
    }
  } catch (err) {
    showResult(null, err);
  } finally {
    btn.disabled = false;
  }
}

function output(text, encoding) {
  return encoding === "base64" ? `(binary, base64) ${text}` : text || "";
}

function showResult(ex, err) {
  $("result").hidden = false;
  if (err) {
    $("result-id").textContent = "";
    for (const id of ["result-status", "result-exit", "result-duration", "result-memory", "result-stdout", "result-stderr"]) $(id).textContent = "";
    $("result-error").textContent = message(err);
    return;
  }
  $("result-id").textContent = ex.id;
  $("result-status").replaceChildren(statusEl(ex.status));
  $("result-exit").textContent = ex.exit_code === undefined ? "–" : String(ex.exit_code);
  $("result-duration").textContent = ms(ex.duration_ms);
  $("result-memory").textContent = bytes(ex.memory_peak_bytes);
  $("result-error").textContent = ex.error || "";
  $("result-stdout").textContent = output(ex.stdout, ex.stdout_encoding) + (ex.stdout_truncated ? "\n[cut at the tier's limit]" : "");
  $("result-stderr").textContent = output(ex.stderr, ex.stderr_encoding) + (ex.stderr_truncated ? "\n[cut at the tier's limit]" : "");
}

// ---- history -------------------------------------------------------------------------------

let historyCursor = "";

async function loadHistory(fresh) {
  const body = document.querySelector("#history tbody");
  if (fresh) {
    historyCursor = "";
    body.replaceChildren();
    $("history-detail").hidden = true;
  }
  try {
    const page = await api.listExecutions({ limit: 20, status: $("history-status").value, cursor: historyCursor });
    for (const e of page.executions) {
      body.append(el("tr", { dataset: { id: e.id }, onclick: () => detail(e.id) },
        el("td", { class: "mono" }, e.id),
        el("td", {}, statusEl(e.status)),
        el("td", {}, e.exit_code === undefined ? "–" : String(e.exit_code)),
        el("td", {}, ms(e.duration_ms)),
        el("td", {}, bytes(e.memory_peak_bytes)),
        el("td", { title: e.module_id }, e.module_name || e.module_id.slice(0, 19)),
        el("td", {}, when(e.created_at))));
    }
    historyCursor = page.next_cursor || "";
    $("history-more").hidden = !historyCursor;
    $("history-empty").hidden = body.children.length > 0;
  } catch (err) {
    $("history-empty").hidden = false;
    $("history-empty").textContent = message(err);
  }
}

async function detail(id) {
  try {
    const ex = await api.getExecution(id);
    $("detail-id").textContent = id;
    $("detail-json").textContent = JSON.stringify(ex, null, 2);
    $("history-detail").hidden = false;
  } catch (err) {
    $("detail-json").textContent = message(err);
  }
}

// ---- keys ----------------------------------------------------------------------------------

async function loadKeys() {
  const body = document.querySelector("#keys tbody");
  $("keys-error").textContent = "";
  try {
    const list = await api.listKeys();
    body.replaceChildren(...(list.keys || []).map((k) => el("tr", { dataset: { id: k.id } },
      el("td", { class: "mono" }, k.id),
      el("td", {}, k.name || ""),
      el("td", { class: "mono" }, `${k.prefix}…`),
      el("td", {}, (k.scopes || []).join(" ") || "all"),
      el("td", {}, when(k.created_at)),
      el("td", {}, k.replaced_by ? `${when(k.expires_at)} (rotated)` : when(k.expires_at)),
      el("td", {}, when(k.last_used_at)),
      el("td", {},
        el("button", { type: "button", class: "rotate", onclick: () => rotate(k.id) }, "Rotate"), " ",
        el("button", { type: "button", class: "revoke", onclick: () => revoke(k.id, k.name) }, "Revoke")))));
  } catch (err) {
    body.replaceChildren();
    $("keys-error").textContent = err.status === 403 ? "This key cannot manage keys (it needs the keys:manage scope)." : message(err);
  }
}

function showNewKey(created) {
  $("new-key").textContent = created.key;
  $("new-key-box").hidden = false;
}

async function createKey(ev) {
  ev.preventDefault();
  const req = {};
  const name = $("key-name").value.trim();
  if (name) req.name = name;
  const scopes = [...document.querySelectorAll("#key-scopes input:checked")].map((i) => i.value);
  if (scopes.length) req.scopes = scopes;
  $("keys-error").textContent = "";
  try {
    showNewKey(await api.createKey(req));
    $("key-name").value = "";
    await loadKeys();
  } catch (err) {
    $("keys-error").textContent = message(err);
  }
}

async function rotate(id) {
  if (!confirm(`Rotate ${id}? The old key keeps working for an hour, for work in flight.`)) return;
  try {
    showNewKey(await api.rotateKey(id));
    await loadKeys();
  } catch (err) {
    $("keys-error").textContent = message(err);
  }
}

async function revoke(id, name) {
  if (!confirm(`Revoke ${name || id}? It stops working at once, everywhere.`)) return;
  try {
    await api.revokeKey(id);
    await loadKeys();
  } catch (err) {
    $("keys-error").textContent = message(err);
  }
}

// ---- usage ---------------------------------------------------------------------------------

const day = (d) => d.toISOString().slice(0, 10);

async function loadUsage() {
  const chart = $("usage-chart");
  $("usage-error").textContent = "";
  const to = new Date(Date.now() + 86400000);
  const from = new Date(to.getTime() - 30 * 86400000);
  let u;
  try {
    u = await api.usage(day(from), day(to));
  } catch (err) {
    chart.replaceChildren();
    $("usage-error").textContent = err.status === 403 ? "This key cannot read usage (it needs the usage:read scope)." : message(err);
    return;
  }
  const byDay = new Map((u.rows || []).map((r) => [r.key.slice(0, 10), r]));
  const days = [];
  for (let t = from.getTime(); t < to.getTime(); t += 86400000) days.push(day(new Date(t)));
  const max = Math.max(1, ...days.map((d) => (byDay.get(d) || {}).executions || 0));
  const W = 900, H = 200, left = 40, bottom = 20, bw = (W - left) / days.length;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H + bottom}`, role: "img", "aria-label": "executions per day" });
  g.append(svg("line", { x1: left, y1: H, x2: W, y2: H }));
  g.append(svg("text", { x: 0, y: 12 }, document.createTextNode(String(max))));
  g.append(svg("text", { x: 0, y: H }, document.createTextNode("0")));
  days.forEach((d, i) => {
    const r = byDay.get(d) || { executions: 0, failed: 0, timed_out: 0 };
    const h = (r.executions / max) * (H - 10);
    const bad = ((r.failed + r.timed_out) / max) * (H - 10);
    const x = left + i * bw + 2;
    const bar = svg("rect", { class: "bar", x, y: H - h, width: Math.max(1, bw - 4), height: h, "data-day": d, "data-executions": r.executions });
    bar.append(svg("title", {}, document.createTextNode(`${d}: ${r.executions} executions, ${r.failed} failed, ${r.timed_out} timed out`)));
    g.append(bar);
    if (bad > 0) g.append(svg("rect", { class: "bar-failed", x, y: H - bad, width: Math.max(1, bw - 4), height: bad }));
    if ((i % 7 === 0 && i < days.length - 4) || i === days.length - 1) g.append(svg("text", { x, y: H + 14 }, document.createTextNode(d.slice(5))));
  });
  chart.replaceChildren(g);
  const t = u.total || {};
  $("usage-totals").replaceChildren(...[
    ["executions", t.executions], ["succeeded", t.succeeded], ["failed", t.failed], ["timed out", t.timed_out],
    ["wall time", `${((t.wall_ms || 0) / 1000).toFixed(1)} s`], ["bytes in / out", `${bytes(t.bytes_in)} / ${bytes(t.bytes_out)}`],
  ].map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, String(v ?? 0)))));
}

// ---- live events ---------------------------------------------------------------------------

let events = null; // AbortController of the open stream

function stopEvents() {
  if (events) events.abort();
  events = null;
  $("events-toggle").textContent = "Start";
  $("events-state").textContent = "";
}

function describe(e) {
  if (e.execution) return `${e.execution.execution_id} ${e.execution.status} exit ${e.execution.exit_code}, ${ms(e.execution.wall_ms)}, ${bytes(e.execution.memory_peak_bytes)}`;
  if (e.module) return `${e.module.name || ""} ${e.module.module_id || e.module.id || ""}`;
  if (e.key) return `${e.key.key_id || e.key.id || ""}`;
  if (e.rate_limit) return e.rate_limit.reason || "";
  return "";
}

async function startEvents() {
  const ctl = new AbortController();
  events = ctl;
  $("events-toggle").textContent = "Stop";
  $("events-state").textContent = "connecting…";
  $("events-error").textContent = "";
  const list = $("events");
  try {
    await api.events(ctl.signal, (ev) => {
      let e = {};
      try { e = JSON.parse(ev.data); } catch { e = {}; }
      list.prepend(el("li", { dataset: { type: ev.type } },
        el("span", {}, when(e.time)), el("span", { class: "mono" }, ev.type), el("span", { class: "mono" }, describe(e))));
      while (list.children.length > 200) list.lastChild.remove();
    }, () => { $("events-state").textContent = "live"; });
    if (events === ctl) $("events-state").textContent = "the server ended the stream";
  } catch (err) {
    if (ctl.signal.aborted) return;
    $("events-error").textContent = err.status === 403 ? "This key cannot read events (it needs the usage:read scope)." : message(err);
  }
  if (events === ctl) {
    events = null;
    $("events-toggle").textContent = "Start";
  }
}

// ---- wiring --------------------------------------------------------------------------------

function wire() {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("key").value.trim());
    } catch (err) {
      $("signin-error").textContent = err.status === 401 ? "That key was not accepted." : message(err);
    }
  });
  $("signout").addEventListener("click", signOut);
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));

  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    upload(ev.dataTransfer && ev.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
  $("file").addEventListener("change", () => { upload($("file").files[0]); $("file").value = ""; });
  $("module").addEventListener("change", () => loadModules($("module").value));
  $("run-form").addEventListener("submit", run);

  $("history-status").addEventListener("change", () => loadHistory(true));
  $("history-refresh").addEventListener("click", () => loadHistory(true));
  $("history-more").addEventListener("click", () => loadHistory(false));

  $("key-scopes").append(...SCOPES.map((s) => el("label", {}, el("input", { type: "checkbox", value: s }), s)));
  $("key-form").addEventListener("submit", createKey);
  $("new-key-copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("new-key").textContent));
  $("new-key-hide").addEventListener("click", () => { $("new-key").textContent = ""; $("new-key-box").hidden = true; });

  $("events-toggle").addEventListener("click", () => (events ? stopEvents() : startEvents()));

  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved).catch(() => signOut());
}

wire();
