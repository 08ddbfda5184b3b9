// The side of the chat: whether the coach is reachable now (and when the window opens),
// goals, meetings, and linking another account. Each shows the API's `detail` on failure.

import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);

/** Run `work`; an ApiError's detail goes, as plain text, into the element `errorId`. */
export async function showingErrors(errorId, work) {
  const place = $(errorId);
  place.textContent = "";
  try {
    return await work();
  } catch (error) {
    if (!error || error.detail === undefined) throw error;
    place.textContent = error.detail;
    return undefined;
  }
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "quiet";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function itemWithActions(text, actions) {
  const li = document.createElement("li");
  const words = document.createElement("span");
  words.textContent = text;
  const box = document.createElement("span");
  box.className = "actions";
  box.append(...actions);
  li.append(words, box);
  return li;
}

/** Submit handler for a one-field form: `act(value)`; if it worked, the field is cleared
 * (unless the user has typed something else meanwhile). */
function onSubmit(formId, inputId, errorId, act) {
  $(formId).addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $(inputId);
    const typed = input.value;
    if (!typed.trim()) return;
    const done = await showingErrors(errorId, () => act(typed.trim()));
    if (done !== undefined && input.value === typed) input.value = "";
  });
}

export class Access {
  constructor(api) {
    this.api = api;
    this.phase = null;
    this.seen = null;
    $("phase").addEventListener("click", () => this.switchPhase());
  }

  async load() {
    await showingErrors("access-error", async () => this.show(await this.api.get("api/v1/chat/access")));
  }

  /** Show an access view: from GET /chat/access, a refusal, or a cancellation. */
  show(view) {
    const seen = JSON.stringify(view);
    if (seen === this.seen) return; // unchanged: the live region stays quiet
    this.seen = seen;
    this.phase = view.phase;
    $("access").classList.toggle("closed", !view.reachable);
    $("access-headline").textContent = view.reachable
      ? "Your coach is reachable now."
      : "Your coach is not reachable now.";
    renderMarkdown($("access-text"), view.text || "");
    const next = $("access-next");
    const opening = view.phase === "tracking" && view.next_opening; // goal setting: any time
    next.hidden = !opening;
    next.textContent = opening ? `Next window opens: ${opening.local}` : "";
    const phase = $("phase");
    phase.hidden = false;
    phase.textContent = view.phase === "tracking" ? "Back to goal setting" : "Start tracking";
  }

  reset() {
    this.seen = null;
    this.phase = null;
    for (const id of ["access-headline", "access-text", "access-next", "access-error"]) {
      $(id).replaceChildren();
    }
    $("phase").hidden = true;
  }

  async switchPhase() {
    const phase = this.phase === "tracking" ? "goal_setting" : "tracking";
    await showingErrors("access-error", async () => {
      this.show(await this.api.put("api/v1/phase", { phase }));
      return true;
    });
  }
}

/** `Last: Mon 23 Nov 2026, 18:00 (Asia/Tokyo): ran 3 km · 3 weeks in a row`, or "". */
export function progressText(goal) {
  const last = goal.last_progress;
  if (!last) return "";
  const weeks = goal.streak_weeks;
  const streak = weeks
    ? `${weeks} ${weeks === 1 ? "week" : "weeks"} in a row`
    : "no streak: nothing this week or last";
  return `Last: ${last.at.local}: ${last.text} · ${streak}`;
}

export class Goals {
  constructor(api) {
    this.api = api;
    onSubmit("goal-form", "goal-text", "goals-error", async (text) => {
      await this.api.post("api/v1/goals", { text });
      await this.load();
      return true;
    });
    onSubmit("progress-form", "progress-text", "goals-error", async (text) => {
      const number = $("progress-goal").value;
      await this.api.post(`api/v1/goals/${number}/progress`, { text });
      await this.load();
      $("progress-goal").value = number; // the same goal stays picked for the next entry
      return true;
    });
  }

  async load() {
    await showingErrors("goals-error", async () => {
      const { goals } = await this.api.get("api/v1/goals");
      $("goals").replaceChildren(...goals.map((goal) => this.item(goal)));
      $("goals-empty").hidden = goals.length > 0;
      this.showPicker(goals);
    });
  }

  /** The progress form's goal picker: one option per active goal, the form hidden without. */
  showPicker(goals) {
    const picker = $("progress-goal");
    const picked = picker.value;
    picker.replaceChildren(...goals.map((goal) => {
      const option = document.createElement("option");
      option.value = String(goal.number);
      option.textContent = `${goal.number}. ${goal.text}`;
      return option;
    }));
    if (goals.some((goal) => String(goal.number) === picked)) picker.value = picked;
    $("progress-form").hidden = goals.length === 0;
  }

  item(goal) {
    const close = (how) => showingErrors("goals-error", async () => {
      await this.api.post(`api/v1/goals/${goal.number}/${how}`);
      await this.load();
      return true;
    });
    const li = itemWithActions(goal.text, [
      // Each name starts with the button's visible word, then says which goal.
      button("Done", `Done: goal ${goal.number}, ${goal.text}`, () => close("done")),
      button("Drop", `Drop: goal ${goal.number}, ${goal.text}`, () => close("drop")),
    ]);
    const progress = progressText(goal);
    if (progress) {
      const line = document.createElement("span");
      line.className = "progress";
      line.textContent = progress; // the user's words as text, never as HTML
      li.append(line);
    }
    return li;
  }
}

export class Meetings {
  /** `onChange()`: after a booking or a cancellation (the access may have changed). */
  constructor(api, onChange) {
    this.api = api;
    this.onChange = onChange;
    onSubmit("meeting-form", "meeting-when", "meetings-error", async (when) => {
      await this.api.post("api/v1/meetings", { when });
      await this.changed();
      return true;
    });
  }

  async load() {
    await showingErrors("meetings-error", async () => {
      const { meetings } = await this.api.get("api/v1/meetings");
      $("meetings").replaceChildren(...meetings.map((meeting) => this.item(meeting)));
      $("meetings-empty").hidden = meetings.length > 0;
    });
  }

  async changed() {
    await Promise.all([this.load(), this.onChange()]);
  }

  item(meeting) {
    const cancel = (series) => showingErrors("meetings-error", async () => {
      await this.api.delete(`api/v1/meetings/${meeting.number}${series ? "?series=true" : ""}`);
      await this.changed();
      return true;
    });
    const which = `meeting ${meeting.number}, ${meeting.text}`;
    const actions = [button("Cancel", `Cancel: ${which}`, () => cancel(false))];
    if (meeting.weekly) {
      actions.push(button("Cancel series", `Cancel series: ${which}`, () => cancel(true)));
    }
    return itemWithActions(meeting.text, actions);
  }
}

export class Linking {
  /** `onLinked()`: this token now names the joined user, whose data all changed. */
  constructor(api, onLinked) {
    this.api = api;
    $("link-code").addEventListener("click", () => this.code());
    onSubmit("link-form", "link-input", "link-error", async (code) => {
      const linked = await this.api.post("api/v1/link", { code });
      const names = linked.identities.map((i) => `${i.platform} ${i.id}`).join(", ");
      $("link-done").textContent = `Linked: ${names}.`;
      await onLinked();
      return true;
    });
  }

  async code() {
    await showingErrors("link-error", async () => {
      const { code, minutes } = await this.api.post("api/v1/link/code");
      $("link-code-text").textContent =
        `On Slack or Discord, type /coach link ${code} within ${minutes} minutes.`;
      return true;
    });
  }

  reset() {
    $("link-code-text").textContent = "";
    $("link-done").textContent = "";
  }
}
