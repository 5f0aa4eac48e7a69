// The channel page: joins its channel over Socket.IO, shows every `message`
// as text, sends the form's text as `send_message`, shows who is here and
// who is typing, and catches up with `since` after every reconnect.
//
// Nothing typed is lost: a sent message is kept in localStorage as pending,
// shown at the bottom of the log, and re-sent with the same client_id after
// every (re)connect until the server acks it, which it does once however
// often it is sent. Refused ones stay on screen until retried or discarded.
(function () {
  "use strict";

  var TYPING_EVERY_MS = 2000; // how often to tell others we are still typing
  var TYPING_SHOWN_MS = 4000; // how long a typing notice stays without news
  var NEAR_BOTTOM_PX = 48;
  var SEND_TIMEOUT_MS = 15000; // no ack by then: send again (client_id makes it safe)
  var RETRY_MS = 3000; // wait after a transient refusal before sending again
  var OWN_KEPT = 500; // client_ids of own messages remembered across reloads
  var TRANSIENT = ["unavailable", "rate_limited"]; // refusals worth retrying as is

  var main = document.querySelector("main.chat");
  var channel = main.dataset.channel;
  var room = document.querySelector(".chat-room");
  var composer = document.querySelector("form.composer");
  var input = document.getElementById("messageInput");
  var connection = document.getElementById("connection");
  var presenceLine = document.getElementById("presence");
  var typingLine = document.getElementById("typing");
  var errorBox = document.getElementById("chatError");
  var jumpButton = document.getElementById("jumpToLatest");
  var nameForm = document.querySelector("form.name-form");
  var nameInput = document.getElementById("nameInput");
  var baseTitle = document.title;

  var PENDING_KEY = "chat.pending." + channel;
  var DRAFT_KEY = "chat.draft." + channel;
  var OWN_KEY = "chat.own";

  var lastSeq = 0; // the highest seq shown; sent as `since` on reconnect
  var joined = false; // joined on this connection: sending is allowed
  var myName = localStorage.getItem("chat.name") || "";
  var myIds = new Set(); // ids of messages this page sent
  var ownClientIds = new Set(); // client_ids this browser created
  var typists = new Map(); // author -> time their notice expires
  var lastTypingSent = 0;
  var unread = 0;
  var missed = 0; // messages below the fold while reading older ones
  var joinTimer = 0;

  // Messages typed here and not yet shown as delivered, oldest first:
  // {clientId, message, failed, id, seq, entry}. `failed` is a permanent
  // refusal {code, message}; `id` and `seq` come with the ack (stored).
  var outbox = [];
  var sending = null; // the record whose send awaits its ack
  var retryTimer = 0;

  nameInput.value = myName;

  var socket = io({
    // Asked on every (re)connect, so a changed name is used from then on.
    auth: function (send) {
      send(myName ? { name: myName } : {});
    },
  });

  // Browser storage. It may be full or refused (private modes, policies):
  // failures are reported, never thrown, so callers can keep the text.

  function readStored(key, fallback) {
    try {
      var value = JSON.parse(localStorage.getItem(key));
      return value === null ? fallback : value;
    } catch (error) {
      return fallback;
    }
  }

  function writeStored(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
      return true;
    } catch (error) {
      return false;
    }
  }

  function storedList(key) {
    var list = readStored(key, []);
    return Array.isArray(list) ? list : [];
  }

  // Own messages: those whose client_id this browser made, kept for the
  // last OWN_KEPT so they stay set apart after a reload.

  function rememberOwn(clientId) {
    ownClientIds.add(clientId);
    var kept = storedList(OWN_KEY).filter(function (id) { return id !== clientId; });
    kept.push(clientId);
    writeStored(OWN_KEY, kept.slice(-OWN_KEPT));
  }

  function loadOwn() {
    storedList(OWN_KEY).forEach(function (id) { ownClientIds.add(id); });
  }

  function isOwn(data) {
    return myIds.has(data.id) || (data.client_id != null && ownClientIds.has(data.client_id));
  }

  // Another tab of this browser may have sent messages meanwhile.
  window.addEventListener("storage", function (event) {
    if (event.key === OWN_KEY) loadOwn();
  });

  // crypto.randomUUID exists only in secure contexts (https, localhost);
  // a page served over plain http gets 128 random bits in hex instead.
  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, function (byte) {
      return (byte + 256).toString(16).slice(1);
    }).join("");
  }

  // Connection state. Sending stays possible offline: messages wait as pending.

  function setConnection(state, label) {
    connection.dataset.state = state;
    connection.textContent = label;
  }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  socket.on("connect", function () {
    setConnection("online", "Online");
    join();
  });

  socket.on("disconnect", function () {
    setConnection("offline", "Offline, reconnecting…");
    joined = false;
    sending = null; // its ack will never come; re-sent after the next join
    clearTimeout(retryTimer);
    retryTimer = 0;
    clearTimeout(joinTimer);
    typists.clear();
    renderTyping();
  });

  socket.on("connect_error", function (error) {
    setConnection("offline", "Offline, reconnecting…");
    if (error.data && error.data.message) showError(error.data.message);
  });

  // Joining and catching up.

  function join(fields) {
    var payload = Object.assign({ channel: channel }, fields || {});
    if (lastSeq) payload.since = lastSeq;
    socket.emit("join", payload, function (ack) {
      if (!ack.ok) return joinRefused(ack, fields);
      joined = true;
      showError("");
      myName = ack.name;
      if (!nameInput.value || document.activeElement !== nameInput) nameInput.value = myName;
      showPresence(ack);
      if (!ack.recovered) return reloadHistory();
      dropPruned(ack.last_seq);
      sendNext(); // what waited for a connection goes now
    });
  }

  function joinRefused(ack, fields) {
    showError(ack.message);
    if (isTransient(ack)) {
      clearTimeout(joinTimer);
      joinTimer = setTimeout(function () {
        if (socket.connected) join(fields);
      }, retryDelay(ack));
    }
  }

  // Messages after `since` were pruned before we got them: start over from
  // the retained history, and say that some were missed. Pending messages
  // stay below it.
  function reloadHistory() {
    room.replaceChildren(gapNotice());
    outbox.forEach(function (record) { room.append(record.entry); });
    lastSeq = 0;
    join();
  }

  socket.on("resync", function (data) {
    if (data.channel === channel) reloadHistory();
  });

  function gapNotice() {
    var notice = document.createElement("p");
    notice.className = "gap";
    notice.textContent = "Some messages were missed while you were away.";
    return notice;
  }

  // Messages.

  function localTime(iso) {
    var when = new Date(iso);
    if (isNaN(when)) return { short: "", long: "" };
    return {
      short: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      long: when.toLocaleString(),
    };
  }

  function messageElement(data) {
    var entry = document.createElement("article");
    entry.className = "entry";
    entry.dataset.seq = data.seq;
    entry.dataset.id = data.id;
    if (isOwn(data)) entry.classList.add("own");
    var meta = document.createElement("header");
    var author = document.createElement("span");
    author.className = "author";
    author.textContent = data.author || "anonymous";
    var time = document.createElement("time");
    var when = localTime(data.created_at);
    time.dateTime = data.created_at;
    time.textContent = when.short;
    time.title = when.long;
    meta.append(author, " ", time);
    entry.append(meta, textElement(data.message));
    return entry;
  }

  function textElement(message) {
    var text = document.createElement("div");
    text.className = "message";
    text.textContent = message; // text, never markup
    return text;
  }

  // Pending messages stay at the bottom, in the order they were typed;
  // delivered ones go above them.
  function insertDelivered(entry) {
    room.insertBefore(entry, room.querySelector(".entry.pending"));
  }

  function nearBottom() {
    return room.scrollHeight - room.scrollTop - room.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToLatest() {
    room.scrollTop = room.scrollHeight;
    missed = 0;
    jumpButton.hidden = true;
  }

  socket.on("message", function (data) {
    if (data.channel !== channel || data.seq <= lastSeq) return; // shown already
    lastSeq = data.seq;
    var record = recordOf(data);
    var own = Boolean(record) || isOwn(data);
    var follow = nearBottom() || own;
    if (record) drop(record); // its delivered entry replaces it
    insertDelivered(messageElement(data));
    typists.delete(data.author);
    renderTyping();
    if (follow) {
      scrollToLatest();
    } else {
      missed += 1;
      jumpButton.textContent = missed + " new message" + (missed === 1 ? "" : "s") + " ↓";
      jumpButton.hidden = false;
    }
    if (document.hidden && !own) {
      unread += 1;
      document.title = "(" + unread + ") " + baseTitle;
    }
  });

  room.addEventListener("scroll", function () {
    if (nearBottom()) scrollToLatest();
  });
  jumpButton.addEventListener("click", scrollToLatest);

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      unread = 0;
      document.title = baseTitle;
    }
  });

  socket.on("chat_error", function (error) {
    // A refused message shows its reason on its own entry.
    if (error.event !== "send_message") showError(error.message);
  });

  // Pending messages: kept in localStorage from the moment they are typed
  // until the server acks them, so a reload or a crash loses none.

  function storedPending() {
    return storedList(PENDING_KEY).filter(function (item) {
      return item && typeof item.clientId === "string" && typeof item.message === "string";
    });
  }

  // Read, change, write back: another tab of this channel may have stored
  // its own pending messages since we last looked.
  function storePending(record) {
    var list = storedPending();
    var saved = { clientId: record.clientId, message: record.message, failed: record.failed };
    var at = list.findIndex(function (item) { return item.clientId === record.clientId; });
    if (at === -1) list.push(saved);
    else list[at] = saved;
    return writeStored(PENDING_KEY, list);
  }

  function unstorePending(clientId) {
    var list = storedPending().filter(function (item) { return item.clientId !== clientId; });
    writeStored(PENDING_KEY, list.length ? list : null);
  }

  function recordOf(data) {
    return outbox.find(function (record) {
      return (data.client_id != null && record.clientId === data.client_id) ||
        (record.id !== undefined && record.id === data.id);
    });
  }

  function recordOfEntry(entry) {
    return outbox.find(function (record) { return record.entry === entry; });
  }

  function queue(record) {
    record.entry = pendingElement(record);
    outbox.push(record);
    room.append(record.entry);
    showStatus(record);
  }

  // Off screen and out of storage: delivered, or discarded by its author.
  function drop(record) {
    outbox = outbox.filter(function (other) { return other !== record; });
    record.entry.remove();
    unstorePending(record.clientId);
  }

  function pendingElement(record) {
    var entry = document.createElement("article");
    entry.className = "entry own pending";
    entry.dataset.clientId = record.clientId;
    var meta = document.createElement("header");
    var author = document.createElement("span");
    author.className = "author";
    author.textContent = myName || "You";
    var status = document.createElement("span");
    status.className = "status";
    meta.append(author, " ", status);
    var reason = document.createElement("p");
    reason.className = "reason";
    var actions = document.createElement("div");
    actions.className = "actions";
    actions.append(
      actionButton("retry", "Retry", "Send it again"),
      actionButton("edit", "Edit", "Put it back in the message box"),
      actionButton("discard", "Discard", "Delete this message")
    );
    entry.append(meta, textElement(record.message), reason, actions);
    return entry;
  }

  function actionButton(action, label, title) {
    var button = document.createElement("button");
    button.type = "button";
    button.dataset.action = action;
    button.textContent = label;
    button.title = title;
    return button;
  }

  function showStatus(record) {
    var entry = record.entry;
    entry.classList.toggle("failed", Boolean(record.failed));
    entry.querySelector(".status").textContent = record.failed ? "Not sent" : "Sending…";
    entry.querySelector(".reason").textContent = record.failed ? record.failed.message : "";
    entry.querySelector(".reason").hidden = entry.querySelector(".actions").hidden = !record.failed;
  }

  // Sending: the oldest unsent message first and one at a time, so they are
  // stored in the order they were typed.

  function sendNext() {
    if (sending || retryTimer || !joined || !socket.connected) return;
    var next = outbox.find(function (record) {
      return !record.failed && record.id === undefined;
    });
    if (next) send(next);
  }

  function retryLater(delay) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () {
      retryTimer = 0;
      sendNext();
    }, delay);
  }

  function isTransient(ack) {
    return TRANSIENT.indexOf(ack.code) !== -1;
  }

  function retryDelay(ack) {
    return ack.code === "rate_limited" && ack.retry_after > 0 ? ack.retry_after * 1000 : RETRY_MS;
  }

  function send(record) {
    sending = record;
    var payload = { channel: channel, message: record.message, client_id: record.clientId };
    socket.timeout(SEND_TIMEOUT_MS).emit("send_message", payload, function (error, ack) {
      if (sending === record) sending = null;
      if (error) {
        // No ack in time: send again. Disconnected: the next join re-sends.
        if (socket.connected) retryLater(RETRY_MS);
        return;
      }
      if (ack.ok) confirmed(record, ack);
      else if (isTransient(ack)) return retryLater(retryDelay(ack));
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
    unstorePending(record.clientId);
    var shown = room.querySelector('.entry:not(.pending)[data-id="' + ack.id + '"]');
    if (shown) {
      shown.classList.add("own");
      drop(record);
    }
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
    outbox.filter(function (record) {
      return record.seq !== undefined && record.seq <= lastSeqOfJoin;
    }).forEach(drop);
  }

  room.addEventListener("click", function (event) {
    var button = event.target.closest(".entry.pending button[data-action]");
    var record = button && recordOfEntry(button.closest(".entry"));
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

  // Back into the message box (after what is there already), to be changed
  // and sent as a new message.
  function edit(record) {
    input.value = input.value ? input.value + " " + record.message : record.message;
    saveDraft();
    drop(record);
    input.focus();
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var message = input.value;
    if (!message.trim()) return;
    var record = { clientId: newClientId(), message: message, failed: null };
    // Cleared only once it is safe in storage; otherwise it stays typed.
    if (!storePending(record)) {
      return showError("This browser would not store the message, so it was not sent.");
    }
    showError("");
    input.value = "";
    saveDraft();
    lastTypingSent = 0; // typing again after this is news
    rememberOwn(record.clientId);
    queue(record);
    scrollToLatest();
    sendNext();
  });

  // What is being typed survives a reload too.
  function saveDraft() {
    writeStored(DRAFT_KEY, input.value || null);
  }

  function restoreDraft() {
    var draft = readStored(DRAFT_KEY, "");
    if (typeof draft === "string") input.value = draft;
  }

  // Names.

  nameForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = nameInput.value.trim();
    if (!name || name === myName) return;
    localStorage.setItem("chat.name", name);
    myName = name;
    join({ name: name });
  });

  // Presence and typing.

  function showPresence(presence) {
    var names = presence.members.slice(0, 5).join(", ");
    var more = presence.count - Math.min(presence.count, 5);
    presenceLine.textContent =
      presence.count + " online: " + names + (more > 0 ? " and " + more + " more" : "");
  }

  socket.on("presence", function (presence) {
    if (presence.channel === channel) showPresence(presence);
  });

  input.addEventListener("input", function () {
    saveDraft();
    var now = Date.now();
    if (input.value && now - lastTypingSent > TYPING_EVERY_MS && joined && socket.connected) {
      lastTypingSent = now;
      socket.emit("typing", { channel: channel });
    }
  });

  socket.on("typing", function (notice) {
    if (notice.channel !== channel || notice.author === myName) return;
    typists.set(notice.author, Date.now() + TYPING_SHOWN_MS);
    renderTyping();
  });

  function renderTyping() {
    var now = Date.now();
    typists.forEach(function (until, author) {
      if (until <= now) typists.delete(author);
    });
    var names = Array.from(typists.keys());
    if (names.length === 0) typingLine.textContent = "";
    else if (names.length === 1) typingLine.textContent = names[0] + " is typing…";
    else if (names.length === 2) typingLine.textContent = names.join(" and ") + " are typing…";
    else typingLine.textContent = "Several people are typing…";
  }
  setInterval(renderTyping, 1000);

  // The channel switcher suggests the active channels.

  fetch("/api/channels")
    .then(function (response) { return response.ok ? response.json() : { channels: [] }; })
    .then(function (body) {
      var list = document.getElementById("activeChannels");
      body.channels.forEach(function (active) {
        var option = document.createElement("option");
        option.value = active.name;
        list.append(option);
      });
    })
    .catch(function () {});

  // What this browser left unsent here, from a reload or another tab: shown
  // now, sent once joined.
  loadOwn();
  restoreDraft();
  storedPending().forEach(function (item) {
    ownClientIds.add(item.clientId);
    var failed = item.failed && typeof item.failed.message === "string" ? item.failed : null;
    queue({ clientId: item.clientId, message: item.message, failed: failed });
  });
})();
