// The yardstick `make bench` measures the chat against: the chat's Socket.IO
// contract (DESIGN.md) on Node's own socket.io server, the stack most people
// would reach for instead. Each channel keeps its newest N messages in
// memory: nothing is stored on disk, so every figure of the chat that comes
// close to this one does so while committing every message first.
//
// Usage: node server.js [port] [history limit]
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 5100);
const historyLimit = Number(process.argv[3] ?? 10);

// Like the chat, serve socket.io 1.x and 2.x clients (Engine.IO 3) too.
const io = new Server(port, { cors: { origin: "*" }, allowEIO3: true });

/** name -> { lastSeq, history: the newest messages, oldest first } */
const channels = new Map();
let nextId = 1;

const channelNamed = (name) => {
  if (!channels.has(name)) channels.set(name, { lastSeq: 0, history: [] });
  return channels.get(name);
};

const isChannel = (payload) =>
  typeof payload?.channel === "string" && payload.channel.length > 0;

const answer = (ack, reply) => {
  if (typeof ack === "function") ack(reply);
};

io.on("connection", (socket) => {
  socket.on("join", (payload, ack) => {
    if (!isChannel(payload)) return answer(ack, { ok: false, code: "invalid_channel" });
    const channel = channelNamed(payload.channel);
    socket.join(payload.channel);
    const since = Number.isInteger(payload.since) ? payload.since : 0;
    for (const message of channel.history) {
      if (message.seq > since) socket.emit("message", message);
    }
    const oldest = channel.history[0]?.seq ?? channel.lastSeq + 1;
    answer(ack, {
      ok: true,
      channel: payload.channel,
      last_seq: channel.lastSeq,
      recovered: since === 0 || oldest <= since + 1,
    });
  });

  socket.on("send_message", (payload, ack) => {
    if (!isChannel(payload) || !socket.rooms.has(payload.channel)) {
      return answer(ack, { ok: false, code: "not_joined" });
    }
    if (typeof payload.message !== "string" || !payload.message.trim()) {
      return answer(ack, { ok: false, code: "invalid_message" });
    }
    const channel = channelNamed(payload.channel);
    const message = {
      id: nextId++,
      seq: ++channel.lastSeq,
      channel: payload.channel,
      message: payload.message,
      author: null,
      created_at: new Date().toISOString(),
      client_id: typeof payload.client_id === "string" ? payload.client_id : null,
    };
    channel.history.push(message);
    if (channel.history.length > historyLimit) channel.history.shift();
    io.to(payload.channel).emit("message", message);
    answer(ack, { ok: true, id: message.id, seq: message.seq });
  });

  socket.on("leave", (payload, ack) => {
    if (isChannel(payload)) socket.leave(payload.channel);
    answer(ack, { ok: true });
  });
});

console.log(`yardstick listening on ${port}`);
