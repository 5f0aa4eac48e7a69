"""The chat served on gevent as `python wsgi.py` serves it, over real
WebSockets and long-polling: python-socketio's client, and raw Engine.IO
frames for what no well-behaved client sends."""

import json

import pytest
import socketio
import requests
import websocket


@pytest.fixture
def server(start_thread_server):
    return start_thread_server()


def test_two_tabs_chat_over_websocket(server, open_tab):
    alice, bob = open_tab(server.url), open_tab(server.url)
    alice.join("lobby")
    bob.join("lobby")

    ack = alice.send("lobby", "안녕 bob")

    assert ack["ok"] is True and ack["seq"] == 1
    assert bob.texts(1) == ["안녕 bob"]
    assert alice.texts(1) == ["안녕 bob"]


def test_a_later_tab_gets_the_newest_ten(server, open_tab):
    sender = open_tab(server.url)
    sender.join("lobby")
    for number in range(1, 13):
        sender.send("lobby", f"m{number}")

    later = open_tab(server.url)
    ack = later.join("lobby")

    assert ack["last_seq"] == 12
    assert later.texts(10) == [f"m{number}" for number in range(3, 13)]


def test_http_post_reaches_websocket_members(server, open_tab):
    tab = open_tab(server.url)
    tab.join("lobby")

    response = requests.post(
        f"{server.url}/api/channels/lobby/messages",
        json={"message": "from curl"},
        timeout=10,
    )

    assert response.status_code == 201
    assert tab.texts(1) == ["from curl"]


def test_long_polling_transport_works(server, open_tab):
    tab = open_tab(server.url, transports=["polling"])
    tab.join("lobby")

    assert tab.send("lobby", "hi")["ok"] is True
    assert tab.texts(1) == ["hi"]


def raw_socket(server):
    """A bare Engine.IO WebSocket connected to namespace `/`."""
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    raw = websocket.create_connection(url, timeout=10)
    assert raw.recv().startswith("0")  # engine.io open
    raw.send("40")
    assert raw.recv().startswith("40")  # namespace connected
    return raw


def next_event(raw):
    """The next Socket.IO event or ack, skipping pings and presence events."""
    while True:
        frame = raw.recv()
        if frame == "2":  # engine.io ping
            raw.send("3")
        elif not frame.startswith('42["presence"'):
            return frame


def test_invalid_name_refuses_the_connection_with_a_reason(server):
    client = socketio.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append)

    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, auth={"name": "x" * 33}, wait_timeout=10)

    (refusal,) = refusals
    assert refusal["data"]["code"] == "invalid_name"
    assert refusal["message"] == refusal["data"]["message"]
    assert "Traceback" not in server.log()


def test_invalid_utf8_closes_that_connection_without_a_traceback(server):
    raw = raw_socket(server)

    raw.send(b'42["join",{"channel":"\xff\xfe"}]', opcode=websocket.ABNF.OPCODE_TEXT)

    assert close_code(raw) == 1007
    assert raw_socket(server).connected  # the server goes on
    assert "Traceback" not in server.log()


def polling_session(server):
    """An Engine.IO long-polling session connected to namespace `/`."""
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    opened = requests.get(base, timeout=10).text
    sid = json.loads(opened[1:])["sid"]
    url = f"{base}&sid={sid}"
    requests.post(url, data="40", timeout=10)
    assert requests.get(url, timeout=10).text.startswith("40")
    return url


def close_code(raw):
    """The code of the close frame the server sends next, skipping others."""
    while True:
        opcode, data = raw.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big")


def test_a_frame_announcing_too_long_a_message_closes_before_it_is_read(server):
    raw = raw_socket(server)

    # A masked text frame announcing 1 GB, and none of it sent.
    raw.sock.sendall(b"\x81\xff" + (1 << 30).to_bytes(8, "big") + b"mask")

    assert close_code(raw) == 1009
    assert raw_socket(server).connected  # the server goes on
    assert "Traceback" not in server.log()


def test_an_unmasked_frame_from_a_client_closes_with_a_protocol_error(server):
    raw = raw_socket(server)

    raw.sock.sendall(b"\x81\x02" + b"40")

    assert close_code(raw) == 1002
    assert "Traceback" not in server.log()


def test_a_message_in_fragments_is_reassembled(server):
    raw = raw_socket(server)
    parts = ['421["join",', '{"channel":', '"lobby"}]']

    raw.send_frame(websocket.ABNF.create_frame(parts[0], websocket.ABNF.OPCODE_TEXT, 0))
    raw.send_frame(websocket.ABNF.create_frame(parts[1], websocket.ABNF.OPCODE_CONT, 0))
    raw.send_frame(websocket.ABNF.create_frame(parts[2], websocket.ABNF.OPCODE_CONT, 1))

    ack = next_event(raw)
    assert ack.startswith("431")
    assert json.loads(ack[3:])[0]["ok"] is True


def test_a_websocket_ping_is_answered_with_its_pong(server):
    raw = raw_socket(server)

    raw.ping("are you there")

    while True:
        opcode, data = raw.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            break
    assert data == b"are you there"
