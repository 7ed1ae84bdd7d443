// The demo inbox: everything it does goes through the public client in notifier-client.js.
// Notification text is always inserted with textContent, never as HTML.
import { NotifierClient, compareEntryIds } from "/static/notifier-client.js";

let channels = [];         // names from GET /v1/channels (the server's registry)
const $ = (id) => document.getElementById(id);

let client = null;
let token = null;
let items = [];           // loaded notifications, newest first
let nextCursor = null;
let unread = 0;
let shownPreferences = {};  // as last loaded: fields the panel has no input for are saved unchanged
const toasted = new Set();  // ids already shown as a toast
const arrived = new Set();  // ids delivered live: highlighted while unread, kept when a list loads

function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("notifier-token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);  // keep it out of history
  }
  return fromUrl || sessionStorage.getItem("notifier-token");
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function toast(title, text, kind = "") {
  const node = el("div", { className: `toast ${kind}`, role: "status" },
    el("div", { className: "title", textContent: title }),
    el("div", { className: "text", textContent: text || "" }));
  $("toasts").append(node);
  setTimeout(() => node.remove(), 6000);
}

function setBadge(count) {
  unread = Math.max(0, count);
  const badge = $("badge");
  badge.textContent = unread > 99 ? "99+" : String(unread);
  badge.dataset.count = String(unread);
  badge.hidden = unread === 0;
  document.title = unread ? `(${unread}) notifier · inbox` : "notifier · inbox";
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? "" : date.toLocaleString();
}

function renderItem(n) {
  const fresh = arrived.has(n.id) && !n.read;
  const read = el("button", { className: "read", textContent: "Mark read", hidden: n.read });
  read.dataset.action = "read";
  const del = el("button", { className: "delete", textContent: "Delete" });
  del.dataset.action = "delete";
  const li = el("li", { className: `item${n.read ? "" : " unread"}${fresh ? " fresh" : ""}` },
    el("span", { className: "dot" }),
    el("div", { className: "body" },
      el("div", { className: "title", textContent: n.title }),
      el("div", { className: "text", textContent: n.body || "" }),
      el("div", { className: "meta", textContent: [n.type, when(n.timestamp)].filter(Boolean).join(" · ") })),
    el("div", { className: "buttons" }, read, del));
  li.dataset.id = n.id;
  return li;
}

function render() {
  const onlyUnread = $("only-unread").checked;
  const shown = onlyUnread ? items.filter((n) => !n.read) : items;
  $("list").replaceChildren(...shown.map((n) => renderItem(n)));
  $("empty").hidden = shown.length > 0;
  $("more").hidden = !nextCursor;
}

async function loadFirstPage() {
  const page = await client.list({ limit: 20, unread: $("only-unread").checked });
  // The page may have been read before a live notification that is already shown: keep those.
  const listed = new Set(page.items.map((n) => n.id));
  const live = items.filter((n) => arrived.has(n.id) && !listed.has(n.id));
  items = live.concat(page.items).sort((a, b) => compareEntryIds(b.entry_id, a.entry_id));
  // A read made elsewhere while the page was loading already set the badge to 0: nothing listed is unread.
  if (unread === 0) items = items.map((n) => ({ ...n, read: true }));
  nextCursor = page.next_cursor;
  render();
}

async function loadMore() {
  if (!nextCursor) return;
  const page = await client.list({ limit: 20, before: nextCursor, unread: $("only-unread").checked });
  items = items.concat(page.items);
  nextCursor = page.next_cursor;
  render();
}

function onNotification(n) {
  // A replayed notification may already be in a list loaded a moment earlier: toast it anyway.
  if (!n.read && !toasted.has(n.id)) {
    toasted.add(n.id);
    toast(n.title, n.body);
  }
  if (items.some((i) => i.id === n.id)) return;
  arrived.add(n.id);
  items.unshift(n);
  items.sort((a, b) => compareEntryIds(b.entry_id, a.entry_id));
  $("list").prepend(renderItem(n));
  $("empty").hidden = true;
}

async function onListClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("li").dataset.id;
  button.disabled = true;
  try {
    if (button.dataset.action === "read") {
      setBadge(await client.markRead([id]));
      items = items.map((n) => (n.id === id ? { ...n, read: true } : n));
    } else {
      const { unread: count } = await client.remove(id);
      setBadge(count);
      items = items.filter((n) => n.id !== id);
    }
    render();
  } catch (err) {
    toast("Could not update", err.message, "error");
    button.disabled = false;
  }
}

async function markAllRead() {
  try {
    setBadge(await client.markAllRead());
    items = items.map((n) => ({ ...n, read: true }));
    render();
  } catch (err) {
    toast("Could not mark all read", err.message, "error");
  }
}

// Preferences --------------------------------------------------------------------------------------
function fillPreferences(p) {
  shownPreferences = p;
  $("channels").replaceChildren(...channels.map((name) => {
    const box = el("input", { type: "checkbox", checked: p.channels[name] !== false });
    box.dataset.channel = name;
    return el("label", {}, box, name);
  }));
  $("disabled-types").value = (p.disabled_types || []).join(", ");
  $("quiet-start").value = p.quiet_hours ? p.quiet_hours.start : "";
  $("quiet-end").value = p.quiet_hours ? p.quiet_hours.end : "";
  $("timezone").value = p.timezone || "UTC";
  $("email").value = p.email || "";
  $("phone").value = p.phone || "";
  const notes = Object.entries(p.channel_off_reasons || {}).map(([name, why]) => `${name} is off: ${why}`);
  if (p.phone_invalid) notes.push(`phone number removed: ${p.phone_invalid}`);
  $("prefs-notes").textContent = notes.join(" · ");
}

async function savePreferences(event) {
  event.preventDefault();
  const status = $("prefs-status");
  const channels = {};
  for (const box of $("channels").querySelectorAll("input")) channels[box.dataset.channel] = box.checked;
  const start = $("quiet-start").value;
  const end = $("quiet-end").value;
  const body = {
    ...shownPreferences,
    channels,
    disabled_types: $("disabled-types").value.split(",").map((s) => s.trim()).filter(Boolean),
    quiet_hours: start || end ? { start, end } : null,
    timezone: $("timezone").value.trim() || "UTC",
    email: $("email").value.trim() || null,
    phone: $("phone").value.trim() || null,
  };
  try {
    fillPreferences(await client.setPreferences(body));
    status.className = "muted";
    status.textContent = "Saved.";
  } catch (err) {
    status.className = "error";
    status.textContent = err.message;
  }
}

// Wiring -------------------------------------------------------------------------------------------
function start(transport) {
  if (client) client.close();
  client = new NotifierClient({ token, transport });
  client.on("state", ({ state }) => {
    const node = $("state");
    node.className = `state ${state}`;
    node.textContent = { open: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "offline" }[state];
  });
  client.on("connected", async (info) => {
    $("user").textContent = `· ${info.user_id}`;
    setBadge(info.unread);
    if (info.recovered === false) return; // "reload" follows
    try {
      await loadFirstPage();
    } catch (err) {
      toast("Could not load notifications", err.message, "error");
    }
  });
  // The resume missed entries (trimmed, or the inbox was recreated): what is shown cannot be trusted.
  client.on("reload", async () => {
    items = [];
    arrived.clear();
    nextCursor = null;
    render();
    try {
      await loadFirstPage();
    } catch (err) {
      toast("Could not load notifications", err.message, "error");
    }
  });
  client.on("notification", onNotification);
  client.on("unread", ({ unread: count }) => {
    setBadge(count);
    if (count === 0 && items.some((n) => !n.read)) {
      items = items.map((n) => ({ ...n, read: true }));
      render();
    }
  });
  client.on("error", (err) => {
    if (err.error === "unauthorized") {
      sessionStorage.removeItem("notifier-token");
      $("app").hidden = true;
      $("login").hidden = false;
      toast("Token refused", err.message, "error");
    }
  });
  $("login").hidden = true;
  $("app").hidden = false;
  client.connect();
  client.request("GET", "/v1/channels")
    .then((answer) => {
      channels = answer.channels.map((c) => c.name);
      return client.getPreferences();
    })
    .then(fillPreferences)
    .catch((err) => {
      if (err.status !== 401) toast("Could not load preferences", err.message, "error");
    });
}

document.addEventListener("DOMContentLoaded", () => {
  $("list").addEventListener("click", onListClick);
  $("read-all").addEventListener("click", markAllRead);
  $("more").addEventListener("click", () => loadMore().catch((err) => toast("Could not load", err.message, "error")));
  $("only-unread").addEventListener("change", () => loadFirstPage().catch((err) => toast("Could not load", err.message, "error")));
  $("prefs").addEventListener("submit", savePreferences);
  $("transport").addEventListener("change", () => token && start($("transport").value));
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token-input").value.trim();
    sessionStorage.setItem("notifier-token", token);
    start($("transport").value);
  });
  token = takeToken();
  if (token) start($("transport").value);
  else $("login").hidden = false;
});
