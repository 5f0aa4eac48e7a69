"""Faults for end-to-end tests: a Redis of our own to stop and freeze, gunicorn
workers to kill, messages committed behind the servers' backs, and traffic
from pages that keep count of every message they were acked and delivered.

The promise these check: an ack means the message is stored, and every member
of a channel gets every stored message once, in seq order, whatever happens
to Redis or to a process.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import engineio
import psycopg
import redis
import requests
import socketio
from servers import free_port

REDIS_BINARY = "redis-server"


class RedisServer:
    """A `redis-server` of a test's own, on a free port, keeping nothing on disk.

    `stop()` then `start()` brings it back on the same port and empty, as a
    real restart of a cache does; `freeze()` and `thaw()` stop and resume the
    process (SIGSTOP, SIGCONT), so connections stay open but nothing answers.
    """

    def __init__(self, workdir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"redis-{self.port}.log"
        self.process = None

    @staticmethod
    def available():
        """True when the redis-server binary is installed."""
        return shutil.which(REDIS_BINARY) is not None

    def start(self, timeout=10):
        """Start it and wait until it answers PING."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()}")
            try:
                client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
            finally:
                client.close()
        raise RuntimeError(f"redis-server did not answer in time:\n{self.log()}")

    def stop(self, timeout=10):
        """Stop it (SIGTERM) and wait for it to exit; its data is gone."""
        if self.process and self.process.poll() is None:
            self.thaw()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def freeze(self):
        """Suspend the process: clients' connections hang, unanswered."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        """Resume a frozen process."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def cleanup(self):
        """Thaw and kill it, whatever state the test left it in."""
        if self.process and self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self):
        """Everything redis-server printed."""
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )


# gunicorn workers


def worker_pid(server):
    """The pid of the worker of a `make serve` process (its master's only
    child), or None while the master has none."""
    master = server.process.pid
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        children = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True
        ).stdout
    pids = [int(pid) for pid in children.split()]
    return pids[0] if pids else None


def kill_worker(server):
    """kill -9 the worker of a `make serve` process; return its pid.

    No handler runs: the worker's connections drop, its sessions and presence
    vanish, and its master spawns a new worker.
    """
    pid = worker_pid(server)
    assert pid is not None, "the gunicorn master has no worker"
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_for_new_worker(server, old_pid, timeout=20):
    """Wait until the master has replaced `old_pid` with a worker that serves
    /healthz; return the new worker's pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = worker_pid(server)
        if pid not in (None, old_pid):
            try:
                requests.get(f"{server.url}/healthz", timeout=1)
                return pid
            except requests.RequestException:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no new worker within {timeout} s:\n{server.log()[-3000:]}")


# Server state seen from outside


def tracebacks(servers):
    """Every traceback the servers logged, each with the lines that follow it."""
    found = []
    for server in servers:
        log = server.log()
        for match in re.finditer(r"Traceback \(most recent call last\)", log):
            found.append(f"{server.url}:\n{log[match.start():match.start() + 2000]}")
    return found


def health(server):
    """GET /healthz: (status code, JSON body)."""
    response = requests.get(f"{server.url}/healthz", timeout=5)
    return response.status_code, response.json()


def commit_without_publishing(database_url, channel, text, author="outside"):
    """Store a message straight in PostgreSQL, as a process that died between
    its commit and its publish would leave it: numbered like the server does
    (the channel's row lock makes concurrent writers take turns), never sent
    to Redis. Returns `{id, seq, committed_at}` (monotonic time)."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        seq = connection.execute(
            "INSERT INTO channels (name, last_seq, last_message_at)"
            " VALUES (%s, 1, now()) ON CONFLICT (name) DO UPDATE"
            " SET last_seq = channels.last_seq + 1, last_message_at = now()"
            " RETURNING last_seq",
            (channel,),
        ).fetchone()[0]
        message_id = connection.execute(
            "INSERT INTO messages (channel, seq, body, author, created_at)"
            " VALUES (%s, %s, %s, %s, now()) RETURNING id",
            (channel, seq, text, author),
        ).fetchone()[0]
    return {"id": message_id, "seq": seq, "committed_at": time.monotonic()}


@contextmanager
def channel_locked(database_url, channel):
    """Hold a channel's row lock: sends to it wait inside PostgreSQL, still
    unacked, until the block ends."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        locked = connection.execute(
            "SELECT name FROM channels WHERE name = %s FOR UPDATE", (channel,)
        ).fetchone()
        assert locked, f"no channel {channel!r} to lock yet"
        yield


def stored_seqs(database_url, channels):
    """channel -> the seqs stored in PostgreSQL, in order."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT channel, seq FROM messages WHERE channel = ANY(%s)"
            " ORDER BY channel, seq",
            (list(channels),),
        ).fetchall()
    stored = {channel: [] for channel in channels}
    for channel, seq in rows:
        stored[channel].append(seq)
    return stored


# Pages


class _InOrderEngineIO(engineio.Client):
    # python-engineio hands every incoming message to a new thread, so two
    # messages can reach the handlers in either order; the page under test
    # must be judged on the order they came off the wire.
    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class _InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return _InOrderEngineIO


@dataclass
class Attempt:
    """One try at sending: how it ended, after how long, and the ack if any."""

    outcome: str  # acked, unanswered (no ack in time), interrupted, offline
    seconds: float
    ack: dict | None = None


@dataclass
class Send:
    """One message a page sends, with every attempt until it was acked."""

    channel: str
    client_id: str
    text: str
    attempts: list = field(default_factory=list)
    ack: dict | None = None
    acked_at: float | None = None


@dataclass
class Arrival:
    """A `message` event as a member received it."""

    seq: int
    channel: str
    client_id: str | None
    at: float


class Page:
    """One member's chat page in one channel, as the real page behaves.

    On every (re)connect it joins with `since` = the highest seq it has seen
    (none the first time); it records every `message` it receives, in wire
    order; a send that is not acked, or whose connection drops, is retried
    with the same client_id until it is acked.
    """

    def __init__(self, url, channel, name, transports=("websocket",)):
        self.url = url
        self.channel = channel
        self.name = name
        self.transports = list(transports)
        # When its connection last dropped (None while joined), and the
        # longest time it spent without one.
        self.down_since = None
        self.longest_outage = 0.0
        self.arrivals = []
        self.join_acks = []
        self.resyncs = []
        self.errors = []
        self.last_seq = 0
        self.lock = threading.Lock()
        self.joined = threading.Event()
        self.waiting = set()  # acks being waited for, released on disconnect
        self.client = _InOrderClient(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1,
        )
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", self._on_disconnect)
        self.client.on("message", self._on_message)
        self.client.on("resync", self.resyncs.append)
        self.client.on("chat_error", self.errors.append)

    def open(self, timeout=10):
        """Connect by WebSocket and wait until the first join is acked."""
        self.client.connect(
            self.url,
            transports=self.transports,
            auth={"name": self.name},
            wait_timeout=timeout,
        )
        assert self.joined.wait(timeout), f"{self.name} could not join"
        return self

    def close(self):
        """Disconnect, and stop reconnecting."""
        self.client.shutdown()

    @property
    def connected(self):
        """Connected and joined right now."""
        return self.client.connected and self.joined.is_set()

    def _on_connect(self):
        self.joined.clear()
        payload = {"channel": self.channel}
        if self.last_seq:
            payload["since"] = self.last_seq
        # The ack comes through the reader thread this handler runs on, so
        # wait for it there, not here.
        self.client.emit("join", payload, callback=self._on_join)

    def _on_join(self, ack):
        self.join_acks.append(ack)
        if isinstance(ack, dict) and ack.get("ok"):
            if self.down_since is not None:
                outage = time.monotonic() - self.down_since
                self.longest_outage = max(self.longest_outage, outage)
                self.down_since = None
            self.joined.set()
        else:
            # A refused join (say the database is briefly down): ask again.
            retry = threading.Timer(0.5, self._rejoin)
            retry.daemon = True
            retry.start()

    def _rejoin(self):
        if self.client.connected and not self.joined.is_set():
            try:
                self._on_connect()
            except socketio.exceptions.SocketIOError:
                pass  # disconnected meanwhile; the next connect joins

    def _on_disconnect(self, *reason):
        self.joined.clear()
        if self.down_since is None:
            self.down_since = time.monotonic()
        with self.lock:
            for answered in self.waiting:
                answered.set()

    def _on_message(self, message):
        with self.lock:
            self.arrivals.append(
                Arrival(
                    message.get("seq"),
                    message.get("channel"),
                    message.get("client_id"),
                    time.monotonic(),
                )
            )
            if isinstance(message.get("seq"), int):
                self.last_seq = max(self.last_seq, message["seq"])

    def attempt(self, payload, timeout=5):
        """Emit one `send_message` and wait for its ack; an Attempt."""
        started = time.monotonic()
        if not self.joined.wait(timeout):
            return Attempt("offline", time.monotonic() - started)
        answered, acks = threading.Event(), []

        def on_ack(*args):
            acks.append(args[0] if args else None)
            answered.set()

        # Waiting first, then looking at the connection: a disconnect either
        # came before (and shows) or will release the wait.
        with self.lock:
            self.waiting.add(answered)
        try:
            started = time.monotonic()
            if not self.joined.is_set():
                raise socketio.exceptions.DisconnectedError()
            self.client.emit("send_message", payload, callback=on_ack)
            in_time = answered.wait(timeout)
        except socketio.exceptions.SocketIOError:
            in_time = True  # not connected any more: interrupted
        finally:
            with self.lock:
                self.waiting.discard(answered)
        seconds = time.monotonic() - started
        if acks:
            return Attempt("acked", seconds, acks[0])
        return Attempt("interrupted" if in_time else "unanswered", seconds)

    def send(self, send, give_up_at):
        """Send a message until it is acked ok, or until `give_up_at()` (a
        monotonic moment that may move) passes."""
        payload = {
            "channel": send.channel,
            "message": send.text,
            "client_id": send.client_id,
        }
        while time.monotonic() < give_up_at():
            attempt = self.attempt(payload)
            send.attempts.append(attempt)
            if attempt.outcome == "acked":
                if isinstance(attempt.ack, dict) and attempt.ack.get("ok"):
                    send.ack, send.acked_at = attempt.ack, time.monotonic()
                    return
                time.sleep(0.2)  # refused, say `unavailable`: try again soon

    def received(self):
        """The Arrivals so far, in the order they came."""
        with self.lock:
            return list(self.arrivals)


# Traffic


class Traffic:
    """Pages spread over server URLs and channels, some of them sending.

    Page i connects to urls[i % len(urls)] and joins channels[i % channels],
    so every process has members of every channel; the first `senders` pages
    send one message every `interval` seconds each, from threads of their own.
    """

    def __init__(
        self,
        urls,
        database_url,
        members=18,
        channels=3,
        senders=6,
        interval=0.1,
        transports=(("websocket",),),
    ):
        self.database_url = database_url
        self.channels = [f"room-{number}" for number in range(channels)]
        self.pages = [
            Page(
                urls[i % len(urls)],
                self.channels[i % channels],
                f"member-{i}",
                transports[i % len(transports)],
            )
            for i in range(members)
        ]
        self.senders = self.pages[:senders]
        self.interval = interval
        self.sends = []
        self.outside = {}  # (channel, seq) -> when it was committed
        self.stopping = threading.Event()
        self.give_up_at = float("inf")
        self.threads = []

    def open(self):
        """Connect every page and join its channel."""
        for page in self.pages:
            page.open()
        return self

    def start(self):
        """Start the senders."""
        for page in self.senders:
            thread = threading.Thread(
                target=self._keep_sending, args=(page,), daemon=True
            )
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self, patience=20):
        """Stop starting new sends; wait (up to `patience` s) for those still
        being retried to be acked."""
        self.give_up_at = time.monotonic() + patience
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=patience + 10)

    def close(self):
        """Stop sending and disconnect every page."""
        self.give_up_at = 0
        self.stopping.set()
        for page in self.pages:
            page.close()
        for thread in self.threads:
            thread.join(timeout=10)

    def _keep_sending(self, page):
        next_at = time.monotonic()
        while not self.stopping.is_set():
            send = Send(
                page.channel, uuid.uuid4().hex, f"{page.name} {len(self.sends)}"
            )
            self.sends.append(send)
            page.send(send, lambda: self.give_up_at)
            next_at = max(next_at + self.interval, time.monotonic())
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def pages_on(self, server):
        """The pages connected to one server."""
        return [page for page in self.pages if page.url == server.url]

    def acked_between(self, start, end):
        """How many sends were acked between two moments (monotonic)."""
        return sum(1 for s in self.sends if s.ack and start <= s.acked_at <= end)

    def commit_without_publishing(self, channel):
        """Store a message in `channel` behind the servers' backs (see
        commit_without_publishing); members must get it all the same."""
        stored = commit_without_publishing(self.database_url, channel, "from outside")
        self.outside[(channel, stored["seq"])] = stored["committed_at"]
        return stored

    def settle(self, timeout=10, recovered_at=None):
        """Wait until every page has every stored message of its channel (or
        `timeout` s pass); then the Report."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            stored = stored_seqs(self.database_url, self.channels)
            if all(self._has_all(page, stored[page.channel]) for page in self.pages):
                break
            time.sleep(0.1)
        return self.report(recovered_at, settled_in=time.monotonic() - started)

    @staticmethod
    def _has_all(page, seqs):
        return set(seqs) <= {arrival.seq for arrival in page.received()}

    def report(self, recovered_at=None, settled_in=None):
        """Count what was sent, acked, stored and delivered (see Report).

        `recovered_at` (monotonic) is when a fault ended: a message acked
        before then is late only by the time it took after it.
        """
        stored = stored_seqs(self.database_url, self.channels)
        acked = [send for send in self.sends if send.ack]
        attempts = [attempt for send in self.sends for attempt in send.attempts]
        report = Report(
            attempted=len(self.sends),
            acked=len(acked),
            stored=sum(len(seqs) for seqs in stored.values()),
            retried=sum(len(send.attempts) > 1 for send in self.sends),
            settled_in=settled_in,
            outcomes=Counter(attempt.outcome for attempt in attempts),
            refused=Counter(
                attempt.ack.get("code") if isinstance(attempt.ack, dict) else "?"
                for attempt in attempts
                if attempt.outcome == "acked" and not (attempt.ack or {}).get("ok")
            ),
            max_ack_latency=max(
                (a.seconds for a in attempts if a.outcome == "acked"), default=0.0
            ),
            resyncs=sum(len(page.resyncs) for page in self.pages),
            unrecovered_joins=sum(
                ack.get("recovered") is False
                for page in self.pages
                for ack in page.join_acks
                if isinstance(ack, dict)
            ),
        )
        self._check_numbering(report, acked, stored)
        ready = {(send.channel, send.ack["seq"]): send.acked_at for send in acked}
        ready.update(self.outside)
        for page in self.pages:
            self._check_member(report, page, stored[page.channel], acked, ready)
            self._check_timing(report, page, ready, recovered_at)
        return report

    def _check_numbering(self, report, acked, stored):
        """Acks against the database: every stored message acked exactly once."""
        by_seq = {}
        for send in acked:
            by_seq.setdefault((send.channel, send.ack["seq"]), set()).add(
                send.client_id
            )
        report.shared_seqs = sorted(key for key, ids in by_seq.items() if len(ids) > 1)
        for channel, seqs in stored.items():
            acked_seqs = sorted(s.ack["seq"] for s in acked if s.channel == channel)
            outside = [seq for ch, seq in self.outside if ch == channel]
            if sorted(acked_seqs + outside) != list(range(1, len(seqs) + 1)):
                report.misnumbered[channel] = _ranges(acked_seqs)
            stored_set = set(seqs)
            report.lost += [
                (channel, seq) for seq in acked_seqs if seq not in stored_set
            ]
            expected = set(acked_seqs) | set(outside)
            report.unacked += [(channel, seq) for seq in seqs if seq not in expected]

    def _check_member(self, report, page, stored, acked, ready):
        """One member's deliveries: each stored message once, in seq order."""
        arrivals = [a for a in page.received() if a.channel == page.channel]
        report.strays += len(page.received()) - len(arrivals)
        report.delivered[page.name] = len(arrivals)
        if not page.connected:
            report.offline.append(page.name)
        client_ids = {(send.channel, send.ack["seq"]): send.client_id for send in acked}
        seen, highest = set(), 0
        for arrival in arrivals:
            if arrival.seq in seen:
                report.duplicated += 1
                continue
            if arrival.seq < highest:
                report.reordered += 1
            seen.add(arrival.seq)
            highest = max(highest, arrival.seq)
            key = (page.channel, arrival.seq)
            if key in client_ids and arrival.client_id != client_ids[key]:
                report.mislabelled += 1
        missing = set(stored) - seen
        report.missing += len(missing)
        if missing:
            report.missing_by_member[page.name] = _ranges(sorted(missing))

    @staticmethod
    def _check_timing(report, page, ready, recovered_at):
        """How long after its ack (`ready`: (channel, seq) -> moment) each
        message reached the member; counted from `recovered_at` for one acked
        during the fault."""
        for arrival in page.received():
            key = (arrival.channel, arrival.seq)
            if key not in ready:
                continue
            from_ack = arrival.at - ready[key]
            report.slowest_from_ack = max(report.slowest_from_ack, from_ack)
            lag = arrival.at - max(ready[key], recovered_at or ready[key])
            if lag > report.latest_delivery:
                report.latest_delivery = lag
                report.latest = f"{page.name} got {key} after {lag:.2f} s"


@dataclass
class Report:
    """What a Traffic run sent, acked, stored and delivered."""

    attempted: int = 0  # distinct messages (client_ids) the pages sent
    acked: int = 0  # of those, acked ok in the end
    stored: int = 0  # rows in PostgreSQL for the traffic's channels
    retried: int = 0  # messages that took more than one attempt
    settled_in: float | None = None  # seconds settle() waited
    outcomes: Counter = field(default_factory=Counter)  # attempts by outcome
    refused: Counter = field(default_factory=Counter)  # `ok: false` acks by code
    max_ack_latency: float = 0.0  # slowest attempt that got an ack, seconds
    delivered: dict = field(default_factory=dict)  # member -> messages received
    duplicated: int = 0  # a member got a seq again
    reordered: int = 0  # a member got a seq below one it already had
    missing: int = 0  # stored messages a member never got
    missing_by_member: dict = field(default_factory=dict)
    strays: int = 0  # messages of a channel the member is not in
    mislabelled: int = 0  # a message's client_id is not the one acked with its seq
    lost: list = field(default_factory=list)  # acked, but not in the database
    unacked: list = field(default_factory=list)  # stored, but nobody was acked it
    misnumbered: dict = field(default_factory=dict)  # channel -> acked seqs, not 1..N
    shared_seqs: list = field(default_factory=list)  # one seq acked to two client_ids
    offline: list = field(default_factory=list)  # members not connected at the end
    resyncs: int = 0
    unrecovered_joins: int = 0  # join acks with recovered: false
    latest_delivery: float = 0.0  # worst seconds from ack (or recovery) to arrival
    latest: str = ""  # which member and message that was
    slowest_from_ack: float = 0.0  # worst seconds from ack to arrival, fault or not

    def problems(self):
        """Every broken promise, in words; empty when all held."""
        checks = [
            (self.acked < self.attempted, f"{self.attempted - self.acked} never acked"),
            (self.lost, f"acked but not stored: {self.lost}"),
            (self.unacked, f"stored but never acked: {self.unacked}"),
            (self.misnumbered, f"acked seqs are not 1..N: {self.misnumbered}"),
            (self.shared_seqs, f"seqs acked to two client_ids: {self.shared_seqs}"),
            (self.duplicated, f"{self.duplicated} duplicate deliveries"),
            (self.reordered, f"{self.reordered} deliveries out of order"),
            (self.missing, f"{self.missing} missing: {self.missing_by_member}"),
            (self.strays, f"{self.strays} messages of other channels"),
            (self.mislabelled, f"{self.mislabelled} with the wrong client_id"),
            (self.offline, f"not connected at the end: {self.offline}"),
            (self.resyncs, f"{self.resyncs} resync events"),
            (self.unrecovered_joins, f"{self.unrecovered_joins} joins not recovered"),
        ]
        return [problem for failed, problem in checks if failed]

    def __str__(self):
        delivered = sorted(self.delivered.values())
        return (
            f"attempted {self.attempted}, acked {self.acked}, stored {self.stored},"
            f" retried {self.retried}, attempts {dict(self.outcomes)},"
            f" refused {dict(self.refused)};"
            f" max ack latency {self.max_ack_latency:.2f} s;"
            f" delivered per member {delivered[:1]}..{delivered[-1:]},"
            f" duplicated {self.duplicated}, reordered {self.reordered},"
            f" missing {self.missing}; latest delivery {self.latest_delivery:.2f} s"
            f" ({self.latest}), {self.slowest_from_ack:.2f} s from the ack"
            f" at worst; settled in {self.settled_in or 0:.2f} s"
        )


def _ranges(seqs):
    """[1, 2, 3, 7, 9, 10] -> '1-3,7,9-10': long seq lists, readably."""
    parts, start = [], None
    for index, seq in enumerate(seqs):
        if start is None:
            start = seq
        if index + 1 == len(seqs) or seqs[index + 1] != seq + 1:
            parts.append(str(start) if start == seq else f"{start}-{seq}")
            start = None
    return ",".join(parts)
