// The page: signing in (a pasted token, or a sign-in link /#sign-in=CODE), signing out,
// and wiring the chat, the history and the panels to one Api.

import { Api, signInWithCode } from "./api.js";
import { Chat } from "./chat.js";
import { Conversation } from "./conversation.js";
import { Access, Goals, Linking, Meetings, showingErrors } from "./panels.js";

const TOKEN_KEY = "momentum.token";
const ACCESS_REFRESH_MS = 60000; // windows open and close on the clock
const SIGN_IN_HASH = /^#sign-in=(.+)$/;
const $ = (id) => document.getElementById(id);

const api = new Api(null, (detail) => signOut(detail));
const access = new Access(api);
const goals = new Goals(api);
const meetings = new Meetings(api, () => access.load());
const linking = new Linking(api, () => loadAll(true));
let timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const conversation = new Conversation({
  list: $("messages"),
  older: $("older"),
  api,
  formatTime: (iso) => timeFormat.format(new Date(iso)),
  onDecided: () => Promise.all([goals.load(), meetings.load(), access.load()]),
});
let chat = null;
let refresher = 0;
let historyShown = Promise.resolve(); // a send waits for it: history first, then the new

const stored = {
  get: () => { try { return localStorage.getItem(TOKEN_KEY); } catch { return null; } },
  set: (token) => { try { localStorage.setItem(TOKEN_KEY, token); } catch { /* private mode */ } },
  clear: () => { try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ } },
};

function showSignIn(detail = "") {
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("who").hidden = true;
  $("connection").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = detail;
  $("token").focus();
}

/** Sign in with `token`: true if the server knows it (then the page is shown). */
async function enter(token) {
  api.token = token;
  let me;
  try {
    me = await api.get("api/v1/me");
  } catch (error) {
    api.token = null;
    if (error.status === 401) stored.clear();
    showSignIn(error.detail);
    return false;
  }
  stored.set(token);
  showMe(me);
  $("sign-in").hidden = true;
  $("sign-in-error").textContent = "";
  $("app").hidden = false;
  $("sign-out").hidden = false;
  // At once, before anything loads: focus that moved later would pull it from a field
  // the user has started typing in.
  $("message").focus();
  chat = new Chat({
    token,
    api,
    conversation,
    onAccess: (view) => access.show(view),
    onStatus: (text) => { $("connection").textContent = text; },
    onSignedOut: (detail) => signOut(detail),
    onReconnected: () => showingErrors("chat-error", () => conversation.loadAnswered()),
  });
  chat.start();
  await loadAll(false);
  clearInterval(refresher);
  refresher = setInterval(() => access.load(), ACCESS_REFRESH_MS);
  return true;
}

function showMe(me) {
  useZone(me.timezone);
  $("who").textContent = `Signed in as ${me.name} (${me.platform})`;
  $("who").hidden = false;
}

async function loadAll(again) {
  if (again && chat) { // the user changed under the token (linked): a fresh socket too
    chat.stop();
    chat.start();
    await showingErrors("link-error", async () => showMe(await api.get("api/v1/me")));
  }
  historyShown = showingErrors("chat-error", () => conversation.load());
  await Promise.all([access.load(), goals.load(), meetings.load(), historyShown]);
}

function useZone(zone) {
  try {
    timeFormat = new Intl.DateTimeFormat(undefined, {
      dateStyle: "medium", timeStyle: "short", timeZone: zone,
    });
  } catch { /* a zone this browser does not know: its own zone then */ }
}

function signOut(detail = "") {
  if (chat) chat.stop();
  chat = null;
  clearInterval(refresher);
  api.token = null;
  stored.clear();
  // Nothing of this user stays on the page for the next one.
  conversation.reset();
  access.reset();
  for (const id of ["goals", "meetings", "progress-goal"]) $(id).replaceChildren();
  $("progress-form").hidden = true;
  for (const id of ["message", "goal-text", "progress-text", "meeting-when", "link-input"]) {
    $(id).value = "";
  }
  for (const id of ["chat-error", "goals-error", "meetings-error", "link-error"]) {
    $(id).textContent = "";
  }
  linking.reset();
  showSignIn(detail);
}

/** A sign-in link's code, taken out of the address at once (it is good only once). */
async function signInFromLink() {
  const match = SIGN_IN_HASH.exec(location.hash);
  if (!match) return false;
  history.replaceState(null, "", location.pathname + location.search);
  let token;
  try {
    token = await signInWithCode(decodeURIComponent(match[1]));
  } catch (error) {
    showSignIn(error.detail);
    return true;
  }
  if (chat) signOut();
  await enter(token);
  return true;
}

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  if (await enter(token)) $("token").value = "";
});

$("sign-out").addEventListener("click", () => signOut());

$("older").addEventListener("click", () => showingErrors("chat-error", () => conversation.older()));

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim() || !chat) return;
  $("message").value = "";
  await historyShown;
  if (chat) await chat.send(text);
});

$("message").addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter is a new line; never mid-composition (IME input).
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

window.addEventListener("hashchange", () => signInFromLink());

async function start() {
  if (await signInFromLink()) return;
  const token = stored.get();
  if (token) await enter(token);
  else showSignIn();
}

start();
