// A socket.io client of a chosen major version, driven line by line from a
// test: commands arrive on stdin as JSON, what happens leaves on stdout as
// JSON. `node chat_client.js URL VERSION TRANSPORTS [b64]`, with VERSION 1,
// 2 or 4 (socket.io-client 1.7.4, 2.3.1 or 4.8.4 from node_modules) and
// TRANSPORTS such as "websocket" or "polling" or "polling,websocket".
//
// Commands: {id, do: "emit", event, payload, binary?} emits, with an ack
// (`binary` names a payload field sent as bytes); {id, do: "close"} and
// {id, do: "open"} disconnect and connect again. Output: {event, data} for
// every event received, {id, ack} for acks, {id, done} for commands.
"use strict";

const readline = require("readline");

const [url, version, transports, b64] = process.argv.slice(2);
const packages = { 1: "socket.io-client-1", 2: "socket.io-client-2", 4: "socket.io-client" };
const io = require(packages[version]);

function say(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const options = {
  transports: transports.split(","),
  reconnection: false,
  forceNew: true,
  forceBase64: b64 === "b64",
};
const socket = version === "4" ? io(url, options) : io.connect(url, options);

socket.on("connect", () => say({ event: "connect", transport: transport() }));
socket.on("disconnect", (reason) => say({ event: "disconnect", data: reason }));
for (const event of ["message", "presence", "typing", "chat_error", "resync", "error", "connect_error"]) {
  socket.on(event, (data) => say({ event, data: data instanceof Error ? data.message : data }));
}

function transport() {
  const engine = socket.io.engine;
  return engine && engine.transport ? engine.transport.name : null;
}

function emit(command) {
  const payload = command.payload;
  if (command.binary) {
    payload[command.binary] = Buffer.from(payload[command.binary], "utf8");
  }
  socket.emit(command.event, payload, (ack) => say({ id: command.id, ack }));
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.do === "emit") {
    emit(command);
  } else if (command.do === "close") {
    socket.disconnect();
    say({ id: command.id, done: true });
  } else if (command.do === "open") {
    // Once the last session has ended: 1.x mixes up a session still closing
    // with the new one.
    const engine = socket.io.engine;
    const open = () => {
      socket.connect();
      say({ id: command.id, done: true });
    };
    if (engine && engine.readyState !== "closed") {
      engine.once("close", open);
    } else {
      open();
    }
  } else if (command.do === "transport") {
    say({ id: command.id, done: transport() });
  }
});
process.stdin.on("end", () => {
  socket.close();
  process.exit(0);
});
