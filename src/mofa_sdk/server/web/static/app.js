// mofa chat: the page of `mofa serve`. One module, no dependency, no build step. It speaks the native API
// (docs/service.md) with the key the user signs in with, kept in sessionStorage, never in a URL. Every text
// from the server reaches the DOM through textContent, never innerHTML: a message is shown, never run.

const KEY = "mofa.key";
const PENDING = "mofa.pending"; // session id -> run id of a reply this tab started (before its row exists)
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY),
  sessions: [], nextOffset: 0,
  session: null, // the open session
  run: null, // the reply followed: {id, sessionId, lastId, text, node, abort}
  sending: false,
};

// -- the API ----------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function failure(resp) {
  let code = "http_" + resp.status, message = `the server answered ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error) { code = body.error.code || code; message = body.error.message || message; }
  } catch { /* not JSON: keep the status */ }
  if (resp.status === 401) signOut("Your key was refused: " + message);
  return new ApiError(resp.status, code, message);
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + state.key, ...(options.headers || {}) };
  if (options.json !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.json); }
  let resp;
  try {
    resp = await fetch(path, { ...options, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "the service cannot be reached (" + err.message + ")");
  }
  if (!resp.ok) throw await failure(resp);
  return resp;
}
const getJSON = async (path) => (await api(path)).json();

// Server-sent events from a fetch body (EventSource cannot POST nor send a header): yields {id, event, data}.
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const ev = { id: null, event: "message", data: "" };
        for (const line of frame.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const name = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (name === "id") ev.id = Number(val);
          else if (name === "event") ev.event = val;
          else if (name === "data") ev.data += (ev.data ? "\n" : "") + val;
        }
        if (ev.data) { ev.data = JSON.parse(ev.data); yield ev; }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// -- safe Markdown: a small subset, built as DOM nodes --------------------------------------------------
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
};

function inline(text) {
  const out = document.createDocumentFragment();
  const re = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|(\[[^\]\n]+\]\((https?:\/\/[^\s)]+)\))/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    out.append(text.slice(last, m.index));
    const t = m[0];
    if (m[1]) out.append(el("code", { text: t.slice(1, -1) }));
    else if (m[2]) out.append(el("strong", { text: t.slice(2, -2) }));
    else if (m[3]) out.append(el("em", { text: t.slice(1, -1) }));
    else out.append(el("a", { href: m[5], rel: "noopener noreferrer", target: "_blank", text: t.slice(1, t.indexOf("](")) }));
    last = m.index + t.length;
  }
  out.append(text.slice(last));
  return out;
}

function markdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.split("\n");
  let para = [], list = null;
  const flush = () => {
    if (para.length) { root.append(el("p", {}, inline(para.join("\n")))); para = []; }
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*```(\S*)/);
    if (fence) {
      flush();
      const code = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
      root.append(el("pre", {}, el("code", { text: code.join("\n") })));
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (heading) { flush(); root.append(el("h" + (heading[1].length + 2), {}, inline(heading[2]))); }
    else if (item) {
      if (para.length) { root.append(el("p", {}, inline(para.join("\n")))); para = []; }
      const tag = /\d/.test(item[1]) ? "ol" : "ul";
      if (!list || list.tagName.toLowerCase() !== tag) { list = el(tag); root.append(list); }
      list.append(el("li", {}, inline(item[2])));
    } else if (!line.trim()) flush();
    else { list = null; para.push(line); }
  }
  flush();
  return root;
}

// -- time and numbers -------------------------------------------------------------------------------------
function ago(iso) {
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 60) return "just now";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return new Date(iso).toLocaleDateString();
}
const ms = (v) => (v == null ? "–" : Math.round(v) + " ms");
const num = (v) => Number(v || 0).toLocaleString();

// -- sign in ----------------------------------------------------------------------------------------------
function signOut(message) {
  if (state.run) state.run.abort.abort();
  state.key = null;
  sessionStorage.removeItem(KEY);
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin-key").focus();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("signin-key").value.trim();
  state.key = key;
  try {
    await getJSON("/v1/sessions?limit=1");
  } catch (err) {
    if (err.status !== 401) $("signin-error").textContent = err.message;
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("signin-key").value = "";
  start();
});
$("signout").addEventListener("click", () => signOut(""));

// -- sessions ---------------------------------------------------------------------------------------------
function sessionItem(s) {
  const title = s.title || "Untitled session";
  const count = s.message_count == null ? "" : ` · ${s.message_count} message${s.message_count === 1 ? "" : "s"}`;
  const link = el("a", { href: "#/sessions/" + s.id, "data-id": s.id },
    el("span", { class: "session-title", text: title }),
    el("span", { class: "session-meta", text: ago(s.update_time) + count }));
  if (state.session && state.session.id === s.id) link.setAttribute("aria-current", "page");
  return el("li", {}, link);
}

async function loadSessions(more = false) {
  const offset = more ? state.nextOffset : 0;
  try {
    const page = await getJSON(`/v1/sessions?offset=${offset}&limit=30`);
    state.sessions = more ? state.sessions.concat(page.data) : page.data;
    state.nextOffset = page.next_offset;
    $("sessions-error").textContent = "";
  } catch (err) {
    $("sessions-error").textContent = "Could not list the sessions: " + err.message;
    return;
  }
  $("session-list").replaceChildren(...state.sessions.map(sessionItem));
  $("more-sessions").hidden = state.nextOffset == null;
}
$("more-sessions").addEventListener("click", () => loadSessions(true));

$("new-session").addEventListener("click", async () => {
  try {
    const s = await (await api("/v1/sessions", { method: "POST", json: {} })).json();
    location.hash = "#/sessions/" + s.id;
    await loadSessions();
    $("composer-input").focus();
  } catch (err) {
    $("sessions-error").textContent = "Could not create a session: " + err.message;
  }
});

$("rename-session").addEventListener("click", async () => {
  const s = state.session;
  const title = window.prompt("New title (empty clears it)", s.title || "");
  if (title === null) return;
  try {
    state.session = await (await api("/v1/sessions/" + s.id, { method: "PATCH", json: { title: title.trim() || null } })).json();
    $("chat-title").textContent = state.session.title || "Untitled session";
    await loadSessions();
  } catch (err) {
    $("chat-error").textContent = "Could not rename the session: " + err.message;
  }
});

$("delete-session").addEventListener("click", async () => {
  const s = state.session;
  if (!window.confirm(`Delete "${s.title || "Untitled session"}" and all its messages? This cannot be undone.`)) return;
  try {
    await api("/v1/sessions/" + s.id, { method: "DELETE" });
    location.hash = "#/";
    await loadSessions();
  } catch (err) {
    $("chat-error").textContent = err.status === 409
      ? "A reply is still being written: stop it first, then delete." : "Could not delete the session: " + err.message;
  }
});

// -- the transcript ---------------------------------------------------------------------------------------
const nearBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 40;

// Changes the transcript without moving what the reader looks at: it follows the end only if they were there.
function keepScroll(change) {
  const box = $("transcript");
  const follow = nearBottom(box);
  change();
  if (follow) box.scrollTop = box.scrollHeight;
}

function statusBadge(status) {
  if (!status || status === "complete") return null;
  const words = { streaming: "still streaming…", cancelled: "cancelled", error: "error", interrupted: "interrupted" };
  return el("span", { class: "badge " + status, "data-status": status, text: words[status] || status });
}

function toolCallsOf(m) {
  return (m.tool_calls || []).map((c) => ({
    id: c.id, name: c.name || (c.function && c.function.name) || "tool",
    args: c.arguments ?? (c.function && c.function.arguments) ?? "",
  }));
}

function toolNode(call, result) {
  const args = typeof call.args === "string" ? call.args : JSON.stringify(call.args, null, 2);
  const failed = result && result.is_error;
  const node = el("details", { class: "tool" + (failed ? " failed" : ""), "data-call-id": call.id || "" },
    el("summary", { text: `tool call: ${call.name}` + (result ? (failed ? " · failed" : " · answered") : "") }),
    el("div", { text: "arguments" }), el("pre", { text: args }));
  if (result) node.append(el("div", { text: failed ? "error" : "result" }), el("pre", { text: result.content }));
  return node;
}

function messageNode(m, results) {
  const body = el("div", { class: "msg-body" });
  if (m.content) body.append(markdown(m.content));
  for (const call of toolCallsOf(m)) body.append(toolNode(call, results.get(call.id)));
  if (m.role === "tool") body.replaceChildren(toolNode({ id: m.tool_call_id, name: m.name || m.tool_call_id || "tool", args: "" },
    { content: m.content, is_error: m.is_error }));
  const who = { user: "You", assistant: "Assistant", system: "System", tool: "Tool" }[m.role] || m.role;
  return el("article", { class: "msg " + m.role, "data-id": m.id || "", "data-role": m.role, "data-status": m.status || "" },
    el("div", { class: "msg-head" }, el("span", { text: who }), statusBadge(m.status)), body);
}

function renderMessages(messages) {
  const results = new Map();
  for (const m of messages) if (m.role === "tool" && m.tool_call_id) results.set(m.tool_call_id, m);
  const shown = messages.filter((m) => !(m.role === "tool" && m.tool_call_id && messages.some(
    (a) => toolCallsOf(a).some((c) => c.id === m.tool_call_id))));
  keepScroll(() => $("transcript").replaceChildren(...shown.map((m) => messageNode(m, results))));
}

async function allMessages(id) {
  let offset = 0, out = [];
  while (offset != null) {
    const page = await getJSON(`/v1/sessions/${id}/messages?offset=${offset}&limit=500`);
    out = out.concat(page.data);
    offset = page.next_offset;
  }
  return out;
}

// -- runs: stream, follow, resume, stop -------------------------------------------------------------------
function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("stop").disabled = false;
}

function replyNode(run) {
  const node = messageNode({ id: run.id || "", role: "assistant", content: "", status: "streaming" }, new Map());
  keepScroll(() => $("transcript").append(node));
  return node;
}

let painting = false;
function paint(run) { // at most once a frame: a fast stream re-renders its Markdown once per frame
  if (painting) return;
  painting = true;
  requestAnimationFrame(() => {
    painting = false;
    if (state.run !== run) return;
    keepScroll(() => run.node.querySelector(".msg-body").replaceChildren(markdown(run.text)));
  });
}

function finish(run, ev) {
  const status = ev.data.status;
  run.node.dataset.status = status;
  const head = run.node.querySelector(".msg-head");
  head.querySelector(".badge")?.remove();
  const badge = statusBadge(status);
  if (badge) head.append(badge);
  run.node.querySelector(".msg-body").replaceChildren(markdown(run.text));
  if (ev.event === "error" && ev.data.error) {
    run.node.append(el("p", { class: "msg-error", text: ev.data.error.message || ev.data.error.code }));
  }
}

// Reads a run's events until its terminal one; returns it, or null when the stream ended without one.
async function consume(run, resp) {
  for await (const ev of sseEvents(resp)) {
    if (ev.event === "run") {
      run.id = ev.data.run_id;
      run.node.dataset.id = run.id;
      pending(run.sessionId, run.id);
    } else if (ev.event === "delta") {
      if (ev.id != null && ev.id <= run.lastId) continue; // a replayed duplicate
      run.text += ev.data.text;
      run.lastId = ev.id ?? run.lastId + 1;
      paint(run);
    } else if (ev.event === "done" || ev.event === "error") {
      return ev;
    }
  }
  return null;
}

function pending(sessionId, runId) {
  const all = JSON.parse(sessionStorage.getItem(PENDING) || "{}");
  if (runId) all[sessionId] = runId; else delete all[sessionId];
  sessionStorage.setItem(PENDING, JSON.stringify(all));
}
const pendingRun = (sessionId) => JSON.parse(sessionStorage.getItem(PENDING) || "{}")[sessionId] || null;

// Follows a run to its end: the first response given, then reconnects with Last-Event-ID when a stream
// breaks (the run goes on on the server whatever happens to this connection).
async function drive(run, firstResponse) {
  state.run = run;
  setBusy(true);
  let resp = firstResponse, failures = 0, terminal = null;
  try {
    for (;;) {
      try {
        if (!resp) {
          resp = await api(`/v1/runs/${run.id}/events`, {
            headers: { "Last-Event-ID": String(run.lastId) }, signal: run.abort.signal });
        }
        terminal = await consume(run, resp);
        if (terminal) break;
        failures++; // the stream ended before the reply did: reconnect after the last event seen
      } catch (err) {
        if (err.name === "AbortError" || run.abort.signal.aborted) return; // left the session: the run goes on
        if (err.status === 404) throw err;
        failures++;
      }
      if (failures > 5) throw new ApiError(0, "network", "the connection kept breaking");
      resp = null;
      await new Promise((r) => setTimeout(r, 500 * failures));
    }
    finish(run, terminal);
    pending(run.sessionId, null);
    if (state.session && state.session.id === run.sessionId) {
      await openSession(run.sessionId, true);
      const failed = terminal.event === "error" && terminal.data.error;
      if (failed) $("chat-error").textContent = "The reply failed: " + (failed.message || failed.code);
    }
    loadSessions();
  } catch (err) {
    if (run.abort.signal.aborted) return;
    $("chat-error").textContent = "The reply could not be followed: " + err.message;
  } finally {
    if (state.run === run) { state.run = null; setBusy(false); }
  }
}

function newRun(sessionId, id, text, lastId) {
  const run = { id, sessionId, text, lastId, abort: new AbortController() };
  run.node = replyNode(run);
  if (text) run.node.querySelector(".msg-body").replaceChildren(markdown(text));
  return run;
}

async function send() {
  const input = $("composer-input");
  const content = input.value;
  if (!content.trim() || state.run || state.sending || !state.session) return;
  $("chat-error").textContent = "";
  const sessionId = state.session.id;
  const abort = new AbortController();
  let resp;
  state.sending = true; // Enter pressed twice sends once
  try {
    resp = await api(`/v1/sessions/${sessionId}/messages`, {
      method: "POST", json: { content, stream: true }, signal: abort.signal });
  } catch (err) {
    if (err.name !== "AbortError") {
      $("chat-error").textContent = err.status === 409
        ? "A reply is already being written in this session; wait for it or stop it." : "Not sent: " + err.message;
    }
    return;
  } finally {
    state.sending = false;
  }
  if (!state.session || state.session.id !== sessionId) { resp.body.cancel().catch(() => {}); return; } // left meanwhile
  input.value = "";
  keepScroll(() => $("transcript").append(messageNode({ role: "user", content, status: "complete" }, new Map())));
  const run = newRun(sessionId, resp.headers.get("Mofa-Run-Id"), "", 0);
  run.abort = abort;
  pending(sessionId, run.id);
  await drive(run, resp);
}

// Reattaches to a reply still being written (after a reload, or coming back to its session): shows the text
// saved so far, then follows the events after it.
async function resume(sessionId, runId) {
  let saved;
  try {
    saved = await getJSON("/v1/runs/" + runId);
  } catch (err) {
    if (err.status === 404) { pending(sessionId, null); return; }
    throw err;
  }
  if (saved.status !== "streaming") { // it ended meanwhile (or its process died): show what is stored
    pending(sessionId, null);
    await openSession(sessionId, true);
    return;
  }
  const shown = $("transcript").querySelector(`.msg[data-id="${runId}"]`);
  if (shown) shown.remove();
  const run = newRun(sessionId, runId, saved.content || "", saved.events || 0);
  await drive(run, null);
}

$("stop").addEventListener("click", async () => {
  const run = state.run;
  if (!run || !run.id) return;
  $("stop").disabled = true;
  try {
    await api(`/v1/runs/${run.id}/cancel`, { method: "POST" });
  } catch (err) {
    $("chat-error").textContent = "Could not stop the reply: " + err.message;
    $("stop").disabled = false;
  }
});

$("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
$("composer-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});

// -- views and routing ------------------------------------------------------------------------------------
function show(view) {
  for (const v of ["view-empty", "view-notfound", "view-chat", "view-usage"]) $(v).hidden = v !== view;
  $("sidebar").classList.remove("open");
  $("toggle-sidebar").setAttribute("aria-expanded", "false");
}

function leaveRun() { // stop following (the run itself goes on on the server)
  if (state.run) { state.run.abort.abort(); state.run = null; setBusy(false); }
}

async function openSession(id, refresh = false) {
  if (!refresh) leaveRun();
  $("chat-error").textContent = "";
  let session, messages;
  try {
    [session, messages] = await Promise.all([getJSON("/v1/sessions/" + id), allMessages(id)]);
  } catch (err) {
    state.session = null;
    if (err.status === 404 || err.status === 422) { $("transcript").replaceChildren(); show("view-notfound"); return; }
    show("view-chat");
    $("transcript").replaceChildren();
    $("chat-error").textContent = "Could not open the session: " + err.message;
    return;
  }
  state.session = session;
  for (const a of $("session-list").querySelectorAll("a")) {
    if (a.dataset.id === id) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  $("chat-title").textContent = session.title || "Untitled session";
  show("view-chat");
  renderMessages(messages);
  if (!refresh) $("transcript").scrollTop = $("transcript").scrollHeight;
  if (refresh || state.run) return;
  const streaming = messages.filter((m) => m.role === "assistant" && m.status === "streaming").pop();
  const runId = streaming ? streaming.id : pendingRun(id);
  if (runId) await resume(id, runId);
}

async function route() {
  const hash = location.hash;
  const m = hash.match(/^#\/sessions\/([^/?#]+)$/);
  if (m) return openSession(decodeURIComponent(m[1]));
  leaveRun();
  state.session = null;
  loadSessions(); // what other tabs and clients did meanwhile
  if (hash === "#/usage") { show("view-usage"); return loadUsage(); }
  show("view-empty");
}
window.addEventListener("hashchange", route);

$("toggle-sidebar").addEventListener("click", () => {
  const open = $("sidebar").classList.toggle("open");
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
  if (open) $("new-session").focus();
});

// -- usage ------------------------------------------------------------------------------------------------
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

function chart(daily) {
  const days = [];
  for (let d = new Date(daily.start + "T00:00:00Z"); d <= new Date(daily.end + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(d.toISOString().slice(0, 10));
  }
  const models = [...new Set(daily.rows.map((r) => r.model))];
  const calls = new Map(daily.rows.map((r) => [r.day + "|" + r.model, r.calls]));
  const totals = days.map((d) => models.reduce((s, m) => s + (calls.get(d + "|" + m) || 0), 0));
  const max = Math.max(1, ...totals);
  const W = 640, H = 220, left = 36, bottom = 24, top = 8;
  const band = (W - left) / days.length, bar = Math.max(2, band * 0.7);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Calls per day over ${days.length} days, ${totals.reduce((a, b) => a + b, 0)} in all` });
  const y = (v) => H - bottom - (v / max) * (H - bottom - top);
  for (const v of [0, Math.ceil(max / 2), max]) {
    root.append(svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), stroke: "currentColor", "stroke-opacity": 0.15 }));
    root.append(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, v));
  }
  days.forEach((d, i) => {
    let base = 0;
    const x = left + i * band + (band - bar) / 2;
    models.forEach((m, j) => {
      const n = calls.get(d + "|" + m) || 0;
      if (!n) return;
      const rect = svg("rect", { x, width: bar, y: y(base + n), height: y(base) - y(base + n), fill: PALETTE[j % PALETTE.length] });
      rect.append(svg("title", {}, `${d} · ${m}: ${n} call${n === 1 ? "" : "s"}`));
      root.append(rect);
      base += n;
    });
    if (days.length <= 14 || i % Math.ceil(days.length / 10) === 0) {
      root.append(svg("text", { x: x + bar / 2, y: H - 8, "text-anchor": "middle" }, d.slice(5)));
    }
  });
  const legend = el("div", { class: "legend" }, ...models.map((m, j) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = PALETTE[j % PALETTE.length];
    return el("span", {}, sw, m);
  }));
  $("usage-chart").replaceChildren(root, legend);
}

async function loadUsage() {
  const days = $("usage-days").value;
  $("usage-error").textContent = "";
  let total, daily;
  try {
    const since = new Date(Date.now() - days * 86400000).toISOString();
    [total, daily] = await Promise.all([
      getJSON("/v1/usage?start_time=" + encodeURIComponent(since)), getJSON("/v1/usage/daily?days=" + days)]);
  } catch (err) {
    $("usage-error").textContent = "Could not read the usage: " + err.message;
    return;
  }
  const stat = (label, value) => el("div", { class: "stat" }, el("b", { text: value }), label);
  const failed = total.total_calls - (total.calls_by_status.success || 0);
  $("usage-totals").replaceChildren(
    stat("calls", num(total.total_calls)), stat("failed or cancelled", num(failed)),
    stat("tokens", num(total.total_tokens)), stat("TTFT p50", ms(total.p50_time_to_first_token_ms)),
    stat("TTFT p95", ms(total.p95_time_to_first_token_ms)));
  chart(daily);
  const rows = daily.rows.slice().reverse().map((r) => el("tr", {},
    el("td", { text: r.day }), el("td", { text: r.model }), el("td", { text: num(r.calls) }),
    el("td", { text: Object.entries(r.calls_by_status).map(([k, v]) => `${k} ${v}`).join(", ") }),
    el("td", { text: `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}` }),
    el("td", { text: ms(r.p50_time_to_first_token_ms) }), el("td", { text: ms(r.p95_time_to_first_token_ms) })));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7", text: "No calls in this window." })));
  if (daily.truncated) $("usage-error").textContent = "More calls than one view groups: the oldest days are incomplete.";
  $("usage-table").tBodies[0].replaceChildren(...rows);
}
$("usage-days").addEventListener("change", loadUsage);

// -- start ------------------------------------------------------------------------------------------------
async function start() {
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadSessions();
  await route();
}

if (state.key) start(); else signOut("");
