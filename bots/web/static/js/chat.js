// Talking to the coach: the WebSocket (/api/v1/chat/ws, protocol in bots/web/ws.py), kept
// open with reconnects that back off; while it is down, a send goes over HTTP as
// server-sent events instead (POST /api/v1/chat/send), so a message is never stuck.

import { ApiError, newClientId } from "./api.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const PING_MS = 25000; // below the idle timeouts of common proxies
const CONNECT_WAIT_MS = 3000; // how long a send waits for a socket that is connecting
const UNAUTHORIZED = 4401;
// Errors about the message just received, answered before any reply: they end the newest
// waiting reply. Every other error ends the oldest (the server replies in order).
const NOT_A_REPLY = new Set(["rate_limited", "too_large", "bad_json", "unknown_type", "bad_message"]);

export class Chat {
  /**
   * `conversation`: the log (ask() gives a ReplyView); `onAccess(view)`: a refusal's
   * access; `onStatus(text)`: how the page is connected; `onSignedOut(detail)`: token gone;
   * `onReconnected()`: the socket is back after losing replies (they are in history).
   */
  constructor({ token, api, conversation, onAccess, onStatus, onSignedOut, onReconnected }) {
    Object.assign(this, { token, api, conversation, onAccess, onStatus, onSignedOut, onReconnected });
    this.socket = null;
    this.ready = false; // the `connected` frame came
    this.waiting = []; // ReplyViews, oldest first, for replies due on the socket
    this.attempt = 0;
    this.lostReplies = false;
    this.stopped = false;
    this.timer = 0;
    this.pinger = 0;
    this.readyWaiters = [];
    this.retryNow = () => { // the network is back: no need to wait out the backoff
      if (this.stopped || this.socket) return;
      clearTimeout(this.timer);
      this.connect();
    };
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.retryNow);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.retryNow);
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    if (socket) socket.close(1000, "signed out");
    for (const reply of this.waiting) reply.lost(); // the server finishes and stores them
    this.waiting = [];
    this.wake(false);
  }

  connect() {
    if (this.stopped) return;
    const url = new URL("api/v1/chat/ws", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = new URLSearchParams({ token: this.token }).toString();
    url.hash = "";
    const socket = new WebSocket(url);
    this.socket = socket;
    this.onStatus(this.attempt ? "Reconnecting…" : "Connecting…");
    socket.addEventListener("message", (event) => {
      if (this.socket === socket) this.receive(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket === socket) this.closed(event.code);
    });
  }

  closed(code) {
    this.socket = null;
    this.ready = false;
    clearInterval(this.pinger);
    this.wake(false);
    for (const reply of this.waiting) this.lose(reply);
    this.waiting = [];
    if (code === UNAUTHORIZED) {
      this.onSignedOut("Your sign-in has ended (the token is wrong or was revoked). Sign in again.");
      return;
    }
    if (this.stopped) return;
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.onStatus(`Offline: reconnecting in ${Math.round(delay / 1000)} s. Messages go over HTTP meanwhile.`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    switch (frame.type) {
      case "connected":
        this.ready = true;
        this.attempt = 0;
        this.onStatus("Connected");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.frame({ type: "ping" }), PING_MS);
        this.wake(true);
        if (this.lostReplies) {
          this.lostReplies = false;
          this.onReconnected();
        }
        break;
      case "welcome":
        this.waiting[0]?.welcome(frame.content);
        break;
      case "response_chunk":
        this.waiting[0]?.chunk(frame.content);
        break;
      case "proposal":
        this.waiting[0]?.proposal({ id: frame.proposal_id, text: frame.content, summary: frame.summary });
        break;
      case "response":
        this.waiting.shift()?.done(frame.content);
        break;
      case "error":
        this.error(frame);
        break;
      default: // typing and pong: the waiting bubble already says the coach is thinking
    }
  }

  error(frame) {
    if (frame.error === "window_closed") {
      this.waiting.shift()?.refused(frame.content);
      if (frame.access) this.onAccess(frame.access);
      return;
    }
    const reply = NOT_A_REPLY.has(frame.error) ? this.waiting.pop() : this.waiting.shift();
    reply?.failed(frame.content);
  }

  frame(data) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(data));
      return true;
    }
    return false;
  }

  /** Send `text`; its reply streams into the log, by socket or else over HTTP. */
  async send(text) {
    const reply = this.conversation.ask(text);
    const clientId = newClientId();
    if (await this.socketReady()) {
      this.waiting.push(reply);
      if (this.frame({ type: "message", content: text, client_id: clientId })) return;
      this.waiting.pop();
    }
    await this.overHttp(text, clientId, reply);
  }

  socketReady() {
    if (this.ready) return Promise.resolve(true);
    if (!this.socket || this.socket.readyState !== WebSocket.CONNECTING) {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), CONNECT_WAIT_MS);
      this.readyWaiters.push((ok) => { clearTimeout(timer); resolve(ok); });
    });
  }

  wake(ok) {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const resolve of waiters) resolve(ok);
  }

  async overHttp(text, clientId, reply) {
    let ended = false;
    try {
      await this.api.stream(text, clientId, (name, data) => {
        switch (name) {
          case "welcome":
            reply.welcome(data.content);
            break;
          case "chunk":
            reply.chunk(data.content);
            break;
          case "proposal":
            reply.proposal(data);
            break;
          case "done":
            ended = true;
            reply.done(data.content, data.incomplete);
            break;
          case "refused":
            ended = true;
            reply.refused(data.content);
            if (data.access) this.onAccess(data.access);
            break;
          case "error":
            ended = true;
            reply.failed(data.content);
            break;
          default:
        }
      });
      if (!ended) this.lose(reply);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.kind === "offline") this.lose(reply);
      else reply.failed(error.detail);
    }
  }

  lose(reply) {
    reply.lost();
    this.lostReplies = true; // the history is read again when the socket is back
  }
}
