// The channel page: joins its channel over Socket.IO, shows every `message`
// as text, and sends the form's text as `send_message`.
(function () {
  "use strict";

  var main = document.querySelector("main.chat");
  var channel = main.dataset.channel;
  var room = document.querySelector(".chat-room");
  var form = document.querySelector("form.composer");
  var input = document.getElementById("messageInput");
  var button = form.querySelector("button");
  var connection = document.getElementById("connection");
  var errorBox = document.getElementById("chatError");
  var lastSeq = 0; // the highest seq shown, sent as `since` on reconnect
  var socket = io();

  function setConnection(state, label) {
    connection.dataset.state = state;
    connection.textContent = label;
    input.disabled = button.disabled = state !== "online";
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function localTime(iso) {
    var when = new Date(iso);
    return isNaN(when) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function appendMessage(data) {
    var entry = document.createElement("article");
    entry.className = "entry";
    entry.dataset.seq = data.seq;
    var meta = document.createElement("header");
    var author = document.createElement("span");
    author.className = "author";
    author.textContent = data.author || "guest";
    var time = document.createElement("time");
    time.dateTime = data.created_at;
    time.textContent = localTime(data.created_at);
    meta.append(author, " ", time);
    var text = document.createElement("div");
    text.className = "message";
    text.textContent = data.message; // text, never markup
    entry.append(meta, text);
    room.append(entry);
    room.scrollTop = room.scrollHeight;
  }

  socket.on("connect", function () {
    setConnection("online", "Online");
    var join = lastSeq ? { channel: channel, since: lastSeq } : { channel: channel };
    socket.emit("join", join, function (ack) {
      if (!ack.ok) showError(ack.message);
    });
  });

  socket.on("disconnect", function () {
    setConnection("offline", "Offline, reconnecting…");
  });

  socket.on("message", function (data) {
    if (data.channel !== channel || data.seq <= lastSeq) return; // already shown
    lastSeq = data.seq;
    appendMessage(data);
  });

  socket.on("chat_error", function (error) {
    showError(error.message);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var message = input.value;
    if (!message.trim()) return;
    showError("");
    socket.emit("send_message", { channel: channel, message: message });
    input.value = "";
  });
})();
