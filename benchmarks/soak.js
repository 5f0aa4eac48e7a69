#!/usr/bin/env node
/*
 * Churn for the soak scenario of `make bench` (and tests/test_leaks.py):
 * many short-lived clients beside a few steady members, in phases, so that
 * what the server holds can be read after each phase's clients are gone.
 *
 *   node soak.js --url http://127.0.0.1:5000 [--clients 1500] [--phases 3]
 *                [--steady 6] [--concurrency 40] [--timeout 120]
 *                [--token-secret SECRET] [--plans 0,4,7] [--steps]
 *
 * The steady members (WebSocket and long-polling, socket.io-client 4.x and
 * 2.x) connect first, join the shared channels and stay connected to the
 * end. Each phase then runs --clients short-lived clients, --concurrency at
 * a time, each following one of PLANS in turn (--plans picks some by
 * number): a transport (WebSocket, long-polling, long-polling upgraded to
 * WebSocket), a client (4.x, or 2.x: Engine.IO 3), who it is (a guest,
 * named or not; a person verified by a token signed with --token-secret,
 * as the server's CHAT_TOKEN_SECRET; or a forged token, refused), and the
 * step it leaves at: right after connecting, after joining, in the middle
 * of a send (the ack not awaited), or after the whole visit (join a shared
 * channel and one of the phase's own, type, send, leave one, send again),
 * with a disconnect or, `dropped`, with its TCP connection cut unannounced.
 * A phase fails after --timeout seconds.
 *
 * With --steps, it writes {"steady": n} once the steady members have joined
 * and {"phase": n, ...} after each phase, and waits for a line on standard
 * input after each (the caller reads the server meanwhile). Prints one line
 * of JSON at the end; exits 0 when every client was served as planned and
 * no steady member was disconnected.
 */
"use strict";

const { createHmac, randomBytes } = require("node:crypto");
const { performance } = require("node:perf_hooks");
const { parseArgs } = require("node:util");
const { io } = require("socket.io-client");
const io2 = require("socket.io-client-2");

const ACK_TIMEOUT_MS = 10000;
const SHARED_CHANNELS = 3;
const PHASE_CHANNELS = 50;

// What each short-lived client does, in turn: the client's version, its
// transports, who it is (a guest, named or not; a person verified by a
// token, with --token-secret; or a bad token, refused), and the step it
// leaves at.
const PLANS = [
  { client: 4, transports: ["websocket"], leave: "connected" },
  { client: 4, transports: ["websocket"], leave: "joined", as: "named" },
  { client: 4, transports: ["websocket"], leave: "sending" },
  { client: 4, transports: ["websocket"], leave: "visited", as: "verified" },
  { client: 4, transports: ["websocket"], leave: "dropped" },
  { client: 4, transports: ["websocket"], leave: "refused", as: "forged" },
  { client: 4, transports: ["polling"], leave: "connected" },
  { client: 4, transports: ["polling"], leave: "sending", as: "verified" },
  { client: 4, transports: ["polling"], leave: "visited", as: "named" },
  { client: 4, transports: ["polling", "websocket"], leave: "visited" },
  { client: 2, transports: ["websocket"], leave: "visited" },
  { client: 2, transports: ["websocket"], leave: "joined" },
  { client: 2, transports: ["polling"], leave: "visited" },
];

const STEADY = [
  { client: 4, transports: ["websocket"] },
  { client: 4, transports: ["polling"] },
  { client: 2, transports: ["websocket"] },
  { client: 2, transports: ["polling"] },
];

function log(text) {
  process.stderr.write(`[${(performance.now() / 1000).toFixed(1)}s] soak: ${text}\n`);
}

function connect(url, { client, transports }, auth) {
  const options = { transports, reconnection: false, forceNew: true, timeout: ACK_TIMEOUT_MS };
  // socket.io-client 2.x has no `auth`: protocol 4 hands the server none.
  const socket = client === 2 ? io2(url, options) : io(url, { ...options, auth });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (error) => {
      socket.close();
      reject(new ConnectError(error.message ?? String(error)));
    });
  });
}

class ConnectError extends Error {}

/** An HS256 token for `sub`, as a host site signs one with `secret`. */
function token(secret, sub) {
  const encode = (part) => Buffer.from(JSON.stringify(part)).toString("base64url");
  const claims = { sub, name: `Soak ${sub}`, exp: Math.floor(Date.now() / 1000) + 3600 };
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** The `auth` of a client of `plan`: who it says it is. */
function authOf(plan, number, secret) {
  if (plan.as === "named") return { name: `guest ${number}`, person: `soak-person-${number % 7}` };
  if (plan.as === "verified" && secret) return { token: token(secret, `soak-${number % 50}`) };
  if (plan.as === "forged") return { token: token("not-the-secret-of-this-server-at-all", "mallory") };
  return undefined;
}

/** Emits an event and resolves with its ack, which must be ok. */
function call(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${event}: no ack`)), ACK_TIMEOUT_MS);
    socket.emit(event, payload, (ack) => {
      clearTimeout(timer);
      if (ack && ack.ok === true) resolve(ack);
      else reject(new Error(`${event}: ${ack?.code ?? "refused"} ${ack?.message ?? ""}`));
    });
  });
}

/** Cuts the TCP connection under a WebSocket client: no close frame, no goodbye. */
function drop(socket) {
  const ws = socket.io.engine.transport.ws;
  if (ws && typeof ws.terminate === "function") ws.terminate();
  else socket.disconnect();
}

/** One short-lived client, following `plan` (see PLANS). */
async function visit(url, plan, auth, channels, number) {
  let socket;
  try {
    socket = await connect(url, plan, auth);
  } catch (error) {
    if (plan.leave === "refused" && error instanceof ConnectError) return;
    throw error;
  }
  if (plan.leave === "refused") {
    socket.disconnect();
    throw new Error("a forged token was let in");
  }
  const { shared, own } = channels;
  try {
    if (plan.leave === "connected") return;
    await call(socket, "join", { channel: shared });
    if (plan.leave === "joined") return;
    if (plan.leave === "sending") {
      socket.emit("send_message", { channel: shared, message: `soak ${number}` }, () => {});
      return;
    }
    await call(socket, "join", { channel: own });
    await call(socket, "typing", { channel: shared });
    await call(socket, "send_message", { channel: shared, message: `soak ${number}` });
    await call(socket, "typing", { channel: own });
    await call(socket, "leave", { channel: shared });
    await call(socket, "send_message", { channel: own, message: `soak ${number}.2` });
  } finally {
    if (plan.leave === "dropped") drop(socket);
    else socket.disconnect();
  }
}

/** One phase: --clients short-lived clients, --concurrency at a time; what
went wrong is counted. */
async function churn(opts, channels, phase) {
  const outcome = { clients: opts.clients, errors: 0, first_error: null };
  let next = 0;
  const worker = async () => {
    while (next < opts.clients) {
      const number = next++;
      const plan = opts.plans[number % opts.plans.length];
      const visited = {
        shared: channels.shared[number % channels.shared.length],
        own: `${channels.prefix}-p${phase}-${number % PHASE_CHANNELS}`,
      };
      try {
        await visit(opts.url, plan, authOf(plan, number, opts["token-secret"]), visited, number);
      } catch (error) {
        outcome.errors++;
        outcome.first_error ??= error.message;
      }
    }
  };
  const startedAt = performance.now();
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.clients) }, worker));
  outcome.seconds = Math.round(performance.now() - startedAt) / 1000;
  return outcome;
}

async function steadyMembers(url, count, channels) {
  const members = [];
  for (let n = 0; n < count; n++) {
    const socket = await connect(url, STEADY[n % STEADY.length]);
    let lost = false;
    socket.on("disconnect", () => (lost = true));
    for (const channel of channels.shared) await call(socket, "join", { channel });
    members.push({ socket, lost: () => lost });
  }
  return members;
}

function waitForLine() {
  return new Promise((resolve) => {
    if (process.stdin.readableEnded) return resolve(); // the caller has gone
    const done = () => {
      process.stdin.off("data", onData);
      process.stdin.pause();
      resolve();
    };
    const onData = (chunk) => chunk.includes("\n") && done();
    process.stdin.on("data", onData);
    process.stdin.once("end", done);
    process.stdin.resume();
  });
}

function write(line) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(line)}\n`, resolve));
}

const NUMBERS = ["clients", "phases", "steady", "concurrency", "timeout"];

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      clients: { type: "string", default: "1500" },
      phases: { type: "string", default: "3" },
      steady: { type: "string", default: "6" },
      concurrency: { type: "string", default: "40" },
      timeout: { type: "string", default: "120" },
      "token-secret": { type: "string" },
      plans: { type: "string" },
      steps: { type: "boolean", default: false },
    },
  });
  if (!values.url) throw new Error("--url is required");
  const opts = { ...values };
  for (const name of NUMBERS) opts[name] = Number(values[name]);
  const chosen = values.plans?.split(",").map(Number) ?? PLANS.map((_, n) => n);
  opts.plans = chosen.map((n) => PLANS[n]).filter(Boolean);
  if (opts.plans.length === 0) throw new Error(`--plans: numbers from 0 to ${PLANS.length - 1}`);
  return opts;
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  const prefix = `soak-${randomBytes(4).toString("hex")}`;
  const channels = { prefix, shared: Array.from({ length: SHARED_CHANNELS }, (_, n) => `${prefix}-shared-${n}`) };
  const members = await steadyMembers(opts.url, opts.steady, channels);
  log(`${members.length} steady members joined ${channels.shared.length} channels`);
  if (opts.steps) {
    await write({ steady: members.length });
    await waitForLine();
  }
  const results = [];
  for (let phase = 0; phase < opts.phases; phase++) {
    const timer = setTimeout(() => fail(`phase ${phase} timed out after ${opts.timeout} s`), opts.timeout * 1000);
    const outcome = await churn(opts, channels, phase);
    clearTimeout(timer);
    log(`phase ${phase}: ${opts.clients} clients in ${outcome.seconds} s, ${outcome.errors} errors`);
    results.push(outcome);
    if (opts.steps) {
      await write({ phase, ...outcome });
      await waitForLine();
    }
  }
  const lost = members.filter((member) => member.lost()).length;
  for (const member of members) member.socket.disconnect();
  await new Promise((resolve) => setTimeout(resolve, 200)); // the goodbyes go out
  const errors = results.reduce((sum, outcome) => sum + outcome.errors, 0);
  const problems = [];
  if (errors) problems.push(`${errors} clients failed (first: ${results.find((r) => r.first_error).first_error})`);
  if (lost) problems.push(`${lost} steady members disconnected`);
  await write({
    scenario: "soak",
    steady: members.length,
    clients_per_phase: opts.clients,
    phases: results,
    ok: problems.length === 0,
    ...(problems.length ? { error: problems.join("; ") } : {}),
  });
  process.exit(problems.length ? 1 : 0);
}

function fail(error) {
  process.stdout.write(`${JSON.stringify({ scenario: "soak", ok: false, error })}\n`);
  process.exit(1);
}

main().catch((error) => fail(error.message));
