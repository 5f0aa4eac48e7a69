// The channel page: joins its channel over Socket.IO, shows every `message`
// as text (links and @mentions marked), sends the box's text as
// `send_message`, shows who is here and who is typing, and catches up with
// `since` after every reconnect.
//
// Nothing typed is lost: a sent message is kept in localStorage as pending,
// shown at the bottom of the log, and re-sent with the same client_id after
// every (re)connect until the server acks it, which it does once however
// often it is sent. Refused ones stay on screen until retried or discarded.
//
// On a site that signs people in (settings.tokenUrl), the page speaks for
// the person its token names: it connects only with a token, never as a
// guest, renews the token before it expires, shows the token's name as
// fixed, and marks the messages of every verified author. Without a token
// URL it is a guest page, with a name of the person's choosing.
//
// Moderation: a verified author edits (within the edit window) and deletes
// their own messages, a moderator deletes anyone's, and every member sees
// the change in place. A ban is shown with its reason and end, and the page
// stays disconnected; slow mode holds a message back and sends it once the
// wait, counted down by the message box, is over.
//
// Settings come from the page's JSON block (#chatSettings), rendered by the
// server: the channel, its retention, the edit window, and where the API,
// the socket and the host site's token live.
import { messageBox, fitToText } from "./composer.js";
import { SignedOut, SiteToken, verifiedBadge } from "./identity.js";
import {
  SlowModeLine,
  askToDelete,
  banWords,
  closePanel,
  openEditor,
  panelBusy,
  panelOpen,
  panelRefused,
  revealToolsOnTap,
  setTools,
  showDeleted,
  showEdited,
  toolOf,
} from "./moderation.js";
import { randomId, readStored, readText, storedList, writeStored, writeText } from "./storage.js";
import { renderText } from "./text.js";
import { localTime } from "./times.js";

const settings = JSON.parse(document.getElementById("chatSettings").textContent);
const { channel, historyLimit } = settings;

// How often to tell others we are still typing: the server passes one
// notice per interval, and the first after a sent message at once.
const TYPING_EVERY_MS = Math.max(settings.typingIntervalMs, 250);
const TYPING_SHOWN_MS = Math.max(4000, 2 * TYPING_EVERY_MS + 1000); // without news
const NEAR_BOTTOM_PX = 48;
const SEND_TIMEOUT_MS = 15000; // no ack by then: send again (client_id makes it safe)
const RETRY_MS = 3000; // wait after a transient refusal before trying again
const OWN_KEPT = 500; // client_ids of own messages remembered across reloads
const GROUPED_WITHIN_MS = 5 * 60 * 1000; // one name line for a run of messages
const TRANSIENT = new Set(["unavailable", "rate_limited"]); // worth retrying as is
const TOKEN_REFUSED = new Set(["invalid_token", "token_expired"]); // a new token may do
const LONGEST_WAIT_MS = 30000; // between two tries when the site or its tokens keep failing
const EDIT_WINDOW_MS = settings.editWindowSeconds * 1000; // after posting, its author may edit
const KICKED_WAIT_MS = 5000; // an operator disconnected us: back after this
const BAN_END_AT_LEAST_MS = 30000; // a ban's end by our clock: try no sooner than this
const LONGEST_TIMER_MS = 2 ** 31 - 1; // setTimeout's limit (24.8 days)
const PERSON = /^[A-Za-z0-9_-]{1,64}$/;

const KEYS = {
  pending: `chat.pending.${channel}`,
  draft: `chat.draft.${channel}`,
  own: "chat.own",
  name: "chat.name", // the last name the server accepted
  person: "chat.person", // this browser's person key, for presence
  notify: "chat.notify", // "on": notify of mentions while the tab is hidden
};

const main = document.querySelector("main.chat");
const header = document.getElementById("chatHeader");
const headerToggle = document.getElementById("headerToggle");
const room = document.querySelector(".chat-room");
const composer = document.querySelector("form.composer");
const input = document.getElementById("messageInput");
const connection = document.getElementById("connection");
const offlineBanner = document.getElementById("offlineBanner");
const presenceLine = document.getElementById("presence");
const typingLine = document.getElementById("typing");
const errorBox = document.getElementById("chatError");
const jumpButton = document.getElementById("jumpToLatest");
const emptyHint = document.getElementById("emptyHint");
const switcher = document.getElementById("channelSwitcher");
const nameForm = document.querySelector("form.name-form");
const nameInput = document.getElementById("nameInput");
const nameError = document.getElementById("nameError");
const notifyButton = document.getElementById("notifyMentions");
const notifyNote = document.getElementById("notifyNote");
const signedInLine = document.getElementById("signedIn");
const signedInName = document.getElementById("signedInName");
const sendButton = composer.querySelector("button[type=submit]");
const banBanner = document.getElementById("banBanner");
const slowLine = new SlowModeLine(document.getElementById("slowMode"));
const typedHere = input.placeholder;
const baseTitle = document.title;

let lastSeq = 0; // the highest seq shown; sent as `since` on reconnect
let lastChange = null; // the channel's last edit or delete as of the last join
let joined = false; // joined on this connection: sending is allowed
let caughtUp = false; // the first join's history is in: what comes now is news
let myName = readText(KEYS.name); // the name others see (the server's guest name without one)
let proposedName = null; // typed in the name field, not yet accepted by the server
let person = personKey();
// With a token URL: the host site's token for this person (null: a guest page).
const siteToken = settings.tokenUrl ? new SiteToken(settings.tokenUrl) : null;
let myUserId = null; // a verified person's id (the token's sub); null for a guest
let tokenTrouble = 0; // tries in a row without a token the server took: the wait grows
let refreshTrouble = 0; // renewals in a row the site did not answer
let refreshTimer = 0;
let renewOnClose = false; // the server closes this connection over its token: come back
let denied = false; // the server refused us this (private) channel
let moderator = false; // the token says role "moderator": may delete any message
let banned = false; // the server refused us for a ban: stay away until it ends
let kicked = false; // an operator closed this connection: come back in a while
let slowMode = 0; // the channel's slow mode (seconds) as the join told
let present = []; // names of the channel's members, for @mentions
const myIds = new Set(); // ids of messages this page sent
const ownClientIds = new Set(); // client_ids this browser created
const typists = new Map(); // author -> time their notice expires
let lastTypingSent = 0;
let unread = 0;
let unreadMentions = 0;
let missed = 0; // messages below the fold while reading older ones
let joinTimer = 0;
let reconnectTimer = 0;
let focusInBox = false; // where the person was typing, to return there
const messageTexts = new WeakMap(); // .message element -> the message's text
const editExpiry = new WeakMap(); // entry -> the timer that hides its Edit once too late

// Messages typed here and not yet shown as delivered, oldest first:
// {clientId, message, failed, id, seq, entry}. `failed` is a permanent
// refusal {code, message}; `id` and `seq` come with the ack (stored).
let outbox = [];
let sending = null; // the record whose send awaits its ack
let retryTimer = 0;

const keptLine = document.createElement("p");
keptLine.className = "kept-line";
keptLine.textContent =
  `Messages above this line are no longer kept: this channel keeps its newest ${historyLimit}, ` +
  "so a reload will not show them.";

nameInput.value = myName;
signedInName.after(verifiedBadge());

// `io` comes from the socket.io client's own script, loaded before this module.
const socket = io({
  path: settings.socketPath,
  autoConnect: !siteToken, // a verified person's page connects once it has a token
  auth: siteToken ? verifiedAuth : guestAuth,
});

// Asked on every (re)connect: the last accepted name, and the person key.
function guestAuth(send) {
  send(myName ? { name: myName, person } : { person });
}

// Asked on every (re)connect: a token good for a while yet (a new one when
// the held one is due for renewal), and never a name: the token's is used.
function verifiedAuth(send) {
  siteToken.current().then(
    (held) => {
      signedIn(held);
      send({ token: held.token, person });
    },
    (error) => {
      socket.disconnect(); // no token, no connection: never a guest's
      tokenUnavailable(error);
    }
  );
}

// A random key for the person using this browser: all their tabs send it,
// so presence counts them once.
function personKey() {
  const stored = readText(KEYS.person);
  if (PERSON.test(stored)) return stored;
  const fresh = randomId();
  writeText(KEYS.person, fresh);
  return fresh;
}

// Own messages: those whose client_id this browser made, kept for the
// last OWN_KEPT so they stay set apart after a reload and in other tabs.

function rememberOwn(clientId) {
  ownClientIds.add(clientId);
  const kept = storedList(KEYS.own).filter((id) => id !== clientId);
  kept.push(clientId);
  writeStored(KEYS.own, kept.slice(-OWN_KEPT));
}

function loadOwn() {
  for (const id of storedList(KEYS.own)) ownClientIds.add(id);
}

// A verified person's messages are theirs from any browser (by user_id); a
// guest's are those this browser sent, and never a verified author's.
function isOwn(data) {
  if (myUserId) return data.user_id === myUserId;
  if (data.user_id != null) return false;
  return sentHere(data);
}

function sentHere(data) {
  return myIds.has(data.id) || (data.client_id != null && ownClientIds.has(data.client_id));
}

// Another tab of this browser may have sent messages or changed the name
// (a guest's: a verified person's name is their token's).
window.addEventListener("storage", (event) => {
  if (event.key === KEYS.own) {
    loadOwn();
    for (const entry of room.querySelectorAll(".entry:not(.pending):not(.deleted)")) {
      const { clientId, userId } = entry.dataset;
      if (isOwn({ client_id: clientId ?? null, user_id: userId ?? null })) markOwn(entry);
    }
  } else if (
    !siteToken &&
    event.key === KEYS.name &&
    event.newValue &&
    event.newValue !== myName
  ) {
    proposedName = event.newValue;
    if (joined) join();
  }
});

// Connection state. Sending stays possible offline: messages wait as pending.
// Signed out, or refused the channel, nobody here is shown either.

const NOBODY_SHOWN = {
  offline: "Offline: who is here shows again once you are back.",
  "signed-out": "Who is here shows once you are signed in.",
  denied: "\u00a0",
  banned: "\u00a0",
};

function setConnection(state, label) {
  connection.dataset.state = state;
  connection.textContent = label;
  main.dataset.connection = state;
  offlineBanner.hidden = state !== "offline";
  if (state in NOBODY_SHOWN) presenceLine.textContent = NOBODY_SHOWN[state];
}

function showError(text) {
  errorBox.textContent = text || "";
  errorBox.hidden = !text;
}

socket.on("connect", () => {
  clearTimeout(reconnectTimer);
  tokenTrouble = 0;
  renewOnClose = false;
  kicked = false;
  if (banned) banEnded();
  setConnection("online", "Online");
  join();
});

socket.on("disconnect", (reason) => {
  if (!banned) setConnection("offline", "Offline, reconnecting…");
  joined = false;
  sending = null; // its ack will never come; re-sent after the next join
  clearTimeout(retryTimer);
  retryTimer = 0;
  clearTimeout(joinTimer);
  typists.clear();
  renderTyping();
  // The server closed it over the token (expired, or a renewal refused),
  // or an operator did: socket.io-client does not come back by itself from
  // a server's close. A ban's close is for good (until the ban ends).
  if (reason !== "io server disconnect" || banned) return;
  if (renewOnClose) connectLater(0);
  else if (kicked) connectLater(KICKED_WAIT_MS);
});

// Connect now; a verified person's page once it has a token (asked first).
function connectNow() {
  if (!siteToken) {
    socket.connect();
    return;
  }
  siteToken.current().then(() => socket.connect(), tokenUnavailable);
}

function connectLater(delay) {
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connectNow, delay);
}

// 1 s, 2 s, 4 s ... up to LONGEST_WAIT_MS, after the nth failure in a row.
function backoff(failures) {
  return Math.min(LONGEST_WAIT_MS, 1000 * 2 ** Math.max(failures - 1, 0));
}

// A network failure: the client retries by itself. A refusal by the server
// ({code, message} as data): the client stops, so fix what we can and try
// again, at once for a refused name (connecting without it) or token (with
// a new one).
socket.on("connect_error", (error) => {
  const refusal = error.data;
  if (refusal && refusal.code === "unauthorized") {
    signInNeeded();
    return;
  }
  if (refusal && refusal.code === "banned") {
    showBanned(refusal);
    return;
  }
  setConnection("offline", "Offline, reconnecting…");
  if (siteToken && refusal && TOKEN_REFUSED.has(refusal.code)) {
    tokenRefused(refusal);
    return;
  }
  if (refusal && refusal.code === "invalid_name") {
    nameRefused(refusal.message, { forget: true });
  } else if (refusal && refusal.code === "invalid_person") {
    writeText(KEYS.person, null);
    person = personKey();
  } else if (refusal) {
    showError(refusal.message);
  } else {
    console.info("Channel Chat: cannot connect yet:", error.message);
  }
  if (!socket.active) {
    connectLater(refusal && refusal.code.startsWith("invalid_") ? 0 : RETRY_MS);
  }
});

// Verified people: the token from the host site, kept current.

// The token names the person: theirs is a fixed name, not the name form's,
// and their messages are theirs by user_id; it may make them a moderator.
// Renewed before it expires.
function signedIn(held) {
  showVerified(held.claims.name || held.claims.sub, held.claims.sub);
  setModerator(held.claims.role === "moderator");
  scheduleRefresh(held);
}

function setModerator(isModerator) {
  if (isModerator === moderator) return;
  moderator = isModerator;
  slowLine.set(slowMode, moderator);
  updateAllTools();
}

function showVerified(name, userId) {
  if (myUserId && userId !== myUserId) {
    // Someone else signed in on this browser: start over as them.
    window.location.reload();
    return;
  }
  if (!myUserId) {
    myUserId = userId;
    updateAllTools();
  }
  nameForm.hidden = true;
  signedInName.textContent = name;
  signedInLine.hidden = false;
  setMyName(name);
}

// No token: nobody is signed in at the site (say so, and wait for them), or
// the site could not say (try again, later each time).
function tokenUnavailable(error) {
  if (error instanceof SignedOut) {
    signInNeeded();
    return;
  }
  console.warn("Channel Chat: no token from the site:", error.message);
  tokenTrouble += 1;
  setConnection("offline", "Cannot check your sign-in; retrying…");
  connectLater(backoff(tokenTrouble));
}

// The server refused the token (it expired on the way, or it is not one the
// server takes): a new one at once, then later each time it is refused again.
function tokenRefused(refusal) {
  console.warn("Channel Chat: the server refused the token:", refusal.message);
  siteToken.forget();
  clearTimeout(refreshTimer); // nothing to renew: the next connect gets a new one
  tokenTrouble += 1;
  if (tokenTrouble >= 3) showError(`Your sign-in was not accepted: ${refusal.message}`);
  connectLater(tokenTrouble === 1 ? 0 : backoff(tokenTrouble - 1));
}

// Stay disconnected: a guest may not join this chat, or this page connects
// only with a token. Back on the tab after signing in, it tries again.
function signInNeeded() {
  clearTimeout(reconnectTimer);
  clearTimeout(refreshTimer);
  setConnection("signed-out", "Sign in to chat");
  showError(
    siteToken
      ? "You are not signed in. Sign in on the site, then come back here: the chat connects by itself."
      : "Only people signed in at the site may use this chat."
  );
}

window.addEventListener("focus", () => {
  if (siteToken && connection.dataset.state === "signed-out") connectNow();
});

// Renewal: a new token before the held one expires, handed to the server
// on this connection (`refresh`), or on the next connect.
function scheduleRefresh(held) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshToken, held.renewAt - Date.now());
}

async function refreshToken() {
  let held;
  try {
    held = await siteToken.renew();
  } catch (error) {
    // Signed out meanwhile: this connection lasts until its token expires,
    // and the reconnect after that says so. Otherwise try again shortly.
    console.warn("Channel Chat: could not renew the token:", error.message);
    refreshTrouble += 1;
    if (!(error instanceof SignedOut)) {
      refreshTimer = setTimeout(refreshToken, backoff(refreshTrouble));
    }
    return;
  }
  refreshTrouble = 0;
  signedIn(held);
  if (socket.connected) sendRefresh(held);
}

function sendRefresh(held) {
  socket.timeout(SEND_TIMEOUT_MS).emit("refresh", { token: held.token }, (error, ack) => {
    if (error) {
      // No ack in time: again. Disconnected: the next connect sends it.
      if (socket.connected) retryRefresh(held, RETRY_MS);
    } else if (ack.ok) {
      refreshed(ack);
    } else if (TOKEN_REFUSED.has(ack.code)) {
      tokenEnded(); // the server closes the connection; the reconnect gets a new one
    } else {
      retryRefresh(held, retryDelay(ack));
    }
  });
}

function retryRefresh(held, delay) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (socket.connected) sendRefresh(held);
  }, delay);
}

// The new token may no longer open this channel: the server has taken us
// out of it (`left`).
function refreshed(ack) {
  if (Array.isArray(ack.left) && ack.left.includes(channel)) {
    joined = false;
    accessDenied(`You no longer have access to #${channel}.`);
  }
}

// The server is ending this connection over its token: the reconnect that
// follows asks the site for a new one.
function tokenEnded() {
  siteToken?.forget();
  clearTimeout(refreshTimer);
  renewOnClose = true;
}

// A private channel this person's token does not open: say so, and stay
// out (joining again would be refused again) until the next connection.
function accessDenied(message) {
  denied = true;
  clearTimeout(joinTimer);
  setConnection("denied", "No access");
  showError(message);
  updateComposer();
}

// Nothing can be sent while the channel is refused us or we are banned.
function updateComposer() {
  const refused = denied || banned;
  input.disabled = refused;
  sendButton.disabled = refused;
  input.placeholder = banned ? "You cannot send messages while you are banned" : typedHere;
}

// Banned: the server says why and until when (in its refusal, or in
// `chat_error` before it closes the connection). Say so plainly, with the
// end in local time, and stay disconnected; once the ban is over by this
// browser's clock, try once more.
function showBanned(refusal) {
  banned = true;
  for (const timer of [reconnectTimer, refreshTimer, retryTimer, joinTimer]) clearTimeout(timer);
  retryTimer = 0;
  const ban = banWords(refusal);
  const title = document.createElement("strong");
  title.textContent = ban.title;
  const lines = [title];
  if (ban.reason) lines.push(document.createElement("br"), ban.reason);
  if (ban.until) {
    lines.push(document.createElement("br"), "This page reconnects by itself once it ends.");
  }
  banBanner.replaceChildren(...lines);
  banBanner.hidden = false;
  setConnection("banned", "Banned");
  showError("");
  updateComposer();
  showEmptyHint();
  for (const entry of room.querySelectorAll(".entry.editing, .entry.confirming")) closePanel(entry);
  if (socket.connected) socket.disconnect();
  const wait = ban.until ? Math.max(ban.until - Date.now() + 2000, BAN_END_AT_LEAST_MS) : Infinity;
  if (wait <= LONGEST_TIMER_MS) connectLater(wait);
}

function banEnded() {
  banned = false;
  banBanner.hidden = true;
  updateComposer();
  showEmptyHint();
}

// Joining and catching up. A name typed in the header goes with the join,
// and becomes the page's name only once the server accepts it. A verified
// person sends none: theirs is the token's (user_id in the ack).

function join() {
  const payload = { channel };
  if (lastSeq) payload.since = lastSeq;
  // The edits and deletes of what we show, made while we were away, come
  // as message_edited and message_deleted before the ack.
  if (lastSeq && lastChange !== null) payload.changes_since = lastChange;
  const name = proposedName;
  if (name) payload.name = name;
  socket.emit("join", payload, (ack) => {
    if (!ack.ok) return joinRefused(ack, name);
    joined = true;
    showError("");
    if (denied) {
      denied = false;
      updateComposer();
    }
    if (name) nameAccepted(ack.name);
    if (proposedName && proposedName !== name) return join(); // typed meanwhile
    if (ack.user_id != null) showVerified(ack.name, ack.user_id);
    setMyName(ack.name);
    showPresence(ack);
    slowMode = ack.slow_mode || 0;
    slowLine.set(slowMode, moderator);
    lastChange = ack.last_change ?? null;
    if (!ack.recovered) return startOver(payload.since);
    caughtUp = true;
    dropPruned(ack.last_seq);
    showEmptyHint();
    returnFocus();
    sendNext(); // what waited for a connection goes now
  });
}

function joinRefused(ack, name) {
  if (ack.code === "invalid_name" && name) {
    nameRefused(ack.message);
    if (!joined) join(); // that join carried the refused name: again without it
    return;
  }
  if (ack.code === "forbidden") {
    accessDenied(`You do not have access to #${channel}.`);
    return;
  }
  showError(ack.message);
  if (TRANSIENT.has(ack.code)) {
    clearTimeout(joinTimer);
    joinTimer = setTimeout(() => {
      if (socket.connected) join();
    }, retryDelay(ack));
  }
}

// Messages after `since` were pruned before we got them: say so below what
// was already shown up to `since`, which stays, and show the retained
// history under it (again: it may hold messages of another numbering, after
// a database reset). Pending messages stay below everything.
function startOver(since) {
  for (const entry of room.querySelectorAll(".entry:not(.pending)")) {
    if (Number(entry.dataset.seq) > since) {
      removeEntry(entry); // sent with the refused catch-up; comes again
    } else {
      // Read before the gap, numbered in a way that may not last: what
      // the server numbers so now may be another message.
      entry.dataset.earlierSeq = entry.dataset.seq;
      delete entry.dataset.seq;
      delete entry.dataset.id;
      closePanel(entry);
      updateTools(entry);
    }
  }
  const firstPending = room.querySelector(".entry.pending");
  const before = firstPending ? firstPending.previousElementSibling : room.lastElementChild;
  if (!before || !before.classList.contains("gap")) room.insertBefore(gapNotice(), firstPending);
  lastSeq = 0;
  join();
}

socket.on("resync", (data) => {
  if (data.channel === channel) startOver(lastSeq);
});

function gapNotice() {
  const notice = document.createElement("p");
  notice.className = "gap";
  notice.textContent =
    `Messages were missed here while you were away: this channel keeps only its newest ${historyLimit}.`;
  return notice;
}

// Messages.

function messageElement(data) {
  const entry = document.createElement("article");
  entry.className = "entry";
  entry.dataset.seq = data.seq;
  entry.dataset.id = data.id;
  entry.dataset.author = data.author ?? "";
  if (data.user_id != null) entry.dataset.userId = data.user_id;
  entry.dataset.at = data.created_at;
  if (data.client_id != null) entry.dataset.clientId = data.client_id;
  const meta = document.createElement("header");
  const time = document.createElement("time");
  const when = localTime(data.created_at);
  time.dateTime = data.created_at;
  time.textContent = when.short;
  time.title = when.long;
  meta.append(...authorElements(data.author || "anonymous", data.user_id), " ", time);
  entry.append(meta, textElement(data.message, entry));
  if (data.deleted) {
    // No author any more, but on the side of the log it was on, for the
    // browser that sent it.
    showDeleted(entry);
    if (sentHere(data)) entry.classList.add("own");
    return entry;
  }
  if (data.edited_at) showEdited(entry, data.edited_at);
  if (isOwn(data)) markOwn(entry);
  updateTools(entry);
  return entry;
}

// The author's name; a verified author's (a user_id) marked and followed
// by the badge that no guest's name has.
function authorElements(name, userId) {
  const author = document.createElement("span");
  author.className = "author";
  author.dir = "auto";
  author.textContent = name;
  if (userId == null) return [author];
  author.classList.add("verified");
  return [author, verifiedBadge()];
}

function textElement(message, entry) {
  const text = document.createElement("div");
  text.className = "message";
  text.dir = "auto";
  fillText(text, message, entry);
  return text;
}

// Text, never markup: links and mentions are built as elements around it.
// The entry is marked when the text mentions us (and is not our own).
function fillText(element, message, entry) {
  messageTexts.set(element, message);
  const { fragment, mentionsMe } = renderText(message, { names: present, me: myName });
  element.replaceChildren(fragment);
  entry.classList.toggle("mentions-me", mentionsMe && !entry.classList.contains("own"));
}

// Mentions depend on who is here and on our name: mark them again when
// either changes.
function setMentionNames(names, me) {
  if (names.join("\n") === present.join("\n") && me === myName) return;
  present = names;
  myName = me;
  for (const text of room.querySelectorAll(".entry .message")) {
    fillText(text, messageTexts.get(text), text.closest(".entry"));
  }
}

function setMyName(name) {
  setMentionNames(present, name);
  if (document.activeElement !== nameInput) nameInput.value = name;
}

function markOwn(entry) {
  entry.classList.add("own");
  entry.classList.remove("mentions-me");
  regroup(entry);
  regroup(entry.nextElementSibling);
}

// Consecutive messages of one author within a few minutes share one name
// line; the others' name lines stay for screen readers, off screen. One
// author is one name and one user_id: a guest who takes a verified
// person's name gets a name line of their own.
function regroup(entry) {
  if (!entry || !entry.classList.contains("entry")) return;
  const previous = entry.previousElementSibling;
  const continued =
    !entry.classList.contains("pending") &&
    !entry.classList.contains("deleted") &&
    previous !== null &&
    previous.matches(".entry:not(.pending)") &&
    previous.dataset.author === entry.dataset.author &&
    previous.dataset.userId === entry.dataset.userId &&
    previous.classList.contains("own") === entry.classList.contains("own") &&
    new Date(entry.dataset.at) - new Date(previous.dataset.at) < GROUPED_WITHIN_MS;
  entry.classList.toggle("continued", continued);
}

// Pending messages stay at the bottom, in the order they were typed;
// delivered ones go above them.
function insertDelivered(entry) {
  room.insertBefore(entry, room.querySelector(".entry.pending"));
  regroup(entry);
  regroup(entry.nextElementSibling);
}

// Once the log shows more than the channel keeps, a line marks where what a
// reload shows begins.
function markRetained() {
  const firstKept = room.querySelector(`.entry[data-seq="${lastSeq - historyLimit + 1}"]`);
  const previous = firstKept && firstKept.previousElementSibling;
  if (!previous || previous === keptLine || !previous.classList.contains("entry")) return;
  const after = keptLine.nextElementSibling;
  room.insertBefore(keptLine, firstKept);
  regroup(firstKept);
  regroup(after);
}

// "Say hello!" to whoever may: not to someone banned.
function showEmptyHint() {
  emptyHint.hidden = banned || room.querySelector(".entry") !== null;
}

function nearBottom() {
  return room.scrollHeight - room.scrollTop - room.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToLatest() {
  room.scrollTop = room.scrollHeight;
  missed = 0;
  jumpButton.hidden = true;
}

socket.on("message", (data) => {
  if (data.channel !== channel || data.seq <= lastSeq) return; // shown already
  lastSeq = data.seq;
  const record = recordOf(data);
  const own = data.deleted ? sentHere(data) : Boolean(record) || isOwn(data);
  const follow = nearBottom() || own;
  if (record) drop(record); // its delivered entry replaces it
  const entry = messageElement(data);
  if (own) markOwn(entry);
  insertDelivered(entry);
  markRetained();
  showEmptyHint();
  typists.delete(data.author);
  renderTyping();
  if (follow) {
    scrollToLatest();
  } else {
    missed += 1;
    jumpButton.textContent = `${missed} new message${missed === 1 ? "" : "s"} ↓`;
    jumpButton.hidden = false;
  }
  const mentionsMe = entry.classList.contains("mentions-me");
  if (document.hidden && !own && !data.deleted) {
    unread += 1;
    if (mentionsMe) unreadMentions += 1;
    showUnread();
  }
  if (mentionsMe && caughtUp) notifyMention(data);
});

room.addEventListener("scroll", () => {
  if (nearBottom()) scrollToLatest();
});
jumpButton.addEventListener("click", scrollToLatest);

function showUnread() {
  if (!unread) document.title = baseTitle;
  else if (!unreadMentions) document.title = `(${unread}) ${baseTitle}`;
  else document.title = `(${unread} · @${unreadMentions}) ${baseTitle}`;
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    unread = 0;
    unreadMentions = 0;
    showUnread();
  }
});

// Events whose refusals their acks bring to where they belong: a refused
// message on its own entry, an edit or a delete in its panel, a join in
// its ack.
const ANSWERED_IN_PLACE = new Set(["send_message", "edit_message", "delete_message", "join"]);

socket.on("chat_error", (error) => {
  // A refused typing notice is nobody's business. A token that expired
  // unrenewed (or a renewal refused) ends the connection: the page comes
  // back with a new one. So does an operator's disconnect, after a while;
  // a ban's is for good.
  if (error.event === "refresh") {
    if (TOKEN_REFUSED.has(error.code)) tokenEnded();
    else console.warn("Channel Chat: token renewal refused:", error.message);
    return;
  }
  if (error.event === "connect" && error.code === "banned") {
    showBanned(error);
  } else if (error.event === "connect" && error.code === "disconnected") {
    kicked = true;
    showError("An operator disconnected you. Reconnecting in a few seconds…");
  } else if (error.event === "typing") {
    console.warn("Channel Chat: typing refused:", error.message);
  } else if (!ANSWERED_IN_PLACE.has(error.event)) {
    showError(error.message);
  }
});

// Edits and deletes. A verified person's own messages have Edit (within
// the edit window) and Delete; a moderator's page has Delete on every
// message; a guest's page has neither. The server has the last word: what
// it refuses says why in place.

function updateAllTools() {
  for (const entry of room.querySelectorAll(".entry:not(.pending)")) updateTools(entry);
}

function updateTools(entry) {
  const live = Boolean(myUserId) && entry.dataset.seq !== undefined && !entry.matches(".deleted");
  const own = live && entry.dataset.userId === myUserId;
  const editableFor = own ? Date.parse(entry.dataset.at) + EDIT_WINDOW_MS - Date.now() : 0;
  setTools(entry, { edit: editableFor > 0, remove: own || (live && moderator) });
  clearTimeout(editExpiry.get(entry));
  if (editableFor > 0 && editableFor < LONGEST_TIMER_MS) {
    // Edit goes once the window closes (by this browser's clock).
    editExpiry.set(entry, setTimeout(() => updateTools(entry), editableFor + 100));
  }
}

// The entry showing the message numbered `seq` now (not one read before a
// gap, whose numbering may be another's).
function shownEntry(seq) {
  return room.querySelector(`.entry:not(.pending)[data-seq="${Number(seq)}"]`);
}

function messageEdited(entry, message, editedAt) {
  fillText(entry.querySelector(":scope > .message"), message, entry);
  showEdited(entry, editedAt);
}

function messageDeleted(entry) {
  const hadFocus = entry.contains(document.activeElement);
  clearTimeout(editExpiry.get(entry));
  showDeleted(entry);
  regroup(entry);
  regroup(entry.nextElementSibling);
  if (hadFocus) room.focus();
}

socket.on("message_edited", (change) => {
  const entry = change.channel === channel && shownEntry(change.seq);
  if (entry && !entry.matches(".deleted")) messageEdited(entry, change.message, change.edited_at);
});

socket.on("message_deleted", (change) => {
  const entry = change.channel === channel && shownEntry(change.seq);
  if (entry && !entry.matches(".deleted")) messageDeleted(entry);
});

room.addEventListener("click", (event) => {
  const tool = event.target.closest(".entry > .tools button[data-action]");
  if (!tool) return;
  const entry = tool.closest(".entry");
  if (tool.dataset.action === "edit-message") startEditing(entry);
  else if (tool.dataset.action === "delete-message") confirmDelete(entry);
});
revealToolsOnTap(room);

// Not now: offline, or not (yet) back in the channel.
function unreachable(entry) {
  if (joined && socket.connected) return false;
  panelRefused(entry, "You are offline: try again once you are back.");
  return true;
}

function startEditing(entry) {
  const seq = Number(entry.dataset.seq);
  const before = messageTexts.get(entry.querySelector(":scope > .message"));
  openEditor(entry, before, {
    maxLength: settings.maxMessageLength,
    cancel: () => stopEditing(entry),
    save: (typed) => {
      // As the server stores it: trimmed, with \n line ends, in NFC.
      const message = typed.replace(/\r\n/g, "\n").normalize("NFC").trim();
      if (message === before) stopEditing(entry);
      else if (!message) panelRefused(entry, "A message needs some text: delete it instead.");
      else if (!unreachable(entry)) saveEdit(entry, seq, message);
    },
  });
}

function stopEditing(entry) {
  closePanel(entry);
  (toolOf(entry, "edit-message") || room).focus();
}

function saveEdit(entry, seq, message) {
  panelBusy(entry, true);
  const payload = { channel, seq, message };
  socket.timeout(SEND_TIMEOUT_MS).emit("edit_message", payload, (error, ack) => {
    if (!panelOpen(entry)) return; // deleted, or cancelled, meanwhile
    panelBusy(entry, false);
    if (error) panelRefused(entry, "The server did not answer: try again.");
    else if (!ack.ok) panelRefused(entry, `Not saved: ${ack.message}`);
    else {
      messageEdited(entry, message, ack.edited_at);
      stopEditing(entry);
    }
  });
}

function confirmDelete(entry) {
  const seq = Number(entry.dataset.seq);
  const whose =
    entry.dataset.userId === myUserId ? "this message" : `${entry.dataset.author}’s message`;
  askToDelete(entry, `Delete ${whose} for everyone?`, {
    cancel: () => {
      closePanel(entry);
      (toolOf(entry, "delete-message") || room).focus();
    },
    confirm: () => {
      if (!unreachable(entry)) deleteMessage(entry, seq);
    },
  });
}

function deleteMessage(entry, seq) {
  panelBusy(entry, true);
  socket.timeout(SEND_TIMEOUT_MS).emit("delete_message", { channel, seq }, (error, ack) => {
    if (!panelOpen(entry)) return;
    panelBusy(entry, false);
    if (error) panelRefused(entry, "The server did not answer: try again.");
    else if (!ack.ok) panelRefused(entry, `Not deleted: ${ack.message}`);
    else messageDeleted(entry);
  });
}

// Pending messages: kept in localStorage from the moment they are typed
// until the server acks them, so a reload or a crash loses none.

function storedPending() {
  return storedList(KEYS.pending).filter(
    (item) => item && typeof item.clientId === "string" && typeof item.message === "string"
  );
}

// Read, change, write back: another tab of this channel may have stored
// its own pending messages since we last looked.
function storePending(record) {
  const list = storedPending();
  const saved = { clientId: record.clientId, message: record.message, failed: record.failed };
  const at = list.findIndex((item) => item.clientId === record.clientId);
  if (at === -1) list.push(saved);
  else list[at] = saved;
  return writeStored(KEYS.pending, list);
}

function unstorePending(clientId) {
  const list = storedPending().filter((item) => item.clientId !== clientId);
  writeStored(KEYS.pending, list.length ? list : null);
}

function recordOf(data) {
  return outbox.find(
    (record) =>
      (data.client_id != null && record.clientId === data.client_id) ||
      (record.id !== undefined && record.id === data.id)
  );
}

function recordOfEntry(entry) {
  return outbox.find((record) => record.entry === entry);
}

function queue(record) {
  record.entry = pendingElement(record);
  outbox.push(record);
  room.append(record.entry);
  showStatus(record);
  showEmptyHint();
}

// Off screen and out of storage: delivered, or discarded by its author.
function drop(record) {
  outbox = outbox.filter((other) => other !== record);
  removeEntry(record.entry);
  unstorePending(record.clientId);
}

function removeEntry(entry) {
  const next = entry.nextElementSibling;
  entry.remove();
  regroup(next);
  showEmptyHint();
}

function pendingElement(record) {
  const entry = document.createElement("article");
  entry.className = "entry own pending";
  entry.dataset.clientId = record.clientId;
  const meta = document.createElement("header");
  const status = document.createElement("span");
  status.className = "status";
  meta.append(...authorElements(myName || "You", myUserId), " ", status);
  const reason = document.createElement("p");
  reason.className = "reason";
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(
    actionButton("retry", "Retry", "Send it again"),
    actionButton("edit", "Edit", "Put it back in the message box"),
    actionButton("discard", "Discard", "Delete this message")
  );
  entry.append(meta, textElement(record.message, entry), reason, actions);
  return entry;
}

function actionButton(action, label, title) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = label;
  button.title = title;
  return button;
}

function showStatus(record) {
  const { entry } = record;
  entry.classList.toggle("failed", Boolean(record.failed));
  let status = "Sending…";
  if (record.failed) status = "Not sent";
  else if (record.slowed) status = "Waiting: slow mode";
  entry.querySelector(".status").textContent = status;
  entry.querySelector(".reason").textContent = record.failed ? record.failed.message : "";
  entry.querySelector(".reason").hidden = !record.failed;
  entry.querySelector(".actions").hidden = !record.failed;
}

// Sending: the oldest unsent message first and one at a time, so they are
// stored in the order they were typed.

function sendNext() {
  if (sending || retryTimer || !joined || !socket.connected) return;
  const next = outbox.find((record) => !record.failed && record.id === undefined);
  if (next) send(next);
}

function retryLater(delay) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    retryTimer = 0;
    sendNext();
  }, delay);
}

function retryDelay(ack) {
  return ack.code === "rate_limited" && ack.retry_after > 0 ? ack.retry_after * 1000 : RETRY_MS;
}

function send(record) {
  sending = record;
  if (record.slowed) {
    record.slowed = false;
    showStatus(record);
  }
  const payload = { channel, message: record.message, client_id: record.clientId };
  socket.timeout(SEND_TIMEOUT_MS).emit("send_message", payload, (error, ack) => {
    if (sending === record) sending = null;
    if (error) {
      // No ack in time: send again. Disconnected: the next join re-sends.
      if (socket.connected) retryLater(RETRY_MS);
      return;
    }
    if (ack.ok) confirmed(record, ack);
    else if (ack.code === "slow_mode") return slowed(record, ack);
    else if (TRANSIENT.has(ack.code)) return retryLater(retryDelay(ack));
    else refused(record, ack);
    sendNext();
  });
}

// Stored: nothing more to send. The entry waits for its `message` event,
// unless that came first (so it was not recognised: no client_id).
function confirmed(record, ack) {
  myIds.add(ack.id);
  record.id = ack.id;
  record.seq = ack.seq;
  lastTypingSent = 0; // typing after this is news, and the server lets it through
  unstorePending(record.clientId);
  if (slowMode && !moderator) slowLine.wait(slowMode); // the next one waits this long
  const shown = room.querySelector(`.entry:not(.pending)[data-id="${ack.id}"]`);
  if (shown) {
    markOwn(shown);
    drop(record);
  }
}

// Too soon in slow mode: not refused for good. It stays pending, first in
// line, and goes out by itself once the wait the server gave is over.
function slowed(record, ack) {
  const wait = Math.max(Number(ack.retry_after) || 0, 1);
  record.slowed = true;
  showStatus(record);
  slowLine.on();
  slowLine.wait(wait);
  retryLater(wait * 1000);
}

function refused(record, ack) {
  record.failed = { code: ack.code, message: ack.message };
  storePending(record);
  showStatus(record);
}

// A join's history holds every retained message up to `last_seq`; a stored
// message of ours not among them was pruned before we saw it, like the
// other missed ones.
function dropPruned(lastSeqOfJoin) {
  outbox
    .filter((record) => record.seq !== undefined && record.seq <= lastSeqOfJoin)
    .forEach(drop);
}

room.addEventListener("click", (event) => {
  const button = event.target.closest(".entry.pending button[data-action]");
  const record = button && recordOfEntry(button.closest(".entry"));
  if (!record) return;
  if (button.dataset.action === "retry") retry(record);
  else if (button.dataset.action === "edit") edit(record);
  else if (button.dataset.action === "discard") drop(record);
});

function retry(record) {
  record.failed = null;
  storePending(record);
  showStatus(record);
  sendNext();
}

// Back into the message box (on a line after what is there already), to
// be changed and sent as a new message.
function edit(record) {
  input.value = input.value ? `${input.value}\n${record.message}` : record.message;
  fitToText(input);
  saveDraft();
  drop(record);
  input.focus();
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const message = input.value;
  if (!message.trim()) return;
  const record = { clientId: randomId(), message, failed: null };
  // Cleared only once it is safe in storage; otherwise it stays typed.
  if (!storePending(record)) {
    showError("This browser would not store the message, so it was not sent.");
    return;
  }
  showError("");
  input.value = "";
  fitToText(input);
  saveDraft();
  lastTypingSent = 0; // typing again after this is news
  rememberOwn(record.clientId);
  queue(record);
  scrollToLatest();
  sendNext();
  input.focus();
});

// What is being typed survives a reload too.
function saveDraft() {
  writeStored(KEYS.draft, input.value || null);
}

function restoreDraft() {
  const draft = readStored(KEYS.draft, "");
  if (typeof draft === "string") input.value = draft;
}

// The focus returns to the message box when the connection does, if that
// is where the person was.
input.addEventListener("focus", () => {
  focusInBox = true;
});
document.addEventListener("focusin", (event) => {
  if (event.target !== input) focusInBox = false;
});

function returnFocus() {
  const lost = !document.activeElement || document.activeElement === document.body;
  if (focusInBox && lost) input.focus();
}

// Names: checked by the server before the page keeps them.

nameForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name) {
    nameRefused("a name needs at least one character");
    return;
  }
  if (name === myName) {
    showNameError("");
    nameInput.value = myName;
    return;
  }
  proposedName = name;
  showNameError("");
  if (joined) join();
  else showNameError("Your name is checked once you are back online.", { note: true });
});

function nameAccepted(name) {
  proposedName = null;
  writeText(KEYS.name, name);
  nameInput.value = name;
  showNameError("");
}

// The server refused a name: keep the last accepted one (`forget`: the
// stored one itself was refused, so go back to a guest name).
function nameRefused(reason, { forget = false } = {}) {
  proposedName = null;
  if (forget) {
    writeText(KEYS.name, null);
    myName = "";
    showNameError(
      `Your saved name was refused: ${reason}. You have a guest name until you choose another.`
    );
  } else {
    showNameError(`Not saved: ${reason}. You are still “${myName}”.`);
  }
  setHeaderOpen(true);
}

function showNameError(text, { note = false } = {}) {
  nameError.textContent = text;
  nameError.hidden = !text;
  nameError.classList.toggle("note", note);
  if (text && !note) nameInput.setAttribute("aria-invalid", "true");
  else nameInput.removeAttribute("aria-invalid");
}

// Presence and typing.

function showPresence(presence) {
  if (!socket.connected) return; // a stale count is worse than none
  const names = presence.members.slice(0, 5).join(", ");
  const more = presence.count - Math.min(presence.count, 5);
  presenceLine.textContent =
    `${presence.count} online: ${names}` + (more > 0 ? ` and ${more} more` : "");
  setMentionNames(presence.members, myName);
}

socket.on("presence", (presence) => {
  if (presence.channel === channel) showPresence(presence);
});

input.addEventListener("input", () => {
  saveDraft();
  if (!input.value) {
    lastTypingSent = 0; // starting again is news
    return;
  }
  const now = Date.now();
  if (now - lastTypingSent >= TYPING_EVERY_MS && joined && socket.connected) {
    lastTypingSent = now;
    socket.emit("typing", { channel });
  }
});

socket.on("typing", (notice) => {
  if (notice.channel !== channel) return;
  typists.set(notice.author, Date.now() + TYPING_SHOWN_MS);
  renderTyping();
});

function renderTyping() {
  const now = Date.now();
  for (const [author, until] of typists) {
    if (until <= now) typists.delete(author);
  }
  const names = Array.from(typists.keys());
  if (names.length === 0) typingLine.textContent = "";
  else if (names.length === 1) typingLine.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) typingLine.textContent = `${names.join(" and ")} are typing…`;
  else typingLine.textContent = "Several people are typing…";
}
setInterval(renderTyping, 1000);

// Desktop notifications of mentions, for those who ask for them.

function notificationsOn() {
  return (
    "Notification" in window &&
    Notification.permission === "granted" &&
    readText(KEYS.notify) === "on"
  );
}

function showNotifySetting(note = "") {
  const on = notificationsOn();
  notifyButton.hidden = !("Notification" in window);
  notifyButton.setAttribute("aria-pressed", String(on));
  notifyButton.textContent = on ? "Mention notifications: on" : "Notify me of mentions";
  notifyNote.textContent = note;
  notifyNote.hidden = !note;
}

notifyButton.addEventListener("click", async () => {
  if (notificationsOn()) {
    writeText(KEYS.notify, null);
    showNotifySetting();
    return;
  }
  try {
    const permission = await Notification.requestPermission();
    if (permission === "granted") writeText(KEYS.notify, "on");
    showNotifySetting(
      permission === "granted" ? "" : "This browser blocks notifications from this site."
    );
  } catch (error) {
    console.error("Channel Chat: notifications could not be turned on", error);
    showNotifySetting("Notifications could not be turned on.");
  }
});

function notifyMention(data) {
  if (!document.hidden || !notificationsOn()) return;
  try {
    const notification = new Notification(`${data.author} mentioned you in #${channel}`, {
      body: data.message.slice(0, 200),
      tag: `chat-${channel}-${data.id}`,
    });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
    });
  } catch (error) {
    console.error("Channel Chat: could not show a notification", error);
  }
}

// The header: on phones its forms fold away behind a button.

function setHeaderOpen(open) {
  header.dataset.open = String(open);
  headerToggle.setAttribute("aria-expanded", String(open));
}
headerToggle.addEventListener("click", () => setHeaderOpen(header.dataset.open !== "true"));

// The channel switcher shows this channel; typing replaces it.
switcher.addEventListener("focus", () => switcher.select());

async function suggestChannels() {
  try {
    // A chat for signed-in people only answers the API to a token.
    const held = siteToken && (await siteToken.current());
    const headers = held ? { Authorization: `Bearer ${held.token}` } : {};
    const response = await fetch(settings.channelsUrl, { headers });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const list = document.getElementById("activeChannels");
    for (const active of (await response.json()).channels) {
      const option = document.createElement("option");
      option.value = active.name;
      list.append(option);
    }
  } catch (error) {
    console.warn("Channel Chat: no channel suggestions:", error);
  }
}

// What this browser left unsent here, from a reload or another tab: shown
// now, sent once joined.
loadOwn();
restoreDraft();
messageBox(composer, input);
for (const item of storedPending()) {
  ownClientIds.add(item.clientId);
  const failed = item.failed && typeof item.failed.message === "string" ? item.failed : null;
  queue({ clientId: item.clientId, message: item.message, failed });
}
showNotifySetting();
if (siteToken) connectNow(); // the token first; a guest page connected at once
suggestChannels();
