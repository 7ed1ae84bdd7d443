// The admin page: everything goes through the /v1/admin API with the key typed in (kept for this tab only).
// Text from the log is always inserted with textContent, never as HTML.
const $ = (id) => document.getElementById(id);
const KINDS = ["accepted", "queued", "skipped", "held", "workflow", "sent", "retried", "failed", "replayed",
  "pruned", "delivered", "seen", "read", "clicked", "deleted"];
let cursor = null;
let lastSearch = null;

function key() { return sessionStorage.getItem("notifier-api-key") || ""; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options,
    headers: { "X-API-Key": key(), "Content-Type": "application/json", ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  showError("");
  return body;
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function detail(d) {
  return Object.entries(d || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function notificationLink(id) {
  const td = document.createElement("td");
  const a = document.createElement("a");
  a.textContent = id;
  a.className = "notification-link";
  a.addEventListener("click", () => openTimeline(id).catch((e) => showError(e.message)));
  td.append(a);
  return td;
}

function eventRow(e, withNotification) {
  const tr = document.createElement("tr");
  tr.append(cell(e.at), cell(e.kind));
  if (withNotification) tr.append(notificationLink(e.notification_id));
  tr.append(cell(e.user_id), cell(e.channel), cell(e.target), cell(detail(e.detail), "detail"));
  return tr;
}

async function search(more = false) {
  const params = new URLSearchParams(lastSearch);
  if (more && cursor) params.set("before", cursor);
  const page = await api(`/v1/admin/log?${params}`);
  const body = $("log").tBodies[0];
  if (!more) body.replaceChildren();
  for (const e of page.events) body.append(eventRow(e, true));
  cursor = page.next_cursor;
  $("more").hidden = cursor === null;
}

async function openTimeline(id) {
  const t = await api(`/v1/admin/notifications/${encodeURIComponent(id)}`);
  $("timeline-id").textContent = t.notification_id;
  $("deliveries").tBodies[0].replaceChildren(...t.deliveries.map((d) => {
    const tr = document.createElement("tr");
    tr.append(cell(d.user_id), cell(d.channel), cell(d.target), cell(d.state), cell(d.at));
    return tr;
  }));
  $("timeline").tBodies[0].replaceChildren(...t.events.map((e) => eventRow(e, false)));
  $("timeline-section").hidden = false;
}

async function loadDeadLetters() {
  const letters = await api("/v1/admin/dead-letters");
  $("dead-letters").tBodies[0].replaceChildren(...letters.map((l) => {
    const tr = document.createElement("tr");
    tr.append(cell(l.id), cell(l.failed_at), cell(l.channel), cell((l.users || []).join(", ")),
      cell((l.notification_ids || []).join(", ")), cell(l.error, "detail"));
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "Replay";
    button.className = "replay";
    button.addEventListener("click", async () => {
      try {
        await api("/v1/admin/dead-letters/replay", { method: "POST", body: JSON.stringify({ ids: [l.id] }) });
        button.textContent = "Queued";
        button.disabled = true;
      } catch (e) { showError(e.message); }
    });
    td.append(button);
    tr.append(td);
    return tr;
  }));
}

async function loadQueues() {
  const q = await api("/v1/admin/queues");
  const rows = Object.entries(q.queues).map(([name, size]) => [name, size]);
  rows.push(["dead letters", q.dead_letters]);
  $("queues").tBodies[0].replaceChildren(...rows.map(([name, size]) => {
    const tr = document.createElement("tr");
    tr.append(cell(name), cell(String(size)));
    return tr;
  }));
}

function refreshAll() {
  for (const load of [loadDeadLetters, loadQueues]) load().catch((e) => showError(e.message));
}

for (const kind of KINDS) {
  const option = document.createElement("option");
  option.value = option.textContent = kind;
  $("search-status").append(option);
}
$("api-key").value = key();
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("notifier-api-key", $("api-key").value);
  refreshAll();
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const notification = $("search-notification").value.trim();
  if (notification) {
    openTimeline(notification).catch((e) => showError(e.message));
    return;
  }
  lastSearch = {};
  for (const [name, input] of [["user", "search-user"], ["status", "search-status"], ["since", "search-since"]]) {
    const value = $(input).value.trim();
    if (value) lastSearch[name] = value;
  }
  search().catch((e) => showError(e.message));
});
$("more").addEventListener("click", () => search(true).catch((e) => showError(e.message)));
$("refresh-dlq").addEventListener("click", () => loadDeadLetters().catch((e) => showError(e.message)));
$("refresh-queues").addEventListener("click", () => loadQueues().catch((e) => showError(e.message)));
if (key()) refreshAll();
