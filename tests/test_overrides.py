"""Contracts with the libraries whose internals the chat replaces (the
"Library internals" table of docs/internals.md): each override is still
called by the library, on the library's own path. An upgrade that stops
calling one fails here, by name, rather than silently (app.wire.versions
refuses other versions at start-up; this is what to run when changing that
table).

Each test wraps the chat's method in a spy, drives the library through a
door it offers (Flask-SocketIO's test client, python-engineio's and
python-socketio's servers, pywsgi serving real sockets) and checks that the
library called it.
"""

import json
import time

import pytest
import requests
import websocket
from clients import Member
from engineio import packet as eio_packet

from app.extensions import db, socketio
from app.realtime.admin import AdminPanel
from app.realtime.delivery import ChatRedisManager, OrderedMessages
from app.realtime.namespace import ChatNamespace
from app.wire.connections import ChatSocket
from app.wire.endpoint import ChatEngine
from app.wire.http import ChatHandler
from app.wire.packets import CheckedPacket, TolerantJSON


def spy(monkeypatch, owner, name, run=True):
    """Record each call of `owner.name`, which still runs as before (unless
    not `run`)."""
    calls = []
    original = getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs) if run else None

    if isinstance(owner.__dict__.get(name), staticmethod):
        recorded = staticmethod(recorded)
    monkeypatch.setattr(owner, name, recorded)
    return calls


# python-socketio and Flask-SocketIO


def test_socketio_hands_engineio_requests_to_chat_engine(monkeypatch, client):
    calls = spy(monkeypatch, ChatEngine, "handle_request")

    client.get("/socket.io/?EIO=4&transport=polling")

    assert calls


def test_socketio_dispatches_events_to_the_namespace_trigger_event(monkeypatch, member):
    calls = spy(monkeypatch, ChatNamespace, "trigger_event")

    member.call("leave", {"channel": "lobby"})

    assert [args[1] for args in calls] == ["leave"]


def test_socketio_drops_the_environ_of_a_connection_that_ended(member):
    # ChatNamespace._still_open reads it, to refuse a connect that outlived
    # its connection. The chat's sessions report their end this way
    # (ChatSocket.close).
    server = socketio.server
    eio_sid = member.client.eio_sid
    assert eio_sid in server.environ

    server.eio._trigger_event(
        "disconnect", eio_sid, server.reason.CLIENT_DISCONNECT, run_async=False
    )

    assert eio_sid not in server.environ


@pytest.mark.parametrize("method", ["decode", "encode"])
def test_socketio_codes_packets_with_the_checked_packet(monkeypatch, member, method):
    calls = spy(monkeypatch, CheckedPacket, method)

    member.call("leave", {"channel": "lobby"})

    assert calls


@pytest.mark.parametrize("method", ["dumps", "loads"])
def test_socketio_codes_json_with_the_tolerant_json(monkeypatch, member, method):
    calls = spy(monkeypatch, TolerantJSON, method)

    member.call("leave", {"channel": "lobby"})

    assert calls


def test_socketio_adds_binary_attachments_through_the_checked_packet(monkeypatch):
    calls = spy(monkeypatch, CheckedPacket, "add_attachment")
    pkt = CheckedPacket(encoded_packet='51-["x",{"_placeholder":true,"num":0}]')

    pkt.add_attachment(b"\x01")

    assert calls and pkt.data == ["x", b"\x01"]


@pytest.mark.parametrize(
    "method, drive",
    [
        ("basic_enter_room", lambda member: member.join("lobby")),
        ("basic_leave_room", lambda member: member.call("leave", {"channel": "x"})),
        ("basic_disconnect", lambda member: member.client.disconnect()),
    ],
)
def test_socketio_manages_rooms_through_the_ordered_manager(
    monkeypatch, member, method, drive
):
    calls = spy(monkeypatch, OrderedMessages, method)

    drive(member)

    assert calls


def test_socketio_lists_rooms_through_the_ordered_manager(monkeypatch, member):
    calls = spy(monkeypatch, OrderedMessages, "get_rooms")
    sid = socketio.server.manager.sid_from_eio_sid(member.client.eio_sid, "/")

    socketio.server.rooms(sid)

    assert calls


# python-socketio's instrumentation for the Admin UI (app.realtime.admin):
# the hooks are bound when the app is built, so each spy is set before.


@pytest.fixture
def admin_app(make_app):
    """`admin_app()`: an app with the Admin UI on, built when called."""

    def build():
        app = make_app(CHAT_ADMIN_PASSWORD="an admin password for the contracts")
        with app.app_context():
            db.create_all()
        return app

    return build


def test_socketio_instruments_through_the_admin_panel(monkeypatch, admin_app):
    calls = spy(monkeypatch, AdminPanel, "instrument")

    admin_app()

    assert len(calls) == 1


def leave_lobby(member):
    member.join("lobby")
    member.call("leave", {"channel": "lobby"})


@pytest.mark.parametrize(
    "method, drive, called",
    [
        ("_connected", lambda member: None, lambda self, sid, nsp: nsp == "/"),
        ("_entered", lambda m: m.join("lobby"), lambda *a, **k: a[3] == "#lobby"),
        ("_left", leave_lobby, lambda self, sid, nsp, room: room == "#lobby"),
        (
            "_triggered",
            lambda m: m.client.disconnect(),
            lambda *a: a[1] == "disconnect",
        ),
    ],
)
def test_socketio_reports_sockets_through_the_admin_panels_hooks(
    monkeypatch, admin_app, method, drive, called
):
    calls = spy(monkeypatch, AdminPanel, method)
    app = admin_app()
    member = Member(socketio.test_client(app))

    drive(member)

    assert any(called(*args) for args in calls), calls
    if member.client.is_connected():
        member.client.disconnect()


def test_engineio_connections_start_the_admin_panels_stats(monkeypatch, admin_app):
    calls = spy(monkeypatch, AdminPanel, "_emit_server_stats", run=False)
    app = admin_app()

    polling_session(app.test_client())
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:  # a background task
        time.sleep(0.01)

    assert calls


# python-engineio


def polling_session(client):
    opened = client.get("/socket.io/?EIO=4&transport=polling").get_data(True)
    return json.loads(opened[1:])["sid"]


def test_engineio_sends_packets_through_the_chat_socket(monkeypatch, client):
    sid = polling_session(client)
    calls = spy(monkeypatch, ChatSocket, "send")

    socketio.server.eio.send_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, "x"))

    assert calls


def test_engineio_disconnects_through_the_chat_socket(monkeypatch, client):
    sid = polling_session(client)
    # Only recorded: closing a long-polling session waits for its last poll.
    calls = spy(monkeypatch, ChatSocket, "close", run=False)

    socketio.server.eio.disconnect(sid)

    assert calls


# pywsgi and gevent-websocket, serving real sockets


@pytest.mark.parametrize(
    "method",
    ["handle", "handle_one_request", "read_request", "get_environ", "log_request"],
)
def test_pywsgi_serves_requests_through_the_chat_handler(
    monkeypatch, start_thread_server, method
):
    calls = spy(monkeypatch, ChatHandler, method)
    server = start_thread_server()

    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    # The server logs a request after answering it: give it a moment.
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls


def test_gevent_websocket_runs_websockets_through_the_chat_handler(
    monkeypatch, start_thread_server
):
    calls = spy(monkeypatch, ChatHandler, "run_websocket")
    server = start_thread_server()
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"

    raw = websocket.create_connection(url, timeout=10)
    assert raw.recv().startswith("0")
    raw.close()

    assert calls


# python-socketio's Redis manager, on a Redis database of the test's own


@pytest.mark.parametrize(
    "method",
    ["_redis_listen_with_retries", "_redis_connect", "_publish", "_handle_emit"],
)
def test_the_redis_manager_publishes_and_listens_through_the_chat_manager(
    monkeypatch, make_app, redis_env, method
):
    calls = spy(monkeypatch, ChatRedisManager, method)
    make_app(**redis_env)
    server = socketio.server  # Flask-SocketIO's test client refuses a queue
    server.manager_initialized = True
    server.manager.initialize()  # its listener starts

    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        # An event goes out through Redis, and comes back to the listener.
        server.emit("typing", {"channel": "lobby"}, to="nobody", namespace="/")
        time.sleep(0.1)

    assert calls
