// The channel page: joins its channel over Socket.IO, shows every `message`
// as text, sends the form's text as `send_message`, shows who is here and
// who is typing, and catches up with `since` after every reconnect.
(function () {
  "use strict";

  var TYPING_EVERY_MS = 2000; // how often to tell others we are still typing
  var TYPING_SHOWN_MS = 4000; // how long a typing notice stays without news
  var NEAR_BOTTOM_PX = 48;

  var main = document.querySelector("main.chat");
  var channel = main.dataset.channel;
  var room = document.querySelector(".chat-room");
  var composer = document.querySelector("form.composer");
  var input = document.getElementById("messageInput");
  var sendButton = composer.querySelector("button");
  var connection = document.getElementById("connection");
  var presenceLine = document.getElementById("presence");
  var typingLine = document.getElementById("typing");
  var errorBox = document.getElementById("chatError");
  var jumpButton = document.getElementById("jumpToLatest");
  var nameForm = document.querySelector("form.name-form");
  var nameInput = document.getElementById("nameInput");
  var baseTitle = document.title;

  var lastSeq = 0; // the highest seq shown; sent as `since` on reconnect
  var myName = localStorage.getItem("chat.name") || "";
  var myIds = new Set(); // ids of messages this page sent
  var typists = new Map(); // author -> time their notice expires
  var lastTypingSent = 0;
  var unread = 0;
  var missed = 0; // messages below the fold while reading older ones

  nameInput.value = myName;

  var socket = io({
    // Asked on every (re)connect, so a changed name is used from then on.
    auth: function (send) {
      send(myName ? { name: myName } : {});
    },
  });

  // Connection state.

  function setConnection(state, label) {
    connection.dataset.state = state;
    connection.textContent = label;
    input.disabled = sendButton.disabled = state !== "online";
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
      if (!ack.ok) return showError(ack.message);
      myName = ack.name;
      if (!nameInput.value || document.activeElement !== nameInput) nameInput.value = myName;
      showPresence(ack);
      if (!ack.recovered) reloadHistory();
    });
  }

  // Messages after `since` were pruned while we were away: start over from
  // the retained history, and say that some were missed.
  function reloadHistory() {
    room.replaceChildren(gapNotice());
    lastSeq = 0;
    join();
  }

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
    if (myIds.has(data.id)) entry.classList.add("own");
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
    var text = document.createElement("div");
    text.className = "message";
    text.textContent = data.message; // text, never markup
    entry.append(meta, text);
    return entry;
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
    var follow = nearBottom() || myIds.has(data.id);
    room.append(messageElement(data));
    typists.delete(data.author);
    renderTyping();
    if (follow) {
      scrollToLatest();
    } else {
      missed += 1;
      jumpButton.textContent = missed + " new message" + (missed === 1 ? "" : "s") + " ↓";
      jumpButton.hidden = false;
    }
    if (document.hidden && !myIds.has(data.id)) {
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
    showError(error.message);
  });

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var message = input.value;
    if (!message.trim() || input.disabled) return;
    showError("");
    input.value = "";
    lastTypingSent = 0; // typing again after this is news
    socket.emit("send_message", { channel: channel, message: message }, function (ack) {
      if (!ack.ok) {
        if (!input.value) input.value = message; // let them fix and resend
        return;
      }
      myIds.add(ack.id);
      var shown = room.querySelector('.entry[data-id="' + ack.id + '"]');
      if (shown) shown.classList.add("own");
    });
  });

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
    var now = Date.now();
    if (input.value && now - lastTypingSent > TYPING_EVERY_MS && socket.connected) {
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
})();
