#!/usr/bin/env node
/*
 * Load generator for the chat's Socket.IO benchmarks.
 *
 *   node load.js burst       --url http://127.0.0.1:5000 [--clients 100] [--channels 10] [--messages 100]
 *   node load.js latency     --url http://127.0.0.1:5000 [--clients 100] [--channels 10]
 *                            [--rate 500] [--duration 5] [--latencies-file PATH]
 *   node load.js connections --url http://127.0.0.1:5000 [--clients 10000] [--channel-size 1000] [--hold]
 *   node load.js abuse       --url http://127.0.0.1:5000 [--clients 100] [--channels 10]
 *                            [--rate 500] [--duration 5] [--in-flight 200] [--warmup 1]
 *                            [--flood both|send|join] [--firehose] [--latencies-file PATH]
 *
 * Every scenario also takes --timeout SECONDS (default 120) and
 * --connect-concurrency N (default 200, connections being opened at once).
 * burst also takes --client 2: its clients are socket.io-client 2.3.1
 * (Engine.IO 3, Socket.IO 4) rather than 4.8.4; and --steps: once every
 * client has joined it writes {"phase": "joined"} and waits for a line on
 * standard input before sending, and writes {"phase": "delivered"} when the
 * last delivery arrived, so that the caller can read the server's CPU time
 * over the burst alone.
 *
 * burst:       every client sends --messages messages at once; measures how
 *              fast all of them reach every member of their channel.
 * latency:     sends at a fixed overall rate for --duration seconds; measures
 *              end-to-end latency per delivery (--latencies-file writes each
 *              one, in ms, one a line).
 * connections: opens --clients connections, puts the first --channel-size in
 *              one channel and the rest in channels of 100, then times the
 *              fan-out of one message to the big channel five times. With
 *              --hold it keeps the connections open after printing the result
 *              until standard input gets a line or is closed.
 * abuse:       latency's normal clients and load, beside one more client,
 *              connected the same way, that floods its own channel as fast as
 *              the server answers, with at most --in-flight events unanswered:
 *              `send_message`, `join` (rejoining its channel, `since` the
 *              newest seq it knows) or both in turn. The flood starts
 *              --warmup seconds before the normal load and ends once every
 *              normal message is delivered. It runs on a thread of its own,
 *              at a lower priority (nice 10 on Linux), so that its acks take
 *              no time from the thread timing the normal clients.
 *              With --firehose the abusive client waits for nothing: it
 *              emits --in-flight events every 5 ms whatever has been
 *              answered (pausing only while disconnected), and at the end
 *              counts what was not answered rather than waiting for it.
 *              Refusals of the flood (`rate_limited` or any other) are
 *              counted, not failures; the normal clients are checked as in
 *              latency.
 *
 * Prints one line of JSON on stdout; progress goes to stderr. Exits 0 when the
 * run verified (nothing lost, duplicated or out of order, no errors), else 1.
 * latency and abuse also report the load generator's own event-loop delay
 * while sending (generator_lag_p99_ms): a large one means the generator, not
 * the server, held deliveries back.
 * Channel names are fresh on every run, so no history is replayed on join.
 * 10,000 connections need as many file descriptors: check `ulimit -n`.
 */
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const { randomBytes } = require("node:crypto");
const { monitorEventLoopDelay, performance } = require("node:perf_hooks");
const { parseArgs } = require("node:util");
const { Worker, isMainThread, parentPort, workerData } = require("node:worker_threads");
const { io } = require("socket.io-client");

// The socket.io client the clients are made with (--client).
const CLIENTS = { 4: () => io, 2: () => require("socket.io-client-2") };
let connectClient = io;

const COMMON_DEFAULTS = { timeout: 120, "connect-concurrency": 200 };
const FANOUT_RUNS = 5;
const GROUP_SIZE = 100;
const MESSAGE_PAD = "x".repeat(48);
const ABUSER_ACK_TIMEOUT_MS = 5000;
const ABUSER_RETRY_CONNECT_MS = 100;
// The abuser's thread runs at this nice value (Linux): on a small machine it
// then takes CPU from neither the server nor the thread timing the normal
// clients, as an abuser on a machine of its own would not.
const ABUSER_NICE = 10;
const FLOOD_MODES = ["both", "send", "join"];
// A firehose abuser emits --in-flight events every this many ms.
const FIREHOSE_PERIOD_MS = 5;

// ---------------------------------------------------------------- helpers

function log(text) {
  process.stderr.write(`[${(performance.now() / 1000).toFixed(1)}s] ${text}\n`);
}

function round(value, digits) {
  if (value === null || !Number.isFinite(value)) return null;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function range(count) {
  return Array.from({ length: count }, (_, i) => i);
}

function newRunId() {
  return randomBytes(4).toString("hex");
}

function describe(ack) {
  if (!ack) return "no ack payload";
  return `${ack.code ?? "error"}: ${ack.message ?? JSON.stringify(ack)}`;
}

function deferred() {
  let resolve;
  const promise = new Promise((res) => (resolve = res));
  return { promise, resolve };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(fraction * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

class TimeoutError extends Error {}

/** One overall time limit per run; `within` races a promise against it. */
function createDeadline(seconds) {
  const expiry = deferred();
  const deadline = {
    expired: false,
    async within(promise, phase) {
      const timedOut = expiry.promise.then(() => {
        throw new TimeoutError(`timed out after ${seconds}s while ${phase}`);
      });
      const value = await Promise.race([promise, timedOut]);
      if (deadline.expired) await timedOut;
      return value;
    },
    clear: () => clearTimeout(timer),
  };
  const timer = setTimeout(() => {
    deadline.expired = true;
    expiry.resolve();
  }, seconds * 1000);
  return deadline;
}

/** Runs `task` on every item, at most `limit` at a time, until the deadline. */
async function forEachLimited(items, limit, deadline, task) {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !deadline.expired) {
      const index = next++;
      await task(items[index], index);
    }
  };
  await Promise.all(range(Math.min(limit, items.length)).map(worker));
}

// ---------------------------------------------------------------- clients

const openSockets = [];
let closing = false;
let unexpectedDisconnects = 0;

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const socket = connectClient(url, {
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      timeout: 20000,
    });
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve(socket);
    };
    const onError = (error) => {
      socket.off("connect", onConnect);
      socket.close();
      reject(error);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
}

function watchDisconnect(socket) {
  socket.on("disconnect", (reason) => {
    if (closing) return;
    unexpectedDisconnects++;
    if (unexpectedDisconnects <= 5) log(`a client disconnected: ${reason}`);
  });
}

function createPool() {
  return { clients: [], errors: 0, firstError: null };
}

/**
 * Opens `count` clients, `concurrency` at a time, into `pool`: the connected
 * ones as {index, socket} (index is the client's number, 0..count-1).
 */
async function connectClients(pool, url, count, concurrency, deadline) {
  const progress = setInterval(
    () => log(`connecting: ${pool.clients.length}/${count} connected, ${pool.errors} errors`),
    1000,
  );
  try {
    await deadline.within(
      forEachLimited(range(count), concurrency, deadline, async (index) => {
        try {
          const socket = await openSocket(url);
          openSockets.push(socket);
          watchDisconnect(socket);
          pool.clients.push({ index, socket });
        } catch (error) {
          pool.errors++;
          pool.firstError ??= error.message;
        }
      }),
      "connecting",
    );
  } finally {
    clearInterval(progress);
    pool.clients.sort((a, b) => a.index - b.index);
  }
  log(`connected ${pool.clients.length}/${count}, ${pool.errors} errors`);
}

async function joinChannel(socket, channel) {
  const ack = await new Promise((resolve) => socket.emit("join", { channel }, resolve));
  if (!ack || ack.ok !== true) throw new Error(`join ${channel} refused (${describe(ack)})`);
  if (ack.last_seq !== 0) throw new Error(`channel ${channel} is not fresh (last_seq ${ack.last_seq})`);
}

async function joinAll(clients, concurrency, deadline) {
  await deadline.within(
    forEachLimited(clients, concurrency, deadline, (client) =>
      joinChannel(client.socket, client.channelName),
    ),
    "joining channels",
  );
  log(`${clients.length} clients joined`);
}

function closeAll() {
  closing = true;
  for (const socket of openSockets) socket.disconnect();
}

// ---------------------------------------------------------------- delivery tracking

/*
 * Each client expects seq 1, 2, 3, ... of its channel. A seq beyond the next
 * expected one leaves a gap (remembered, normally never needed); a seq filling
 * a gap arrived out of order; any other earlier seq is a duplicate.
 */
function createTracker() {
  return { next: 1, unique: 0, deliveries: 0, duplicated: 0, outOfOrder: 0, gaps: null };
}

function recordSeq(tracker, seq) {
  tracker.deliveries++;
  if (seq === tracker.next) {
    tracker.next++;
  } else if (seq > tracker.next) {
    tracker.gaps ??= new Set();
    for (let missing = tracker.next; missing < seq; missing++) tracker.gaps.add(missing);
    tracker.next = seq + 1;
  } else if (tracker.gaps?.delete(seq)) {
    tracker.outOfOrder++;
  } else {
    tracker.duplicated++;
    return false;
  }
  tracker.unique++;
  return true;
}

/** Client i joins channel i % channels; returns the member count of each. */
function assignChannels(clients, channelNames) {
  const members = channelNames.map(() => 0);
  for (const client of clients) {
    client.channel = client.index % channelNames.length;
    client.channelName = channelNames[client.channel];
    client.tracker = createTracker();
    members[client.channel]++;
  }
  return members;
}

/**
 * Messages in flight: counts sends, acks and unique deliveries, and resolves
 * `done` once sending ended, every ack arrived and every accepted message
 * reached every member of its channel.
 */
function createTraffic(members) {
  return {
    members,
    sentTo: members.map(() => 0),
    ackSeqs: members.map(() => []),
    sent: 0,
    acked: 0,
    acksFailed: 0,
    firstAckError: null,
    awaited: 0,
    unique: 0,
    sendingDone: false,
    finishedAt: null,
    done: deferred(),
  };
}

function checkFinished(traffic) {
  if (
    traffic.finishedAt === null &&
    traffic.sendingDone &&
    traffic.acked === traffic.sent &&
    traffic.unique >= traffic.awaited
  ) {
    traffic.finishedAt = performance.now();
    traffic.done.resolve();
  }
}

function onAck(traffic, channel, ack) {
  traffic.acked++;
  if (ack && ack.ok === true) {
    traffic.ackSeqs[channel].push(ack.seq);
    traffic.awaited += traffic.members[channel];
  } else {
    traffic.acksFailed++;
    traffic.firstAckError ??= describe(ack);
  }
  checkFinished(traffic);
}

function sendMessage(traffic, client, text) {
  traffic.sent++;
  traffic.sentTo[client.channel]++;
  client.socket.emit("send_message", { channel: client.channelName, message: text }, (ack) =>
    onAck(traffic, client.channel, ack),
  );
}

function finishSending(traffic) {
  traffic.sendingDone = true;
  checkFinished(traffic);
}

/** Calls `onDelivery(message, receivedAt)` for each first delivery of a seq. */
function trackDeliveries(clients, traffic, onDelivery) {
  for (const client of clients) {
    client.socket.on("message", (message) => {
      const receivedAt = performance.now();
      if (!recordSeq(client.tracker, message.seq)) return;
      traffic.unique++;
      onDelivery?.(message, receivedAt);
      checkFinished(traffic);
    });
  }
}

function channelsWithBadAckSeqs(traffic) {
  return traffic.ackSeqs.filter((seqs) => {
    seqs.sort((a, b) => a - b);
    return seqs.some((seq, i) => seq !== i + 1);
  }).length;
}

/** Loss, duplicates and order over all clients, against what was sent. */
function verifyDeliveries(clients, traffic) {
  const totals = { expected: 0, deliveries: 0, lost: 0, duplicated: 0, outOfOrder: 0 };
  for (const { tracker, channel } of clients) {
    const expected = traffic.sentTo[channel];
    totals.expected += expected;
    totals.deliveries += tracker.deliveries;
    totals.lost += Math.max(0, expected - tracker.unique);
    totals.duplicated += tracker.duplicated;
    totals.outOfOrder += tracker.outOfOrder;
  }
  totals.badAckChannels = channelsWithBadAckSeqs(traffic);
  return totals;
}

function problemsOf({ failure, connectErrors, firstConnectError, traffic, totals }) {
  const problems = [];
  if (failure) problems.push(failure.message);
  if (connectErrors) problems.push(`${connectErrors} connect errors (first: ${firstConnectError})`);
  if (unexpectedDisconnects) problems.push(`${unexpectedDisconnects} clients disconnected`);
  if (traffic?.acksFailed) problems.push(`${traffic.acksFailed} sends refused (first: ${traffic.firstAckError})`);
  if (traffic && traffic.acked < traffic.sent) problems.push(`${traffic.sent - traffic.acked} acks missing`);
  if (totals?.badAckChannels) problems.push(`${totals.badAckChannels} channels acked seqs other than 1..N`);
  if (totals && (totals.lost || totals.duplicated || totals.outOfOrder)) {
    problems.push("deliveries lost, duplicated or out of order");
  }
  return problems;
}

/** Adds the delivery checks of a traffic scenario to its result, and the verdict. */
function trafficVerdict(result, { failure, pool, traffic, totals }) {
  result.lost = totals?.lost ?? 0;
  result.duplicated = totals?.duplicated ?? 0;
  result.out_of_order = totals?.outOfOrder ?? 0;
  result.connect_errors = pool.errors;
  const problems = problemsOf({
    failure,
    connectErrors: pool.errors,
    firstConnectError: pool.firstError,
    traffic,
    totals,
  });
  return withVerdict(result, problems);
}

function withVerdict(result, problems) {
  result.ok = problems.length === 0;
  if (!result.ok) result.error = problems.join("; ");
  return result;
}

/** Puts client i in channel i % channels, all channel names fresh. */
function channelTraffic(clients, channels) {
  if (clients.length === 0) throw new Error("no client connected");
  const runId = newRunId();
  const channelNames = range(channels).map((n) => `bench-${runId}-${n}`);
  return createTraffic(assignChannels(clients, channelNames));
}

// ---------------------------------------------------------------- burst

async function runBurst(opts, deadline) {
  const pool = createPool();
  let traffic = null;
  let startedAt = null;
  let failure = null;
  try {
    await connectClients(pool, opts.url, opts.clients, opts["connect-concurrency"], deadline);
    traffic = channelTraffic(pool.clients, opts.channels);
    trackDeliveries(pool.clients, traffic);
    await joinAll(pool.clients, opts["connect-concurrency"], deadline);
    if (opts.steps) {
      await printLine({ phase: "joined" });
      await waitForStdinLineOrClose();
    }

    startedAt = performance.now();
    for (const client of pool.clients) {
      for (let n = 0; n < opts.messages; n++) {
        sendMessage(traffic, client, `burst ${client.index}.${n} ${MESSAGE_PAD}`);
      }
    }
    finishSending(traffic);
    log(`sent ${traffic.sent} messages, waiting for deliveries`);
    await deadline.within(traffic.done.promise, "waiting for deliveries");
    if (opts.steps) await printLine({ phase: "delivered" });
  } catch (error) {
    failure = error;
  }

  const totals = traffic ? verifyDeliveries(pool.clients, traffic) : null;
  const endedAt = traffic?.finishedAt ?? performance.now();
  const elapsed = startedAt === null ? null : (endedAt - startedAt) / 1000;
  const result = {
    scenario: "burst",
    clients: opts.clients,
    channels: opts.channels,
    messages_sent: traffic?.sent ?? 0,
    deliveries_expected: totals?.expected ?? 0,
    deliveries: totals?.deliveries ?? 0,
    elapsed_s: round(elapsed, 3),
    delivered_per_s: elapsed ? Math.round((totals?.deliveries ?? 0) / elapsed) : null,
    acks_failed: traffic?.acksFailed ?? 0,
  };
  return trafficVerdict(result, { failure, pool, traffic, totals });
}

// ---------------------------------------------------------------- latency

/**
 * Calls send(n) for n = 0..total-1, message n being due `n / rate` seconds
 * after the start. Late timers are caught up at once, so the rate holds even
 * when timers fire coarsely. Resolves with the start and last send times.
 */
function sendAtRate(total, rate, deadline, send) {
  return new Promise((resolve) => {
    const interval = 1000 / rate;
    const startedAt = performance.now();
    let lastSentAt = startedAt;
    let sent = 0;
    const tick = () => {
      while (sent < total && startedAt + sent * interval <= performance.now()) {
        send(sent++);
        lastSentAt = performance.now();
      }
      if (sent === total || deadline.expired) return resolve({ startedAt, lastSentAt, sent });
      const wait = startedAt + sent * interval - performance.now();
      if (wait >= 1) setTimeout(tick, wait);
      else setImmediate(tick);
    };
    tick();
  });
}

/** One latency (ms) a line, in the order the deliveries arrived. */
function writeLatencies(path, latencies) {
  const lines = Array.from(latencies, (ms) => `${ms.toFixed(3)}\n`);
  fs.writeFileSync(path, lines.join(""));
}

/**
 * The normal clients of latency and abuse: connect, join, send at --rate for
 * --duration seconds, and time each delivery. `abuser` (abuse only) floods
 * from before the first send until every message is delivered.
 */
async function measureLatency(name, opts, deadline, abuser = null) {
  const total = Math.round(opts.rate * opts.duration);
  const pool = createPool();
  const lag = monitorEventLoopDelay({ resolution: 5 });
  let traffic = null;
  let schedule = null;
  let latencies = new Float64Array(0);
  let recorded = 0;
  let failure = null;
  let flood = null;
  try {
    await connectClients(pool, opts.url, opts.clients, opts["connect-concurrency"], deadline);
    traffic = channelTraffic(pool.clients, opts.channels);
    const { clients } = pool;
    const expected = range(total).reduce((sum, n) => sum + traffic.members[clients[n % clients.length].channel], 0);
    latencies = new Float64Array(expected);
    trackDeliveries(clients, traffic, (message, receivedAt) => {
      if (recorded < latencies.length) latencies[recorded++] = receivedAt - parseFloat(message.message.slice(2));
    });
    await joinAll(clients, opts["connect-concurrency"], deadline);
    if (abuser) await abuser.start(deadline);

    log(`sending ${total} messages at ${opts.rate}/s`);
    lag.enable();
    schedule = await sendAtRate(total, opts.rate, deadline, (n) => {
      sendMessage(traffic, clients[n % clients.length], `t=${performance.now().toFixed(3)} ${MESSAGE_PAD}`);
    });
    if (schedule.sent < total) throw new TimeoutError(`timed out after ${opts.timeout}s while sending`);
    finishSending(traffic);
    log(`sent ${traffic.sent} messages, waiting for deliveries`);
    await deadline.within(traffic.done.promise, "waiting for deliveries");
  } catch (error) {
    failure = error;
  } finally {
    lag.disable();
  }
  if (abuser) {
    try {
      flood = await abuser.stop(deadline);
    } catch (error) {
      failure ??= error;
    }
  }

  const arrivals = latencies.subarray(0, recorded);
  if (opts["latencies-file"]) writeLatencies(opts["latencies-file"], arrivals);
  const measured = arrivals.slice().sort();
  const totals = traffic ? verifyDeliveries(pool.clients, traffic) : null;
  const sendSpan = schedule ? (schedule.lastSentAt - schedule.startedAt) / 1000 : 0;
  const result = {
    scenario: name,
    rate: opts.rate,
    duration_s: opts.duration,
    achieved_rate: schedule && schedule.sent > 1 && sendSpan > 0 ? round((schedule.sent - 1) / sendSpan, 1) : null,
    messages_sent: traffic?.sent ?? 0,
    deliveries: totals?.deliveries ?? 0,
    p50_ms: round(percentile(measured, 0.5), 3),
    p90_ms: round(percentile(measured, 0.9), 3),
    p99_ms: round(percentile(measured, 0.99), 3),
    max_ms: round(measured.length ? measured[measured.length - 1] : null, 3),
    generator_lag_p99_ms: lag.count ? round(lag.percentile(99) / 1e6, 3) : null,
  };
  if (abuser) Object.assign(result, abuser.describe(flood));
  return trafficVerdict(result, { failure, pool, traffic, totals });
}

function runLatency(opts, deadline) {
  return measureLatency("latency", opts, deadline);
}

// ---------------------------------------------------------------- abuse

function runAbuse(opts, deadline) {
  const abuser = createAbuser({
    url: opts.url,
    channel: `bench-${newRunId()}-abuse`,
    inFlight: opts["in-flight"],
    flood: opts.flood,
    firehose: opts.firehose,
    ackTimeoutMs: ABUSER_ACK_TIMEOUT_MS,
  });
  abuser.warmup = opts.warmup;
  return measureLatency("abuse", opts, deadline, abuser);
}

/** The next message from the abuser's thread; its "error" or exit rejects. */
function replyOf(worker) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
    };
    const onMessage = (reply) => {
      cleanup();
      if (reply.type === "error") reject(new Error(`abusive client: ${reply.message}`));
      else resolve(reply);
    };
    const onError = (error) => {
      cleanup();
      reject(error);
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`abusive client's thread exited with ${code}`));
    };
    worker.on("message", onMessage);
    worker.on("error", onError);
    worker.on("exit", onExit);
  });
}

/**
 * The abusive client, driven from the main thread: start() connects it, joins
 * its channel, starts the flood and waits out the warm-up; stop() ends the
 * flood, waits for its last answers and returns its counts.
 */
function createAbuser(settings) {
  let worker = null;
  return {
    warmup: 0,
    async start(deadline) {
      worker = new Worker(__filename, { workerData: settings });
      await deadline.within(replyOf(worker), "connecting the abusive client");
      const pace = settings.firehose ? `${settings.inFlight} every ${FIREHOSE_PERIOD_MS} ms` : `${settings.inFlight} in flight`;
      log(`abusive client joined ${settings.channel}; flooding (${settings.flood}, ${pace})`);
      worker.postMessage({ type: "start" });
      await deadline.within(new Promise((resolve) => setTimeout(resolve, this.warmup * 1000)), "warming up");
    },
    async stop(deadline) {
      if (!worker) return null;
      try {
        const stopped = replyOf(worker);
        worker.postMessage({ type: "stop" });
        const { stats } = await deadline.within(stopped, "stopping the abusive client");
        log(`abusive client: ${stats.attempted} events attempted, ${stats.accepted} accepted`);
        return stats;
      } finally {
        await worker.terminate();
      }
    },
    describe(stats) {
      const perSecond = (count) => (stats?.floodSeconds ? round(count / stats.floodSeconds, 1) : null);
      return {
        flood: settings.flood,
        firehose: Boolean(settings.firehose),
        in_flight: settings.inFlight,
        warmup_s: this.warmup,
        abuser_flood_s: round(stats?.floodSeconds ?? null, 3),
        abuser_attempted: stats?.attempted ?? 0,
        abuser_accepted: stats?.accepted ?? 0,
        abuser_attempted_per_s: perSecond(stats?.attempted ?? 0),
        abuser_accepted_per_s: perSecond(stats?.accepted ?? 0),
        abuser_sends_attempted: stats?.send.attempted ?? 0,
        abuser_sends_accepted: stats?.send.accepted ?? 0,
        abuser_joins_attempted: stats?.join.attempted ?? 0,
        abuser_joins_accepted: stats?.join.accepted ?? 0,
        abuser_refused: stats?.refused ?? {},
        abuser_first_refusal: stats?.firstRefusal ?? null,
        abuser_chat_errors: stats?.chatErrors ?? 0,
        abuser_unanswered: stats?.unanswered ?? 0,
        abuser_deliveries: stats?.deliveries ?? 0,
        abuser_disconnects: stats?.disconnects ?? 0,
        abuser_first_disconnect: stats?.firstDisconnect ?? null,
        abuser_connect_errors: stats?.connectErrors ?? 0,
        abuser_nice: stats?.nice ?? null,
      };
    },
  };
}

/*
 * The abuser's thread. It keeps `inFlight` events unanswered: each answer
 * (or ack timeout) sends the next one at once. Refusals are counted by code.
 * Disconnected, it reconnects and rejoins, as a flooding client would; the
 * events then unanswered count as such.
 */
/** Lowers this thread's priority (Linux: a thread id is a pid to setpriority). */
function niceThisThread(nice) {
  try {
    const tid = Number(fs.readlinkSync("/proc/thread-self").split("/").pop());
    os.setPriority(tid, nice);
    return os.getPriority(tid);
  } catch {
    return null;
  }
}

function runAbuserThread({ url, channel, inFlight, flood, firehose, ackTimeoutMs }) {
  const stats = {
    nice: niceThisThread(ABUSER_NICE),
    send: { attempted: 0, accepted: 0 },
    join: { attempted: 0, accepted: 0 },
    attempted: 0,
    accepted: 0,
    refused: {},
    firstRefusal: null,
    chatErrors: 0,
    unanswered: 0,
    deliveries: 0,
    disconnects: 0,
    firstDisconnect: null,
    connectErrors: 0,
    floodSeconds: null,
  };
  let socket = null;
  let generation = 0;
  let connected = false;
  let running = false; // between start and stop
  let stopping = false; // stopped, answers still awaited
  let stopped = false;
  let pending = 0;
  let issued = 0;
  let lastSeq = 0;
  let startedAt = null;
  let hose = null; // the firehose's timer

  const post = (message) => parentPort.postMessage(message);

  function finishIfDrained() {
    if (!stopping || (pending > 0 && !firehose)) return;
    stopping = false;
    stats.unanswered += firehose ? pending : 0; // a firehose waits for nothing
    pending = 0;
    stats.attempted = stats.send.attempted + stats.join.attempted;
    stats.accepted = stats.send.accepted + stats.join.accepted;
    if (socket) {
      connected = false;
      generation++;
      socket.disconnect();
    }
    post({ type: "result", stats });
  }

  /** Counts the answer to one event: accepted, refused (by code) or none. */
  function record(kind, error, ack) {
    if (error) {
      stats.unanswered++;
    } else if (ack && ack.ok === true) {
      stats[kind].accepted++;
      lastSeq = Math.max(lastSeq, (kind === "send" ? ack.seq : ack.last_seq) ?? 0);
    } else {
      const code = ack?.code ?? "no ack payload";
      stats.refused[code] = (stats.refused[code] ?? 0) + 1;
      stats.firstRefusal ??= ack ?? null;
    }
  }

  function answered(kind, mine, error, ack) {
    if (mine !== generation || (firehose && !running)) return; // given up already
    pending--;
    record(kind, error, ack);
    if (!firehose) pump();
    finishIfDrained();
  }

  function issue() {
    const kind = flood === "both" ? (issued % 2 ? "join" : "send") : flood;
    issued++;
    stats[kind].attempted++;
    pending++;
    const mine = generation;
    const [event, payload] =
      kind === "send"
        ? ["send_message", { channel, message: `flood ${issued} ${MESSAGE_PAD}` }]
        : ["join", { channel, since: lastSeq }];
    const answer = (error, ack) => answered(kind, mine, error, ack);
    if (firehose) socket.emit(event, payload, (ack) => answer(null, ack));
    else socket.timeout(ackTimeoutMs).emit(event, payload, answer);
  }

  function pump() {
    if (firehose) return;
    while (running && connected && pending < inFlight) issue();
  }

  /** The firehose: inFlight events every period while connected. */
  function spray() {
    if (!running || !connected) return;
    for (let n = 0; n < inFlight; n++) issue();
  }

  /** Connects and joins; the first time, that join is setup, not flood. */
  async function connect(first) {
    for (;;) {
      try {
        socket = await openSocket(url);
        break;
      } catch (error) {
        stats.connectErrors++;
        if (first || stopped) throw error;
        await new Promise((resolve) => setTimeout(resolve, ABUSER_RETRY_CONNECT_MS));
      }
    }
    const mine = ++generation;
    socket.on("message", (message) => {
      stats.deliveries++;
      lastSeq = Math.max(lastSeq, message.seq ?? 0);
    });
    socket.on("chat_error", () => stats.chatErrors++);
    socket.on("disconnect", (reason) => {
      if (mine !== generation) return; // closed by us
      connected = false;
      generation++;
      stats.disconnects++;
      stats.firstDisconnect ??= reason;
      stats.unanswered += pending;
      pending = 0;
      if (stopped) finishIfDrained();
      else reconnect();
    });
    const join = socket.timeout(ackTimeoutMs).emitWithAck("join", { channel, since: lastSeq });
    if (first) return join;
    stats.join.attempted++;
    let ack = null;
    try {
      ack = await join;
    } catch (error) {
      record("join", error, null);
      throw error;
    }
    record("join", null, ack);
    return ack;
  }

  /** After a disconnect: connect again and go on flooding, rejoined or not. */
  function reconnect() {
    connect(false)
      .catch(() => null)
      .then(() => {
        if (!socket.connected) return; // lost again: its disconnect reconnects
        connected = true;
        pump();
      });
  }

  parentPort.on("message", ({ type }) => {
    if (type === "start") {
      running = true;
      startedAt = performance.now();
      if (firehose) hose = setInterval(spray, FIREHOSE_PERIOD_MS);
      pump();
    } else if (type === "stop") {
      running = false;
      clearInterval(hose);
      stopping = true;
      stopped = true;
      if (startedAt !== null) stats.floodSeconds = (performance.now() - startedAt) / 1000;
      finishIfDrained();
    }
  });

  (async () => {
    try {
      const ack = await connect(true);
      if (ack?.ok !== true) throw new Error(`join ${channel} refused (${describe(ack)})`);
      if (ack.last_seq !== 0) throw new Error(`channel ${channel} is not fresh (last_seq ${ack.last_seq})`);
      connected = true;
      post({ type: "ready" });
    } catch (error) {
      post({ type: "error", message: error.message });
    }
  })();
}

// ---------------------------------------------------------------- connections

/** The first `channelSize` clients share one channel; the rest go in groups. */
function assignRooms(clients, channelSize, runId) {
  for (const client of clients) {
    const inBigChannel = client.index < channelSize;
    const group = Math.floor((client.index - channelSize) / GROUP_SIZE);
    client.channelName = inBigChannel ? `bench-${runId}-big` : `bench-${runId}-g${group}`;
    client.lastSeq = 0;
  }
  return clients.filter((client) => client.index < channelSize);
}

/** Sends one message to the big channel; resolves with ms until all have it. */
async function measureFanout(members, fanout, seq, deadline) {
  fanout.seq = seq;
  fanout.pending = members.length;
  fanout.finished = deferred();
  const [sender] = members;
  const acked = deferred();
  const startedAt = performance.now();
  sender.socket.emit(
    "send_message",
    { channel: sender.channelName, message: `fanout ${seq} ${MESSAGE_PAD}` },
    acked.resolve,
  );
  const [finishedAt, ack] = await deadline.within(
    Promise.all([fanout.finished.promise, acked.promise]),
    `waiting for fan-out ${seq}`,
  );
  if (!ack || ack.ok !== true) throw new Error(`fan-out send refused (${describe(ack)})`);
  if (ack.seq !== seq) throw new Error(`fan-out send acked seq ${ack.seq}, expected ${seq}`);
  return finishedAt - startedAt;
}

function trackFanout(members, fanout) {
  for (const client of members) {
    client.socket.on("message", (message) => {
      if (message.seq <= client.lastSeq) return;
      client.lastSeq = message.seq;
      if (message.seq === fanout.seq && --fanout.pending === 0) {
        fanout.finished.resolve(performance.now());
      }
    });
  }
}

async function runConnections(opts, deadline) {
  const runId = newRunId();
  const channelSize = Math.min(opts["channel-size"], opts.clients);
  const concurrency = opts["connect-concurrency"];
  const pool = createPool();
  let connectSeconds = null;
  const runs = [];
  let failure = null;
  try {
    const startedAt = performance.now();
    await connectClients(pool, opts.url, opts.clients, concurrency, deadline);
    connectSeconds = (performance.now() - startedAt) / 1000;

    const members = assignRooms(pool.clients, channelSize, runId);
    if (members.length === 0) throw new Error("no member of the big channel connected");
    const fanout = { seq: 0, pending: 0, finished: null };
    trackFanout(members, fanout);
    await joinAll(pool.clients, concurrency, deadline);

    for (let seq = 1; seq <= FANOUT_RUNS; seq++) {
      runs.push(await measureFanout(members, fanout, seq, deadline));
      log(`fan-out ${seq} to ${members.length} members: ${runs.at(-1).toFixed(1)} ms`);
    }
  } catch (error) {
    failure = error;
  }

  const result = {
    scenario: "connections",
    clients: opts.clients,
    connected: pool.clients.length,
    connect_errors: pool.errors,
    connect_s: round(connectSeconds, 3),
    channel_size: channelSize,
    fanout_ms: runs.length ? round(median(runs), 3) : null,
    fanout_runs_ms: runs.map((ms) => round(ms, 3)),
  };
  const problems = problemsOf({ failure, connectErrors: pool.errors, firstConnectError: pool.firstError });
  return withVerdict(result, problems);
}

// ---------------------------------------------------------------- command line

const SCENARIOS = {
  burst: { run: runBurst, defaults: { clients: 100, channels: 10, messages: 100 } },
  latency: { run: runLatency, defaults: { clients: 100, channels: 10, rate: 500, duration: 5 } },
  connections: { run: runConnections, defaults: { clients: 10000, "channel-size": 1000 } },
  abuse: {
    run: runAbuse,
    defaults: { clients: 100, channels: 10, rate: 500, duration: 5, "in-flight": 200, warmup: 1, flood: "both" },
  },
};

const INTEGER_OPTIONS = new Set(["clients", "channels", "messages", "channel-size", "connect-concurrency", "in-flight"]);
const NUMBER_OPTIONS = new Set(["rate", "duration", "timeout", "warmup"]);

function usage() {
  return `usage: node load.js <${Object.keys(SCENARIOS).join("|")}> --url URL [--option value ...]`;
}

function parseOptions(argv) {
  const stringOption = { type: "string" };
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: stringOption,
      "latencies-file": stringOption,
      flood: stringOption,
      client: { type: "string", default: "4" },
      hold: { type: "boolean", default: false },
      firehose: { type: "boolean", default: false },
      steps: { type: "boolean", default: false },
      ...Object.fromEntries([...INTEGER_OPTIONS, ...NUMBER_OPTIONS].map((name) => [name, stringOption])),
    },
  });
  const [name, ...extra] = positionals;
  const scenario = SCENARIOS[name];
  if (!scenario || extra.length) throw new Error(usage());
  if (!values.url) throw new Error(`--url is required\n${usage()}`);

  const opts = { ...COMMON_DEFAULTS, ...scenario.defaults, ...values };
  if (!(opts.client in CLIENTS) || (opts.client !== "4" && name !== "burst")) {
    throw new Error("--client must be 4, or 2 for burst");
  }
  if (opts.flood !== undefined && !FLOOD_MODES.includes(opts.flood)) {
    throw new Error(`--flood must be one of ${FLOOD_MODES.join(", ")}`);
  }
  for (const [key, value] of Object.entries(opts)) {
    if (!INTEGER_OPTIONS.has(key) && !NUMBER_OPTIONS.has(key)) continue;
    const number = Number(value);
    const valid = INTEGER_OPTIONS.has(key) ? Number.isInteger(number) && number > 0 : number > 0;
    if (!valid) throw new Error(`--${key} must be a positive ${INTEGER_OPTIONS.has(key) ? "integer" : "number"}`);
    opts[key] = number;
  }
  return { name, scenario, opts };
}

function printLine(result) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(result)}\n`, resolve));
}

function waitForStdinLineOrClose() {
  return new Promise((resolve) => {
    process.stdin.on("data", (chunk) => chunk.includes("\n") && resolve());
    process.stdin.once("end", resolve);
    process.stdin.once("error", resolve);
    process.stdin.resume();
  });
}

async function main() {
  let parsed;
  try {
    parsed = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  const { name, scenario, opts } = parsed;
  connectClient = CLIENTS[opts.client]();
  const deadline = createDeadline(opts.timeout);
  log(`${name} against ${opts.url}`);
  const result = await scenario.run(opts, deadline);
  deadline.clear();
  await printLine(result);

  if (name === "connections" && opts.hold) {
    log(`holding ${openSockets.length} connections until standard input gets a line or closes`);
    await waitForStdinLineOrClose();
  }
  closeAll();
  process.exit(result.ok ? 0 : 1);
}

if (isMainThread) main();
else runAbuserThread(workerData);
