"""A server that has served hundreds of short-lived connections holds what
it held before them: every structure kept per connection or per channel,
from the HTTP connection to the chat's presence, goes with the last
connection that needed it.

One chat server (on gevent, in a thread of this process) keeps four steady
members connected while benchmarks/soak.js runs a phase of short-lived
clients against it: WebSocket, long-polling and upgrading, socket.io-client
4.x and 2.x (Engine.IO 3), guests, named guests, verified people and forged
tokens, joining, typing, sending and leaving, and going at every step
(right after connecting, after joining, in the middle of a send, after the
whole visit, or cutting the TCP connection). Rate limits are on, per
connection, and so is the Admin UI's namespace. Each structure is read
before the phase and after it, in the server's thread, once everything has
settled or the deadline has passed.
"""

import gc
import json
import subprocess
import time
from collections import Counter

import pytest
from conftest import settings, unreachable
from servers import ROOT, ThreadServer
from tokens import SECRET

from app.extensions import socketio

SOAK = ROOT / "benchmarks" / "soak.js"
# Short-lived clients: 30 of each of soak.js's 13 plans, 20 at a time.
CLIENTS, CONCURRENCY, STEADY = 390, 20, 4
# Seconds the server has to let go of everything once the clients have
# gone: a closed WebSocket waits CLOSE_GRACE (5 s) for its client's answer.
SETTLE = 30


class Inside:
    """The server's parts that keep something per connection or per channel."""

    def __init__(self, app, server, handler):
        self.handler, self.server = handler, server
        self.eio, self.manager = server.eio, server.manager
        self.chat = app.extensions["chat"]
        self.presence = self.chat.presence.store
        self.membership = self.chat.membership


def _sets(mapping):
    return {key: set(values) for key, values in mapping.items()}


# Each structure by name, as read from the server: keys and members, not
# values that move while the steady members stay (such as their positions).
STRUCTURES = {
    "HTTP connections per address (ChatHandler)": lambda at: dict(
        at.handler.open_per_address
    ),
    "Engine.IO sessions (eio.sockets)": lambda at: set(at.eio.sockets),
    # Its entries for sessions gone stay until due (the ping interval and
    # timeout, 45 s at most): a weak reference each, not the session.
    "closed sessions the Pinger keeps alive": lambda at: {
        socket.sid
        for socket in (
            entry[-1]()
            for entry in (*at.eio.pinger.due, *at.eio.pinger.answers)
            + tuple(at.eio.pinger.silences)
        )
        if socket is not None and at.eio.sockets.get(socket.sid) is not socket
    },
    "python-socketio's environ of each session": lambda at: set(at.server.environ),
    "python-socketio's binary packets awaited": lambda at: set(
        at.server._binary_packet
    ),
    "python-socketio's rooms (manager.rooms)": lambda at: {
        namespace: _sets(rooms) for namespace, rooms in at.manager.rooms.items()
    },
    "python-socketio's callbacks": lambda at: set(at.manager.callbacks),
    "the Admin UI's connection times (manager._timestamps)": lambda at: set(
        at.manager._timestamps
    ),
    "python-socketio's pending connects and disconnects": lambda at: (
        _sets(at.manager.pending_connect),
        _sets(at.manager.pending_disconnect),
    ),
    "delivery's index of each member's rooms (rooms_of)": lambda at: _sets(
        at.manager.rooms_of
    ),
    "the ledger's rooms and their members": lambda at: {
        room: set(state.members) for room, state in at.manager.ledger.rooms.items()
    },
    "the ledger's rooms with changes pending": lambda at: set(
        at.manager.ledger.pending
    ),
    "delivery's rooms due for repair": lambda at: set(at.manager._due),
    "presence: the name and person of each connection": lambda at: (
        set(at.presence.connections),
        set(at.presence.persons),
    ),
    "presence: the members of each channel": lambda at: _sets(at.presence.members),
    "presence: the channels of each member": lambda at: _sets(at.presence.joined),
    "presence: announcement and typing throttles": lambda at: (
        set(at.presence.announced),
        _sets(at.presence.typed),
        set(at.presence.held),
    ),
    "membership: people, by_user and token expiries": lambda at: (
        set(at.membership.people),
        _sets(at.membership.by_user),
        set(at.membership.expires),
        len(at.membership.expiring),
    ),
    "rate-limit windows of connections": lambda at: {
        key for key in at.chat.rates.local.storage.entries if "/connection/" in key
    },
    "group commit's batches": lambda at: (
        set(at.chat.messages.writer._batchers),
        set(at.chat.messages.writer._users),
        len(at.chat.messages.writer._shared._queued),
    ),
    "slow mode's marks": lambda at: set(at.chat.slow_mode.local),
    "the wire's objects and greenlets alive": lambda at: _alive(),
}


def _alive():
    """Instances of the wire's per-connection classes that anything still
    reaches, and the greenlets (a connection's go with it)."""
    gc.collect()
    counted = Counter(type(thing).__name__ for thing in gc.get_objects())
    names = ("ChatSocket", "LegacySocket", "ChatWebSocket", "InboundBudget", "Greenlet")
    return {name: counted[name] for name in names}


def left_behind(before, after):
    """What `after` holds that `before` did not, readably."""
    if isinstance(before, set) and isinstance(after, set):
        return f"{len(after - before)} more: {sorted(after - before)[:5]}"
    if isinstance(before, dict) and isinstance(after, dict):
        changed = {key: after[key] for key in after if before.get(key) != after[key]}
        return f"{len(changed)} entries other than before: {dict(list(changed.items())[:5])}"
    return f"{after!r}, where it held {before!r}"


class Churn:
    """The server, and what it held before and after one phase of soak.js."""

    def __init__(self, tmp_path):
        config = settings(
            SOCKETIO_ASYNC_MODE="gevent",
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'leaks.db'}",
            CHAT_TOKEN_SECRET=SECRET,
            CHAT_RATE_LIMITS=True,
            # The Admin UI's namespace is on: it keeps a time per connection.
            CHAT_ADMIN_PASSWORD="admin-password-of-the-leak-test",
            # Every client comes from 127.0.0.1.
            **{
                f"CHAT_RATE_{action}_PER_ADDRESS": "off"
                for action in ("SEND", "JOIN", "TYPING", "NEW_CHANNEL")
            },
        )
        self.server = ThreadServer(config)
        self.socketio = socketio.server  # this app's, before any other app binds it
        self.before = self.after = None
        self.result = None

    def read(self):
        inside = Inside(self.server.app, self.socketio, self.server.handler)
        return self.server.inspect(
            lambda: {name: read(inside) for name, read in STRUCTURES.items()}
        )

    def run(self):
        soak = subprocess.Popen(
            ["node", str(SOAK), "--url", self.server.url, "--steps"]
            + ["--clients", str(CLIENTS), "--concurrency", str(CONCURRENCY)]
            + ["--steady", str(STEADY), "--phases", "1", "--token-secret", SECRET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            self._phases(soak)
        finally:
            soak.kill()  # done once it has printed its result, or given up on
            soak.wait()

    def _phases(self, soak):
        for line in soak.stdout:
            step = json.loads(line)
            if "scenario" in step:
                self.result = step
                return
            if "steady" in step:
                self.before = self._steady()
            else:
                self.after = self._back_to(self.before)
            soak.stdin.write("\n")
            soak.stdin.flush()

    def _steady(self, deadline=15):
        """What the server holds once the steady members have settled: the
        same twice in a row."""
        ends, last = time.monotonic() + deadline, None
        while time.monotonic() < ends:
            now = self.read()
            if now == last:
                return now
            last = now
            time.sleep(0.5)
        return last

    def _back_to(self, before):
        """What the server holds once it holds what it held `before`, or at
        the deadline."""
        ends = time.monotonic() + SETTLE
        while True:
            now = self.read()
            if now == before or time.monotonic() > ends:
                return now
            time.sleep(0.25)


@pytest.fixture(scope="module")
def churned(tmp_path_factory):
    if not (ROOT / "benchmarks" / "node_modules" / "socket.io-client").exists():
        unreachable("benchmarks/node_modules", "`make install-bench` installs it")
    churn = Churn(tmp_path_factory.mktemp("leaks"))
    churn.server.start()
    try:
        churn.run()
    finally:
        churn.server.stop()
    return churn


def test_every_short_lived_client_was_served(churned):
    assert churned.result is not None, "soak.js ended without a result"
    assert churned.result["ok"] is True, churned.result.get("error")
    (phase,) = churned.result["phases"]
    assert phase["clients"] == CLIENTS and phase["errors"] == 0, phase


@pytest.mark.parametrize("structure", STRUCTURES)
def test_the_server_holds_what_it_held_before_the_churn_in(churned, structure):
    assert churned.after is not None, "the churn did not run to its end"
    before, after = churned.before[structure], churned.after[structure]
    assert after == before, f"{structure} kept {left_behind(before, after)}"


@pytest.fixture
def app_settings():
    return {"CHAT_TOKEN_SECRET": SECRET}


def test_a_connection_closed_for_its_expired_token_leaves_nothing_behind(
    services, verified
):
    ann = verified("ann", ttl=60)
    ann.join("lobby")

    services.membership.expire(time.time() + 3600)

    membership = services.membership
    assert not ann.client.is_connected()
    assert membership.people == membership.by_user == membership.expires == {}
    assert membership.expiring == []
