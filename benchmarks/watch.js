#!/usr/bin/env node
/*
 * An admin watching the chat through the socket.io Admin UI's namespace, as
 * the UI does, while a benchmark runs: `make bench --admin` (run.py) starts
 * it beside the chat to measure what watching costs.
 *
 *   node watch.js --url http://127.0.0.1:5000 --password PASSWORD
 *
 * Writes {"watching": true} once logged in, then, when its standard input
 * closes, {"events": N} (what the chat told it meanwhile) and exits.
 */
"use strict";

const { io } = require("socket.io-client");

const option = (name) => process.argv[process.argv.indexOf(`--${name}`) + 1];
const events = ["config", "all_sockets", "socket_connected", "socket_updated",
  "socket_disconnected", "room_joined", "room_left", "server_stats"];

const socket = io(`${option("url")}/admin`, {
  transports: ["websocket"],
  auth: { username: "admin", password: option("password") },
});
let heard = 0;
for (const event of events) {
  socket.on(event, () => { heard += 1; });
}
socket.once("connect", () => process.stdout.write(JSON.stringify({ watching: true }) + "\n"));
socket.on("connect_error", (error) => {
  process.stdout.write(JSON.stringify({ error: error.message }) + "\n");
  process.exit(1);
});
process.stdin.resume();
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify({ events: heard }) + "\n");
  socket.close();
  process.exit(0);
});
