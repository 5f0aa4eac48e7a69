// Moderation as the page shows it: the tools on a message (Edit, Delete),
// editing in place, the in-page confirm before a delete, the "(edited)"
// label and the tombstone of a deleted message; a ban in words; slow mode's
// note and countdown by the message box.
//
// These build and change elements only. chat.js decides who may do what,
// talks to the server, and calls back in here with the outcome. Text is
// always set as text, never as markup.

import { enterSubmits, fitToText } from "./composer.js";
import { localTime } from "./times.js";

export const DELETED_TEXT = "message deleted";

// The tools and panels (editor, confirm) an entry may hold: direct children.
const TOOLS = ":scope > .tools";
const PANEL = ":scope > .editor, :scope > .confirm";

/**
 * Show the tools a person may use on a message's entry: Edit when `edit`,
 * Delete when `remove`; neither, no tools at all. Buttons that stay keep
 * their focus.
 */
export function setTools(entry, { edit, remove }) {
  let tools = entry.querySelector(TOOLS);
  const wanted = [edit && "edit-message", remove && "delete-message"].filter(Boolean);
  if (!wanted.length) {
    tools?.remove();
    return;
  }
  if (!tools) {
    tools = document.createElement("div");
    tools.className = "tools";
    tools.setAttribute("role", "group");
    tools.setAttribute("aria-label", "Message actions");
    entry.append(tools);
  }
  const shown = Array.from(tools.children, (button) => button.dataset.action);
  if (shown.join() !== wanted.join()) tools.replaceChildren(...wanted.map(toolButton));
}

function toolButton(action) {
  const edit = action === "edit-message";
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = edit ? "Edit" : "Delete";
  // The visible word first, so that speech input finds the button by it.
  button.setAttribute("aria-label", edit ? "Edit message" : "Delete message");
  return button;
}

/** The entry's tool button for `action`, if it has one. */
export function toolOf(entry, action) {
  return entry.querySelector(`${TOOLS} button[data-action="${action}"]`);
}

/**
 * On a touch screen there is no hover: a tap on a message shows its tools
 * (and hides those of the message tapped before). A tap on a link or a
 * control, or a tap that ends a selection, does nothing more.
 */
export function revealToolsOnTap(room) {
  const touch = window.matchMedia("(hover: none)");
  room.addEventListener("click", (event) => {
    if (!touch.matches) return; // a mouse shows them on hover
    if (event.target.closest("a, button, textarea, input, .editor, .confirm")) return;
    if (!window.getSelection().isCollapsed) return;
    const entry = event.target.closest(".entry");
    for (const other of room.querySelectorAll(".entry.show-tools")) {
      if (other !== entry) other.classList.remove("show-tools");
    }
    if (entry && entry.querySelector(TOOLS)) entry.classList.toggle("show-tools");
  });
}

/** Mark an entry edited, at `editedAt` (ISO): "(edited)", its time as a tooltip. */
export function showEdited(entry, editedAt) {
  entry.dataset.editedAt = editedAt;
  let label = entry.querySelector(":scope > .edited");
  if (!label) {
    label = document.createElement("span");
    label.className = "edited";
    label.textContent = "(edited)";
    entry.querySelector(":scope > .message").after(label);
  }
  const when = localTime(editedAt).long;
  label.title = when ? `Edited ${when}` : "Edited";
}

/**
 * Turn an entry into the tombstone of a deleted message, in its place (on
 * its side of the log too): "message deleted" and the time it was posted;
 * no text, no author, no tools. The caller regroups it with its neighbours.
 */
export function showDeleted(entry) {
  closePanel(entry);
  const header = entry.querySelector(":scope > header");
  const time = header.querySelector("time");
  header.replaceChildren(...(time ? [time] : []));
  for (const child of Array.from(entry.children)) {
    if (child !== header) child.remove();
  }
  const note = document.createElement("p");
  note.className = "tombstone";
  note.textContent = DELETED_TEXT;
  entry.append(note);
  entry.classList.add("deleted");
  entry.classList.remove("mentions-me", "show-tools");
  entry.dataset.author = "";
  delete entry.dataset.userId;
  delete entry.dataset.editedAt;
}

/**
 * Edit `entry`'s text in place: a box holding `text`, where Enter saves
 * (`save(newText)`), Shift+Enter starts a new line and Escape cancels
 * (`cancel()`). The caller closes it (closePanel) or says why not
 * (panelRefused).
 */
export function openEditor(entry, text, { save, cancel, maxLength }) {
  const form = panelElement("form", "editor", cancel);
  const box = document.createElement("textarea");
  box.value = text;
  box.rows = 1;
  box.dir = "auto";
  box.maxLength = maxLength;
  box.enterKeyHint = "done";
  box.setAttribute("aria-label", "Edit message");
  const hint = document.createElement("span");
  hint.className = "hint";
  hint.textContent = "Enter saves · Esc cancels";
  form.append(box, reasonElement(), buttons(hint, ["Save", "submit"], ["Cancel", cancel]));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(box.value);
  });
  openPanel(entry, form, "editing");
  enterSubmits(form, box);
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
  fitToText(box);
  return form;
}

/**
 * Ask in the entry itself whether to delete it: `question`, then Delete
 * (`confirm()`) or Cancel (`cancel()`, also Escape). Cancel has the focus:
 * a stray Enter deletes nothing.
 */
export function askToDelete(entry, question, { confirm, cancel }) {
  const panel = panelElement("div", "confirm", cancel);
  panel.setAttribute("role", "group");
  panel.setAttribute("aria-label", "Delete message");
  const words = document.createElement("p");
  words.className = "question";
  words.textContent = question;
  const row = buttons(null, ["Delete", confirm], ["Cancel", cancel]);
  panel.append(words, reasonElement(), row);
  openPanel(entry, panel, "confirming");
  row.lastElementChild.focus();
  return panel;
}

function panelElement(tag, className, cancel) {
  const panel = document.createElement(tag);
  panel.className = className;
  panel.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return;
    event.preventDefault();
    event.stopPropagation();
    cancel();
  });
  return panel;
}

function openPanel(entry, panel, state) {
  closePanel(entry);
  entry.classList.add(state);
  entry.append(panel);
}

function reasonElement() {
  const reason = document.createElement("p");
  reason.className = "reason";
  reason.setAttribute("role", "alert");
  reason.hidden = true;
  return reason;
}

// A row of buttons after an optional hint: [label, "submit" or a callback].
function buttons(hint, ...specs) {
  const row = document.createElement("div");
  row.className = "panel-actions";
  if (hint) row.append(hint);
  for (const [label, action] of specs) {
    const button = document.createElement("button");
    button.textContent = label;
    if (action === "submit") {
      button.type = "submit";
    } else {
      button.type = "button";
      button.addEventListener("click", action);
    }
    if (label === "Cancel") button.className = "secondary";
    if (label === "Delete") button.className = "danger";
    row.append(button);
  }
  return row;
}

/** Whether the entry has an editor or a confirm open. */
export function panelOpen(entry) {
  return entry.querySelector(PANEL) !== null;
}

/** Close the entry's editor or confirm, if one is open. */
export function closePanel(entry) {
  for (const panel of entry.querySelectorAll(PANEL)) panel.remove();
  entry.classList.remove("editing", "confirming");
}

/** While the server is asked, the panel's buttons wait. */
export function panelBusy(entry, busy) {
  const panelButtons = ":scope > .editor button, :scope > .confirm button";
  for (const button of entry.querySelectorAll(panelButtons)) button.disabled = busy;
}

/** Say in the open panel why it did not work; it stays open. */
export function panelRefused(entry, text) {
  const reason = entry.querySelector(":scope > .editor .reason, :scope > .confirm .reason");
  if (!reason) return;
  reason.textContent = text;
  reason.hidden = false;
}

/**
 * A ban in words, from the server's refusal (`{code, message, until,
 * reason}`, `until` null for good): `{title, reason, until}`, the end in
 * this person's local time, `until` a Date or null.
 */
export function banWords(refusal) {
  if (refusal && "until" in refusal) {
    const until = refusal.until ? new Date(refusal.until) : null;
    const known = until && !Number.isNaN(until.getTime());
    const end = refusal.until ? `until ${known ? localTime(refusal.until).long : refusal.until}` : "for good";
    return {
      title: `You are banned from this chat ${end}.`,
      reason: refusal.reason ? `Reason: ${refusal.reason}` : "",
      until: known ? until : null,
    };
  }
  // A refusal in words only (from a server before `until` and `reason`).
  const message = refusal?.message;
  const found = /^you are banned (for good|until (\S+?))(?:: ([\s\S]*))?$/.exec(message || "");
  if (!found) {
    return { title: "You are banned from this chat.", reason: message || "", until: null };
  }
  const until = found[2] ? new Date(found[2]) : null;
  const known = until && !Number.isNaN(until.getTime());
  const end = found[2] ? `until ${known ? localTime(found[2]).long : found[2]}` : "for good";
  return {
    title: `You are banned from this chat ${end}.`,
    reason: found[3] ? `Reason: ${found[3]}` : "",
    until: known ? until : null,
  };
}

/**
 * Slow mode's line by the message box: the channel's pace while slow mode
 * is on, and while this person has to wait before sending again, a
 * countdown of the seconds left.
 */
export class SlowModeLine {
  constructor(element) {
    this.element = element;
    this.seconds = 0; // the channel's pace; 0 off, null on at a pace not told
    this.exempt = false; // moderators: never slowed
    this.until = 0; // ms since the epoch: when this person may send again
    this.timer = 0;
  }

  /** The channel's slow mode, in seconds (0: off), and whether we are exempt. */
  set(seconds, exempt) {
    this.seconds = seconds;
    this.exempt = exempt;
    if (!seconds || exempt) this.until = 0;
    this.render();
  }

  /** Slow mode is on, at a pace the server did not say: as a refusal tells. */
  on() {
    if (!this.seconds) this.seconds = null;
    this.render();
  }

  /** This person may send again in `seconds`: count them down. */
  wait(seconds) {
    if (this.exempt) return;
    this.until = Date.now() + seconds * 1000;
    this.render();
  }

  render() {
    clearTimeout(this.timer);
    const left = this.until - Date.now();
    const line = this.element;
    line.classList.toggle("waiting", left > 0);
    if (left > 0) {
      line.textContent = `Slow mode: you can send again in ${Math.ceil(left / 1000)} s`;
      // Again when the whole seconds left change.
      this.timer = setTimeout(() => this.render(), left % 1000 || 1000);
    } else if (this.seconds !== 0) {
      const pace = this.seconds ? `: one message every ${this.seconds} s` : "";
      line.textContent =
        `This channel is in slow mode${pace}` + (this.exempt ? " (moderators are exempt)." : ".");
    }
    line.hidden = left <= 0 && this.seconds === 0;
  }
}
