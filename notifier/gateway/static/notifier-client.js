// notifier-client.js: a dependency-free ES module for the notifier gateway.
//
//   import { NotifierClient } from "/static/notifier-client.js";
//   const client = new NotifierClient({ token: () => fetchTokenFromMyBackend() });
//   client.on("notification", (n) => showToast(n.title));
//   client.on("unread", ({ unread }) => setBadge(unread));
//   client.connect();
//
// Live transport: Server-Sent Events read with fetch() (so the token travels in the Authorization
// header, never in a URL, and a 401 is told apart from an outage), or a WebSocket
// (`transport: "websocket"`, token in the query string: keep such tokens short-lived). Either way the
// client reconnects with exponential backoff and jitter and resumes from the last entry id it saw,
// so nothing is missed or shown twice. `token` may be a string or a function returning a (promise
// of a) fresh token, called before every connection attempt. It also sends the inbox epoch the last
// `connected` event named: when the gateway answers that the resume did not recover everything (the
// inbox cap trimmed entries it had not seen, or the inbox was lost and recreated), the client emits
// `reload`, and the page should load its list afresh rather than trust what it shows.
//
// Events (listen with on(type, fn); fn gets the payload):
//   connected     {user_id, unread, last_event_id, epoch, expires_at, heartbeat, recovered?}
//                 recovered (only when resuming): true = nothing was missed
//   reload        {epoch, last_event_id}   after a resume that was not recovered: reload the list
//   notification  the notification, with entry_id and read
//   unread        {unread}
//   error         {error, message, status?}   error "unauthorized" stops reconnecting
//   state         {state}   "connecting" | "open" | "reconnecting" | "closed"

const DEFAULT_BACKOFF = { initial: 500, max: 30000 };

/** An error answer from the gateway's HTTP API. */
export class NotifierError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "NotifierError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Entry ids ("1700000000000-3") order by milliseconds, then sequence. */
export function compareEntryIds(a, b) {
  const [am, as = "0"] = String(a).split("-");
  const [bm, bs = "0"] = String(b).split("-");
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** Exponential backoff with jitter: a random delay in [cap/2, cap], cap doubling per attempt. */
export function backoffDelay(attempt, { initial, max } = DEFAULT_BACKOFF) {
  const cap = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return cap / 2 + Math.random() * (cap / 2);
}

export class NotifierClient {
  /**
   * @param {object} options
   * @param {string|function():(string|Promise<string>)} options.token  user token, or a provider
   * @param {string} [options.baseUrl]  gateway origin ("" = same origin)
   * @param {"sse"|"websocket"} [options.transport]
   * @param {string} [options.lastEventId]  resume after this entry id on the first connection
   * @param {string} [options.epoch]  the inbox epoch that lastEventId belongs to
   * @param {{initial:number,max:number}} [options.backoff]  milliseconds
   */
  constructor({ token, baseUrl = "", transport = "sse", lastEventId = null, epoch = null, backoff = DEFAULT_BACKOFF } = {}) {
    if (!token) throw new TypeError("NotifierClient needs a token (a string or a function returning one)");
    if (transport !== "sse" && transport !== "websocket") throw new TypeError(`unknown transport ${transport}`);
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.transport = transport;
    this.lastEventId = lastEventId;
    this.epoch = epoch;
    this.backoff = backoff;
    this.state = "closed";
    this._token = token;
    this._listeners = new Map();
    this._attempt = 0;
    this._timer = null;
    this._stop = null;
    this._generation = 0;
  }

  // Events ------------------------------------------------------------------------------------
  /** Listen for an event; returns a function that removes the listener. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type).delete(fn);
  }

  _emit(type, payload) {
    for (const fn of this._listeners.get(type) || []) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`notifier: a ${type} listener threw`, err);
      }
    }
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", { state });
    }
  }

  async token() {
    return typeof this._token === "function" ? await this._token() : this._token;
  }

  // Live connection ---------------------------------------------------------------------------
  /** Open the live connection (and keep it open until close()). */
  connect() {
    if (this.state !== "closed") return this;
    this._attempt = 0;
    this._open(++this._generation);
    return this;
  }

  /** Close the live connection for good. */
  close() {
    this._generation++;
    clearTimeout(this._timer);
    if (this._stop) this._stop();
    this._stop = null;
    this._setState("closed");
  }

  async _open(generation) {
    this._setState(this._attempt === 0 ? "connecting" : "reconnecting");
    let token;
    try {
      token = await this.token();
    } catch (err) {
      this._emit("error", { error: "token_provider", message: String(err) });
      this._retry(generation);
      return;
    }
    if (generation !== this._generation) return;
    const run = this.transport === "websocket" ? this._websocket(token, generation) : this._sse(token, generation);
    run.catch((err) => this._emit("error", { error: "client", message: String(err) }));
  }

  _retry(generation, { fatal = false } = {}) {
    if (generation !== this._generation) return;
    this._stop = null;
    if (fatal && typeof this._token !== "function") {
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    const delay = backoffDelay(this._attempt++, this.backoff);
    this._timer = setTimeout(() => this._open(generation), delay);
  }

  _connected(info) {
    this._attempt = 0;
    const lost = info.recovered === false;
    if (lost) {
      this.lastEventId = info.last_event_id; // the gateway's replay point (0-0 for a new inbox)
    } else if (info.last_event_id && (!this.lastEventId || compareEntryIds(info.last_event_id, this.lastEventId) > 0)) {
      this.lastEventId = info.last_event_id;
    }
    if (info.epoch) this.epoch = info.epoch;
    this._setState("open");
    this._emit("connected", info);
    if (lost) this._emit("reload", { epoch: info.epoch, last_event_id: info.last_event_id });
  }

  /** The live endpoint's query string: the epoch the resume id belongs to, if known. */
  _resumeQuery() {
    return this.lastEventId && this.epoch ? `?epoch=${encodeURIComponent(this.epoch)}` : "";
  }

  _notification(entryId, notification) {
    if (this.lastEventId && compareEntryIds(entryId, this.lastEventId) <= 0) return;
    this.lastEventId = entryId;
    this._emit("notification", notification);
  }

  _dispatch(type, data, id) {
    if (type === "connected") this._connected(data);
    else if (type === "notification") this._notification(id || data.entry_id, data);
    else if (type === "unread_count") this._emit("unread", { unread: data.unread });
    else if (type === "error") this._emit("error", data);
  }

  async _sse(token, generation) {
    const controller = new AbortController();
    let watchdog = null;
    let heartbeat = 15;
    const stop = () => {
      clearTimeout(watchdog);
      controller.abort();
    };
    this._stop = stop;
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), heartbeat * 2500);
    };
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    let response;
    try {
      response = await fetch(`${this.baseUrl}/v1/stream${this._resumeQuery()}`, { headers, signal: controller.signal, cache: "no-store" });
    } catch (err) {
      if (generation === this._generation) this._retry(generation);
      return;
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      this._emit("error", { error: error.code, message: error.message, status: error.status });
      stop();
      this._retry(generation, { fatal: response.status === 401 });
      return;
    }
    feed();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed();
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseEvent(block);
          if (!event) continue;
          if (event.type === "connected" && event.data.heartbeat) heartbeat = event.data.heartbeat;
          this._dispatch(event.type, event.data, event.id);
        }
      }
    } catch (err) {
      // aborted (close(), or the watchdog saw no heartbeat) or the network dropped: reconnect below
    } finally {
      stop();
    }
    this._retry(generation);
  }

  async _websocket(token, generation) {
    const url = new URL(`${this.baseUrl}/v1/ws`, globalThis.location?.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", token);
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    if (this.lastEventId && this.epoch) url.searchParams.set("epoch", this.epoch);
    const ws = new WebSocket(url);
    let pinger = null;
    let silence = null;
    let heartbeat = 15;
    const alive = () => {
      clearTimeout(silence);
      silence = setTimeout(() => ws.close(4000, "no answer to ping"), heartbeat * 2500);
    };
    const stop = () => {
      clearInterval(pinger);
      clearTimeout(silence);
      ws.onclose = null;
      ws.close(1000);
    };
    this._stop = stop;
    this._ws = ws;
    ws.onmessage = (message) => {
      alive();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "connected") {
        heartbeat = frame.heartbeat || heartbeat;
        clearInterval(pinger);
        pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), heartbeat * 1000);
        const { type, ...info } = frame;
        this._dispatch("connected", info);
      } else if (frame.type === "notification") {
        this._dispatch("notification", frame.notification, frame.id);
      } else if (frame.type === "unread_count" || frame.type === "error") {
        this._dispatch(frame.type, frame);
      }
    };
    ws.onclose = (event) => {
      clearInterval(pinger);
      clearTimeout(silence);
      this._ws = null;
      if (event.code === 4401) {
        this._emit("error", { error: "unauthorized", message: event.reason || "token refused", status: 401 });
      } else if (event.code !== 1000 && event.code !== 1001) {
        this._emit("error", { error: "disconnected", message: event.reason || `closed (${event.code})` });
      }
      this._retry(generation, { fatal: event.code === 4401 });
    };
    alive();
  }

  /** Send a raw frame on the WebSocket transport (e.g. {type: "read", ids: [...]}). */
  send(frame) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) throw new Error("the WebSocket is not open");
    this._ws.send(JSON.stringify(frame));
  }

  // HTTP API ----------------------------------------------------------------------------------
  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw await errorFrom(response);
    return response.status === 204 ? null : response.json();
  }

  /** One page of notifications, newest first: {items, next_cursor}. */
  list({ limit = 20, before = null, unread = false } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set("before", before);
    if (unread) query.set("unread", "true");
    return this.request("GET", `/v1/notifications?${query}`);
  }

  async unreadCount() {
    return (await this.request("GET", "/v1/notifications/unread-count")).unread;
  }

  /** Mark notifications read by notification id or entry id; resolves to the new unread count
   *  (the full answer, with `marked` and the `unknown` ids, is `request("POST", "/v1/notifications/read", ...)`). */
  async markRead(ids) {
    return (await this.request("POST", "/v1/notifications/read", { ids: [].concat(ids) })).unread;
  }

  async markAllRead() {
    return (await this.request("POST", "/v1/notifications/read", { all: true })).unread;
  }

  /** Delete a notification; resolves to {deleted, unread}. */
  remove(id) {
    return this.request("DELETE", `/v1/notifications/${encodeURIComponent(id)}`);
  }

  getPreferences() {
    return this.request("GET", "/v1/preferences");
  }

  setPreferences(preferences) {
    return this.request("PUT", "/v1/preferences", preferences);
  }

  registerDevice(registration) {
    return this.request("POST", "/v1/devices", registration);
  }

  async listDevices() {
    return (await this.request("GET", "/v1/devices")).devices;
  }

  removeDevice(id) {
    return this.request("DELETE", `/v1/devices/${encodeURIComponent(id)}`);
  }

  async vapidPublicKey() {
    return (await this.request("GET", "/v1/webpush/vapid-public-key")).key;
  }
}

function parseEvent(block) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return { type, id, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}

async function errorFrom(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: keep the status alone
  }
  return new NotifierError(response.status, body.error || `http_${response.status}`,
    body.message || `${response.status} ${response.statusText}`, body.details);
}
