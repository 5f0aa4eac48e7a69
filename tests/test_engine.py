"""Engine.IO connections of the real server: pings, timeouts and upgrades."""

import time

import pytest
import websocket

pytestmark = pytest.mark.server


@pytest.fixture
def server(start_server):
    # A ping every second, and a second to answer it.
    return start_server(production=True, PING_INTERVAL="1", PING_TIMEOUT="1")


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
