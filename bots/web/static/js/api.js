// The HTTP side of the API: JSON requests with the bearer token, errors as ApiError (the
// server's {"error", "detail"}), and a send streamed as server-sent events.
// Paths are relative, so the page also works when served under a prefix.

export class ApiError extends Error {
  constructor(status, kind, detail) {
    super(detail);
    this.status = status;
    this.kind = kind;
    this.detail = detail;
  }
}

const OFFLINE = "The server can't be reached. Check your connection and try again.";

export class Api {
  /** `onUnauthorized(detail)` is called on any 401: the token was revoked or is wrong. */
  constructor(token, onUnauthorized = () => {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  get(path) { return this.json("GET", path); }
  post(path, body = {}) { return this.json("POST", path, body); }
  put(path, body) { return this.json("PUT", path, body); }
  delete(path) { return this.json("DELETE", path); }

  async json(method, path, body) {
    const response = await this.fetch(method, path, body, "application/json");
    return (await readJson(response)) ?? {};
  }

  /** POST /chat/send as server-sent events: `onEvent(name, data)` for each event. */
  async stream(content, clientId, onEvent) {
    const response = await this.fetch(
      "POST", "api/v1/chat/send", { content, client_id: clientId }, "text/event-stream",
    );
    const type = response.headers.get("content-type") || "";
    if (!type.includes("text/event-stream")) {
      // A proxy that does not stream, or a refusal answered whole: the same events, at once.
      const data = (await readJson(response)) ?? {};
      for (const proposal of data.proposals ?? []) onEvent("proposal", proposal);
      onEvent(data.refused ? "refused" : "done", data);
      return;
    }
    await readEvents(response.body, onEvent);
  }

  async fetch(method, path, body, accept) {
    const headers = { Accept: accept, Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "offline", OFFLINE);
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401) this.onUnauthorized(error.detail);
      throw error;
    }
    return response;
  }
}

/** Exchange a one-time sign-in code (the link's `#sign-in=...`) for a token. */
export async function signInWithCode(code) {
  let response;
  try {
    response = await fetch("api/v1/auth/sign-in", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ code }),
    });
  } catch {
    throw new ApiError(0, "offline", OFFLINE);
  }
  if (!response.ok) throw await errorOf(response);
  return (await response.json()).token;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function errorOf(response) {
  const body = await readJson(response);
  let detail = body && body.detail;
  if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
  if (!detail) detail = `The server answered ${response.status} ${response.statusText}.`.trim();
  const retry = response.headers.get("retry-after");
  if (response.status === 429 && retry && !/\d\s*s\b/.test(detail)) {
    detail += ` (try again in ${retry} s)`;
  }
  return new ApiError(response.status, (body && body.error) || `http_${response.status}`, detail);
}

/** Read an event stream to its end: `event:` names, `data:` lines joined, comments skipped. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let read;
    try {
      read = await reader.read();
    } catch {
      throw new ApiError(0, "offline", OFFLINE); // cut mid-reply: the reply is still stored
    }
    const { value, done } = read;
    if (done) break;
    buffer += value;
    // Line ends may be \r\n (sse-starlette); a \r at the very end waits for its \n.
    const held = buffer.endsWith("\r") ? "\r" : "";
    buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n") + held;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, cut), onEvent);
      buffer = buffer.slice(cut + 2);
    }
  }
  if (buffer.trim()) dispatch(buffer, onEvent);
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  onEvent(name, parsed);
}

/** A client_id for a send: a retry with the same id is answered once. */
export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context (https or localhost); getRandomValues does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
