// The message log: history pages (the API gives newest first; the log reads oldest first,
// older pages on demand) and the bubbles of replies as they stream.

import { renderMarkdown } from "./markdown.js";

export const PAGE_SIZE = 20;
const ANSWER_POLL_MS = 2000; // a lost reply may still be being written on the server
const ANSWER_TRIES = 10;
const NEAR_BOTTOM_PX = 48;
const THINKING = "Coach is thinking…";
const LOST =
  "The connection dropped. Your coach's reply is kept and shows here once the page reconnects.";

export class Conversation {
  constructor({ list, older, api, formatTime, onDecided = () => {} }) {
    this.list = list;
    this.olderButton = older;
    this.api = api;
    this.formatTime = formatTime;
    this.onDecided = onDecided; // a proposal was answered: goals or meetings may have changed
    this.live = new Set(); // ReplyViews still coming in
    this.clear();
  }

  /** Empty, as for the next user. */
  reset() {
    this.live.clear();
    this.clear();
  }

  clear() {
    this.list.replaceChildren();
    this.olderButton.hidden = true;
    this.page = 0;
    this.pages = 0;
    this.shown = new Set(); // ids of stored messages on screen
    this.awaitingReply = false; // the newest stored message is the user's
    this.oldest = null; // when the oldest of them was written (ms)
  }

  /** The newest page, replacing whatever the log shows. */
  async load() {
    const data = await this.api.get(`api/v1/chat/history?page=1&page_size=${PAGE_SIZE}`);
    this.clear();
    this.awaitingReply = data.messages[0]?.role === "user";
    this.page = data.page;
    this.pages = data.pages;
    this.prepend(data.messages);
    this.olderButton.hidden = this.page >= this.pages;
    this.scrollToBottom();
  }

  /** After replies were lost with the connection: the newest page, read again while the
   * newest message is the user's (its reply is being written), unless one streams here. */
  async loadAnswered() {
    for (let n = 0; n < ANSWER_TRIES; n++) {
      if (n) await new Promise((resolve) => setTimeout(resolve, ANSWER_POLL_MS));
      if (this.live.size) return; // a new reply is on screen: a reload would hide it
      await this.load();
      if (!this.awaitingReply) return;
    }
  }

  /** The next older page. Messages sent since the first load shift the pages, so a page
   * may repeat what is shown: those are skipped, and an all-repeat page reads on. */
  async older() {
    const before = this.list.firstElementChild;
    let added = 0;
    while (added === 0 && this.page < this.pages) {
      const next = this.page + 1;
      const data = await this.api.get(`api/v1/chat/history?page=${next}&page_size=${PAGE_SIZE}`);
      this.page = next;
      this.pages = data.pages;
      added = this.prepend(data.messages);
    }
    this.olderButton.hidden = this.page >= this.pages;
    if (before) before.scrollIntoView({ block: "start" });
  }

  prepend(newestFirst) {
    const fresh = newestFirst.filter(
      (m) => !this.shown.has(m.id) && (this.oldest === null || Date.parse(m.created_at) <= this.oldest),
    );
    const oldestFirst = fresh.reverse();
    const first = this.list.firstElementChild;
    for (const message of oldestFirst) {
      this.shown.add(message.id);
      this.list.insertBefore(this.stored(message), first);
    }
    if (oldestFirst.length) this.oldest = Date.parse(oldestFirst[0].created_at);
    return oldestFirst.length;
  }

  stored(message) {
    const item = bubble(message.role === "user" ? "you" : "coach");
    const body = item.querySelector(".body");
    if (message.role === "user") body.textContent = message.content;
    else renderMarkdown(body, message.content);
    if (message.incomplete) addNote(item, "This reply was cut off.");
    addMeta(item, this.formatTime(message.created_at));
    return item;
  }

  /** The user's message and, under it, the coach's reply to come (a ReplyView). */
  ask(text) {
    const mine = bubble("you");
    mine.querySelector(".body").textContent = text;
    const stick = this.atBottom();
    this.list.append(mine);
    const reply = new ReplyView(this);
    this.live.add(reply);
    this.list.append(reply.item);
    if (stick) this.scrollToBottom();
    return reply;
  }

  /** A line from the coach that answers no message (a welcome, a notice). */
  insertBefore(item, reference) {
    this.list.insertBefore(item, reference);
  }

  atBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

/** One reply as it arrives: text re-rendered at most once a frame while it streams. */
export class ReplyView {
  constructor(conversation) {
    this.conversation = conversation;
    this.text = "";
    this.item = bubble("coach");
    this.body = this.item.querySelector(".body");
    this.item.setAttribute("aria-busy", "true"); // read once, when complete
    const thinking = document.createElement("span");
    thinking.className = "thinking";
    thinking.textContent = THINKING;
    this.body.append(thinking);
    this.frame = 0;
    this.finished = false;
    this.cards = []; // proposals shown under this reply
  }

  /** A proposal from this reply: a card under it with Confirm and Decline, answered over
   * HTTP (POST api/v1/proposals/{id}/confirm|decline); the card then says what happened. */
  proposal({ id, text, summary }) {
    const card = bubble("coach");
    card.classList.add("proposal");
    card.querySelector(".body").textContent = text;
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.setAttribute("role", "group");
    actions.setAttribute("aria-label", `Proposal: ${summary}`);
    const answer = (confirm) => this.decide(id, confirm, actions);
    actions.append(
      button("Confirm", `Confirm: ${summary}`, () => answer(true)),
      button("Decline", `Decline: ${summary}`, () => answer(false)),
    );
    card.append(actions);
    (this.cards.at(-1) ?? this.item).after(card);
    this.cards.push(card);
  }

  async decide(id, confirm, actions) {
    for (const each of actions.querySelectorAll("button")) each.disabled = true;
    const path = `api/v1/proposals/${encodeURIComponent(id)}/${confirm ? "confirm" : "decline"}`;
    let said;
    try {
      said = (await this.conversation.api.post(path)).content;
    } catch (error) {
      said = error.detail ?? String(error);
    }
    const result = document.createElement("p");
    result.className = "decision";
    result.setAttribute("role", "status");
    result.textContent = said;
    actions.replaceWith(result);
    await this.conversation.onDecided();
  }

  welcome(text) {
    const item = bubble("coach");
    renderMarkdown(item.querySelector(".body"), text);
    this.conversation.insertBefore(item, this.item);
  }

  chunk(text) {
    if (this.finished) return;
    this.text += text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  done(text, incomplete = false) {
    this.text = text;
    this.finish();
    if (incomplete) addNote(this.item, "This reply was cut off.");
  }

  refused(text) {
    this.item.classList.add("notice");
    this.text = text;
    this.finish();
  }

  failed(text) {
    if (!this.text) this.item.classList.add("notice");
    this.finish(this.text ? undefined : text);
    if (this.text) addNote(this.item, text);
  }

  lost() {
    this.end();
    this.item.removeAttribute("aria-busy");
    if (!this.text) this.body.replaceChildren();
    addNote(this.item, LOST);
  }

  end() {
    this.conversation.live.delete(this);
    this.finished = true;
  }

  finish(plain) {
    this.end();
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (plain === undefined) this.paint();
    else this.body.textContent = plain;
    this.item.removeAttribute("aria-busy");
  }

  paint() {
    this.frame = 0;
    const stick = this.conversation.atBottom();
    renderMarkdown(this.body, this.text);
    if (stick) this.conversation.scrollToBottom();
  }
}

function bubble(who) {
  const item = document.createElement("li");
  item.className = `message ${who}`;
  const speaker = document.createElement("span");
  speaker.className = "visually-hidden";
  speaker.textContent = who === "you" ? "You:" : "Coach:";
  const body = document.createElement("div");
  body.className = "body";
  item.append(speaker, body);
  return item;
}

function button(label, ariaLabel, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.setAttribute("aria-label", ariaLabel);
  element.addEventListener("click", onClick);
  return element;
}

function addNote(item, text) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = text;
  item.append(note);
}

function addMeta(item, text) {
  if (!text) return;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = text;
  item.append(meta);
}
