"""Engine.IO connections of the chat on gevent: pings, timeouts and upgrades."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket

from app.extensions import socketio
from app.wire.connections import State


@pytest.fixture
def server(pinging_server):
    return pinging_server


def engineio_socket(server):
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    raw = websocket.create_connection(url, timeout=10)
    assert raw.recv().startswith("0")  # open
    return raw


def test_an_idle_connection_is_pinged_every_interval(server):
    raw = engineio_socket(server)
    pings = 0
    deadline = time.monotonic() + 3.5
    try:
        while time.monotonic() < deadline:
            raw.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                frame = raw.recv()
            except websocket.WebSocketTimeoutException:
                break
            if frame == "2":
                pings += 1
                raw.send("3")
    finally:
        raw.close()

    assert pings >= 2


def test_an_answering_client_stays_connected_and_chats(server, open_tab):
    alice, bob = open_tab(server.url), open_tab(server.url)
    alice.join("lobby")
    bob.join("lobby")

    # python-socketio's client drops a connection that is not pinged within
    # the interval plus the timeout: 2 s here.
    time.sleep(4)

    assert alice.client.connected and bob.client.connected
    assert alice.send("lobby", "still here")["ok"] is True
    assert bob.texts(1) == ["still here"]


def test_a_connection_that_stops_answering_pings_is_closed(server):
    raw = engineio_socket(server)
    raw.send("40")
    closed = False
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and not closed:
            try:
                frame = raw.recv()  # pings go unanswered
            except websocket.WebSocketConnectionClosedException:
                closed = True
            else:
                closed = frame in ("1", "")  # Engine.IO close, or the end
    finally:
        raw.close()

    assert closed
    assert "Traceback" not in server.log()


def test_long_polling_upgrades_to_websocket_and_keeps_order(server, open_tab):
    watcher = open_tab(server.url)
    watcher.join("lobby")
    tab = open_tab(server.url, transports=["polling", "websocket"])
    tab.join("lobby")

    for number in range(20):
        tab.client.emit("send_message", {"channel": "lobby", "message": f"m{number}"})

    expected = [f"m{number}" for number in range(20)]
    assert watcher.texts(20) == expected
    assert tab.texts(20) == expected
    assert tab.client.transport() == "websocket"
    assert "Traceback" not in server.log()


def test_a_client_that_ignores_the_close_is_disconnected(server):
    raw = engineio_socket(server)
    raw.send("40")
    raw.sock.settimeout(20)
    received = b""
    started = time.monotonic()
    # Read the bytes themselves: answer neither pings nor the close frame.
    while chunk := raw.sock.recv(4096):
        received += chunk

    assert b"\x88\x02\x03\xe8" in received  # the close frame, code 1000
    assert time.monotonic() - started < 15  # ping timeout, then 5 s of grace
    assert "Traceback" not in server.log()


def answer_pings(raw, seconds):
    """Keep a raw Engine.IO WebSocket alive for a while."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        raw.settimeout(left)
        try:
            if raw.recv() == "2":
                raw.send("3")
        except websocket.WebSocketTimeoutException:
            break
    raw.settimeout(10)


def polling_session(server):
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=10).text[1:])["sid"]
    requests.post(f"{base}&sid={sid}", data="40", timeout=10)
    assert requests.get(f"{base}&sid={sid}", timeout=10).text.startswith("40")
    return base, sid


def test_an_upgrade_sent_with_its_probe_ends_the_pending_poll(server):
    base, sid = polling_session(server)
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(requests.get, f"{base}&sid={sid}", timeout=10)
        time.sleep(0.3)  # the poll is waiting
        url = base.replace("http", "ws").replace("polling", "websocket")
        raw = websocket.create_connection(f"{url}&sid={sid}", timeout=10)
        raw.send("2probe")
        raw.send("5")  # without waiting for the probe's answer
        assert raw.recv() == "3probe"
        assert poll.result().text == "6"  # the NOOP that ends a poll

    answer_pings(raw, 3)  # longer than a poll may wait (interval plus timeout)
    raw.send('421["join",{"channel":"lobby"}]')
    while not (frame := raw.recv()).startswith("431"):
        if frame == "2":
            raw.send("3")
    assert json.loads(frame[3:])[0]["ok"] is True
    raw.close()
    assert "Traceback" not in server.log()


def test_a_second_upgrade_of_one_session_is_refused_quietly(server):
    base, sid = polling_session(server)
    url = base.replace("http", "ws").replace("polling", "websocket") + f"&sid={sid}"
    first = websocket.create_connection(url, timeout=10)
    second = websocket.create_connection(url, timeout=10)
    first.send("2probe")
    second.send("2probe")
    assert first.recv() == "3probe"
    first.send("5")

    first.send('421["join",{"channel":"lobby"}]')
    while not (frame := first.recv()).startswith("431"):
        if frame == "2":
            first.send("3")
    assert json.loads(frame[3:])[0]["ok"] is True
    try:  # the second WebSocket finishes its upgrade too, if it still can
        second.send("5")
        second.recv()
    except (websocket.WebSocketException, OSError):
        pass
    first.close()
    second.close()
    assert "Traceback" not in server.log()


# The life of a session (app.wire.connections.State)


def test_a_session_polls_then_moves_to_its_websocket_then_closes(server):
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=10).text[1:])["sid"]
    session = socketio.server.eio.sockets[sid]
    assert session.state is State.POLLING

    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    raw = websocket.create_connection(f"{url}&sid={sid}", timeout=10)
    raw.send("2probe")
    assert raw.recv() == "3probe"
    assert session.state is State.UPGRADING
    raw.send("5")
    raw.send("2")  # a ping from a protocol 4 client: a protocol error
    while session.state is not State.CLOSED:
        time.sleep(0.01)

    with pytest.raises(RuntimeError, match="closed -> polling"):
        session.become(State.POLLING)
    raw.close()


def test_a_session_moves_only_as_its_life_goes(server):
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=10).text[1:])["sid"]
    session = socketio.server.eio.sockets[sid]

    with pytest.raises(RuntimeError, match="polling -> websocket"):
        session.become(State.WEBSOCKET)  # without the probe
    assert session.state is State.POLLING
