"""Engine.IO protocol 4 and Socket.IO protocol 5 as their specifications
say (github.com/socketio/engine.io-protocol, socket.io-protocol, and their
test suites), where python-engineio and python-socketio depart from them."""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket
from conftest import QUICK_PING

from app.extensions import socketio

# Seconds of the ping interval and timeout of the server under test.
INTERVAL = TIMEOUT = QUICK_PING


@pytest.fixture
def server(pinging_server):
    return pinging_server


def base(server, transport="polling"):
    return f"{server.url}/socket.io/?EIO=4&transport={transport}"


def polling_session(server):
    """A new long-polling session's URL, its handshake read."""
    opened = requests.get(base(server), timeout=10)
    sid = json.loads(opened.text[1:])["sid"]
    return f"{base(server)}&sid={sid}"


def websocket_of(server, sid=None):
    url = base(server, "websocket").replace("http", "ws")
    return websocket.create_connection(url + (f"&sid={sid}" if sid else ""), timeout=10)


def socketio_websocket(server):
    """A WebSocket session connected to namespace `/`."""
    raw = websocket_of(server)
    assert raw.recv().startswith("0")
    raw.send("40")
    assert raw.recv().startswith("40")
    return raw


def frames_until_closed(raw, timeout=5):
    """The frames received until the server closes the WebSocket (answering
    pings); None if it is still open after `timeout` seconds."""
    frames, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        raw.settimeout(left)
        try:
            opcode, data = raw.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, OSError):
            return frames
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return frames
        if data == b"2":
            raw.send("3")
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            frames.append(data.decode())
    return None


@pytest.mark.parametrize(
    "query",
    ["EIO=4", "EIO=4&transport=abc", "transport=polling", "EIO=abc&transport=polling"],
)
def test_a_handshake_without_a_valid_eio_and_transport_is_refused(server, query):
    answer = requests.get(f"{server.url}/socket.io/?{query}", timeout=10)

    assert answer.status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_handshake_with_another_method_than_get_is_refused(server, method):
    answer = requests.request(method, base(server), timeout=10)

    assert answer.status_code == 400


def test_a_websocket_request_without_connection_upgrade_is_refused(server):
    headers = {"Upgrade": "websocket", "Connection": "keep-alive"}

    answer = requests.get(base(server, "websocket"), headers=headers, timeout=10)

    assert answer.status_code == 400
    assert "Traceback" not in server.log()


def test_a_post_is_answered_ok(server):
    url = polling_session(server)

    answer = requests.post(url, data="40", timeout=10)

    assert (answer.status_code, answer.text) == (200, "ok")


@pytest.mark.parametrize(
    "body", [b"abc", b"", b"4abc", b"42{}", b"40\x1e7", b"\xff\xfe", b"4\x1ex"]
)
def test_an_invalid_packet_in_a_post_closes_the_session(server, body):
    url = polling_session(server)

    answer = requests.post(url, data=body, timeout=10)

    assert answer.status_code == 400
    assert requests.get(url, timeout=10).status_code == 400
    assert "Traceback" not in server.log()


def test_a_second_poll_at_once_closes_the_session(server):
    url = polling_session(server)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(requests.get, url, timeout=10)
        time.sleep(0.2)  # the first poll is waiting
        second = requests.get(url + "&t=burst", timeout=10)

        assert first.result().text == "1"  # CLOSE
    assert second.status_code == 400
    assert requests.get(url, timeout=10).status_code == 400


def test_a_polling_session_is_closed_at_the_ping_interval_plus_timeout(server):
    url = polling_session(server)

    time.sleep(INTERVAL + TIMEOUT)

    assert requests.get(url, timeout=10).status_code == 400


def test_a_pending_poll_gets_noop_when_the_client_closes(server):
    url = polling_session(server)
    requests.post(url, data="40", timeout=10)
    requests.get(url, timeout=10)  # the CONNECT
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(requests.get, url, timeout=10)
        time.sleep(0.2)
        requests.post(url, data="1", timeout=10)

        assert poll.result().text == "6"
    assert requests.get(url, timeout=10).status_code == 400


def test_no_noop_reaches_the_websocket_after_an_upgrade(server):
    url = polling_session(server)
    requests.post(url, data="40", timeout=10)
    requests.get(url, timeout=10)  # the CONNECT; no poll is pending now
    raw = websocket_of(server, url.rsplit("sid=", 1)[1])
    raw.send("2probe")
    assert raw.recv() == "3probe"
    raw.send("5")

    raw.send('421["leave",{"channel":"lobby"}]')

    assert raw.recv() == '431[{"ok":true}]'  # the ack, and no NOOP before it
    raw.close()


def test_a_poll_racing_the_upgrade_is_refused_never_served(server):
    for _ in range(20):
        url = polling_session(server)
        raw = websocket_of(server, url.rsplit("sid=", 1)[1])
        raw.send("2probe")
        raw.send("5")
        assert raw.recv() == "3probe"

        assert requests.get(url, timeout=10).status_code == 400
        raw.send("40")
        assert raw.recv().startswith("40")  # no NOOP on the WebSocket either
        raw.close()


def test_a_poll_during_the_upgrade_gets_noop_and_the_websocket_the_rest(server):
    url = polling_session(server)
    raw = websocket_of(server, url.rsplit("sid=", 1)[1])
    raw.send("2probe")
    assert raw.recv() == "3probe"

    assert requests.get(url, timeout=10).text == "6"
    raw.send("5")
    raw.send("40")
    assert raw.recv().startswith("40")
    raw.close()


def test_an_upgrade_without_a_probe_ends_within_the_ping_timeout(server):
    url = polling_session(server)
    raw = websocket_of(server, url.rsplit("sid=", 1)[1])

    assert frames_until_closed(raw) == []
    assert "Traceback" not in server.log()


def test_a_probe_after_the_session_closed_is_not_answered(server):
    url = polling_session(server)
    raw = websocket_of(server, url.rsplit("sid=", 1)[1])
    requests.post(url, data="1", timeout=10)  # the client closes the session

    raw.send("2probe")
    raw.send("5")

    assert frames_until_closed(raw) == []
    assert "Traceback" not in server.log()


def test_an_unknown_namespace_is_refused_with_a_message(server):
    raw = websocket_of(server)
    raw.recv()  # open

    raw.send("40/random,")

    assert raw.recv() == '44/random,{"message":"Invalid namespace"}'
    raw.close()


@pytest.mark.parametrize(
    "frame",
    [
        "abc",  # not Engine.IO
        "",
        "7",
        "4abc",  # unknown Socket.IO packet type
        "42{}",  # an event that is not an array
        "42[]",
        "42[17]",
        '42"join"',
        '42["disconnect"]',  # reserved event names
        '42["connect"]',
        '42["newListener","x"]',
        '42abc["join",{"channel":"lobby"}]',  # invalid ack id
        '42["join", {"channel": "lobby"',  # invalid JSON
        "42" + "[" * 5000 + "]" * 5000,
        "44{}",  # CONNECT_ERROR comes from servers only
        "4",
        "2",  # a PING: protocol 4 pings from the server
    ],
)
def test_a_packet_that_breaks_the_protocol_closes_the_connection(server, frame, caplog):
    caplog.set_level(logging.INFO, logger="app.wire")
    raw = socketio_websocket(server)

    raw.send(frame)

    assert frames_until_closed(raw) is not None
    log = server.log()
    assert "Traceback" not in log
    assert "closing" in log  # at INFO


def test_more_binary_attachments_than_allowed_close_the_connection(server):
    raw = socketio_websocket(server)

    raw.send('4511-["join",{"_placeholder":true,"num":0}]')

    assert frames_until_closed(raw) is not None
    assert "Traceback" not in server.log()


def test_binary_attachments_longer_than_a_message_close_the_connection(server):
    raw = socketio_websocket(server)
    placeholders = ',{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
    raw.send(f'452-["join"{placeholders}]')

    raw.send_binary(b"x" * 40 * 1024)
    raw.send_binary(b"x" * 40 * 1024)  # 80 KB together, over the 64 KB

    assert frames_until_closed(raw) is not None
    assert "Traceback" not in server.log()


def test_a_value_error_in_a_handler_is_logged_and_the_connection_stays(server):
    def failing(sid):
        raise ValueError("a bug in a handler")

    socketio.server.on("fail", failing)
    raw = socketio_websocket(server)

    raw.send('42["fail"]')

    raw.send('421["leave",{"channel":"lobby"}]')
    assert raw.recv() == '431[{"ok":true}]'
    assert "ValueError: a bug in a handler" in server.log()  # with its traceback
    raw.close()


def test_an_invalid_socketio_packet_over_polling_closes_the_session(server):
    url = polling_session(server)
    requests.post(url, data="40", timeout=10)
    requests.get(url, timeout=10)

    assert requests.post(url, data="42{}", timeout=10).status_code == 400
    assert requests.get(url, timeout=10).status_code == 400


def test_a_well_formed_event_with_a_bad_payload_gets_chat_error(server):
    raw = socketio_websocket(server)

    raw.send('427["join","lobby"]')

    frames = [raw.recv(), raw.recv()]
    error = next(frame for frame in frames if frame.startswith('42["chat_error"'))
    assert json.loads(error[2:])[1]["code"] == "invalid_payload"
    ack = next(frame for frame in frames if frame.startswith("437"))
    assert json.loads(ack[3:])[0]["ok"] is False
    raw.send('428["join",{"channel":"lobby"}]')  # still served
    while not raw.recv().startswith("438"):
        pass
    raw.close()
