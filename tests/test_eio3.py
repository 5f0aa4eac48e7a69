"""Engine.IO protocol 3 and Socket.IO protocol 4 (socket.io 1.x and 2.x
clients), from the specifications (engine.io-protocol v3, socket.io-protocol
v4) and against the clients' own parser."""

import base64
import json
import subprocess
import time

import pytest
import requests
import websocket
from conftest import QUICK_PING
from engineio import packet
from servers import ROOT

from app.extensions import socketio
from app.wire import polling

INTERVAL = TIMEOUT = QUICK_PING  # of the `server` below
EVENT = '42["send_message",{"channel":"lobby","message":"안녕 😀 \ud7a3"}]'


@pytest.fixture
def server(pinging_server):
    return pinging_server


def base(server, transport="polling"):
    return f"{server.url}/socket.io/?EIO=3&transport={transport}"


def counted(body):
    """The packets of a text body of protocol 3, each length in UTF-16
    code units, as a client reads them."""
    units, packets, at = body.encode("utf-16-le", "surrogatepass"), [], 0
    while at < len(units):
        colon = units.index(":".encode("utf-16-le"), at)
        start = colon + 2
        stop = start + 2 * int(units[at:colon].decode("utf-16-le"))
        packets.append(units[start:stop].decode("utf-16-le", "surrogatepass"))
        at = stop
    return packets


def session(server):
    """A new polling session of protocol 3: its URL and handshake."""
    packets = counted(requests.get(base(server), timeout=10).text)
    opened = json.loads(packets[0][1:])
    return f"{base(server)}&sid={opened['sid']}", opened, packets[1:]


def post(url, *packets, binary=False):
    if binary:
        headers = {"Content-Type": "application/octet-stream"}
        return requests.post(url, data=packets[0], headers=headers, timeout=10)
    body = "".join(f"{polling.js_length(p)}:{p}" for p in packets)
    return requests.post(url, data=body.encode(), timeout=10)


def poll(url):
    return counted(requests.get(url, timeout=10).text)


def joined(server):
    url, _, _ = session(server)
    post(url, '421["join",{"channel":"lobby"}]')
    while not any(p.startswith("431") for p in poll(url)):
        pass
    return url


def closed_within(raw, seconds):
    """Whether the server closes the WebSocket within `seconds`, whatever
    it sends before."""
    raw.settimeout(seconds)
    try:
        while True:
            opcode, _ = raw.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return True
    except websocket.WebSocketTimeoutException:
        return False
    except (websocket.WebSocketConnectionClosedException, OSError):
        return True


def parse_with_clients(jobs):
    """Run jobs through the clients' engine.io-parser (tests/clients)."""
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "clients" / "parser_v3.js")],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


# The codec, against socket.io-client's engine.io-parser 1.3.2 and 2.2.1

TEXTS = ['42["x"]', EVENT, "4\ud800 lone", "2probe", '42["\u00e9"]']


@pytest.mark.parametrize("client", [1, 2])
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_bodies_written_by_the_clients_are_read(client, binary):
    packets = [{"type": "message", "data": text[1:]} for text in TEXTS]
    packets[2] = {"type": "message", "data": {"base64": "AAEC/w=="}}
    (written,) = parse_with_clients(
        [{"parser": client, "encode": packets, "binary": binary}]
    )

    if "base64" in written:
        body, kind = base64.b64decode(written["base64"]), polling.BINARY_CONTENT
    else:
        body, kind = written["text"].encode("utf-8", "surrogatepass"), "text/plain"
    read = polling.decode(body, 3, kind)

    assert [pkt.packet_type for pkt in read] == [packet.MESSAGE] * len(TEXTS)
    assert read[2].data == b"\x00\x01\x02\xff"
    del packets[2]
    assert [pkt.data for pkt in read[:2] + read[3:]] == [p["data"] for p in packets]


@pytest.mark.parametrize("client", [1, 2])
@pytest.mark.parametrize("b64", [True, False], ids=["b64", "binary"])
def test_bodies_written_by_the_chat_are_read_by_the_clients(client, b64):
    # 1.x reads ASCII alone (the chat's packets are ASCII: JSON with escapes)
    texts = TEXTS[:2] + ["4\ud800 lone"] if client == 2 else ['42["x"]', "2probe"]
    sent = [packet.Packet(encoded_packet=text) for text in texts]
    sent.append(packet.Packet(packet.MESSAGE, b"\x00\x01\xfe"))
    body, kind = polling.encode(sent, 3, b64=b64)

    if kind == polling.BINARY_CONTENT:
        job = {"parser": client, "decode": {"base64": base64.b64encode(body).decode()}}
    else:
        job = {"parser": client, "decode": body.decode("utf-8", "surrogatepass")}
    (read,) = parse_with_clients([job])

    assert kind == ("text/plain; charset=UTF-8" if b64 else polling.BINARY_CONTENT)
    written = [t[1:].replace("\ud800", "\ufffd") for t in texts]  # as JS writes
    assert [p["data"] for p in read["packets"][:-1]] == written
    assert read["packets"][-1]["data"] == {"base64": "AAH+"}


def test_lengths_count_utf16_code_units():
    assert polling.js_length("안녕 😀") == 5
    assert polling.encode([packet.Packet(packet.MESSAGE, "😀")], 3)[0] == (
        "3:4😀".encode()
    )


# The server


def test_the_handshake_opens_and_connects_to_the_default_namespace(server):
    _, opened, rest = session(server)

    assert {"sid", "upgrades", "pingInterval", "pingTimeout"} <= set(opened)
    assert opened["upgrades"] == ["websocket"]
    assert opened["pingInterval"] == INTERVAL * 1000
    assert rest == ["40"]  # Socket.IO 4: connected to `/`, no payload


def test_protocol_3_is_refused_when_switched_off(start_thread_server):
    server = start_thread_server(ALLOW_EIO3=False)

    assert requests.get(base(server), timeout=10).status_code == 400
    url = base(server, "websocket").replace("http", "ws")
    assert closed_within(websocket.create_connection(url, timeout=10), 5)
    assert "Traceback" not in server.log()


def test_the_client_pings_and_the_server_answers_and_never_pings(server):
    raw = websocket.create_connection(
        base(server, "websocket").replace("http", "ws"), timeout=10
    )
    assert raw.recv().startswith("0")
    assert raw.recv() == "40"
    received = []
    deadline = time.monotonic() + 2 * (INTERVAL + TIMEOUT)
    while time.monotonic() < deadline:  # longer than a silent client may stay
        raw.send("2")
        received.append(raw.recv())
        time.sleep(INTERVAL / 2)

    assert set(received) == {"3"}
    assert closed_within(raw, INTERVAL + TIMEOUT + 3)  # silent now: closed


def test_a_client_pinging_fast_has_one_deadline_kept(server):
    raw = websocket.create_connection(
        base(server, "websocket").replace("http", "ws"), timeout=10
    )
    assert raw.recv().startswith("0")
    assert raw.recv() == "40"

    for _ in range(500):
        raw.send("2")
    assert [raw.recv() for _ in range(500)] == ["3"] * 500

    assert len(socketio.server.eio.pinger.silences) == 1
    raw.close()


def test_a_silent_polling_client_is_closed_after_interval_plus_timeout(server):
    url, _, _ = session(server)

    time.sleep(INTERVAL + TIMEOUT)

    assert requests.get(url, timeout=10).status_code == 400


@pytest.mark.parametrize("wrong", ["3", "40"], ids=["pong", "connect to /"])
def test_a_packet_of_the_wrong_direction_closes_the_session(server, wrong):
    url, _, _ = session(server)

    assert post(url, wrong).status_code == 400
    assert requests.get(url, timeout=10).status_code == 400
    assert "Traceback" not in server.log()


def test_a_message_counted_in_utf16_is_stored_as_sent(server):
    url = joined(server)

    assert post(url, "2", EVENT.replace("42[", "423[")).status_code == 200

    answers = []
    while not any(p.startswith("433") for p in answers):
        answers += poll(url)
    stored = requests.get(f"{server.url}/api/channels/lobby/messages", timeout=10)
    assert stored.json()["messages"][0]["message"] == "안녕 😀 \ud7a3"
    assert "3" in answers  # the PONG


def test_a_body_counted_in_bytes_closes_the_session(server):
    url, _, _ = session(server)
    body = f"{len(EVENT.encode())}:{EVENT}"

    assert requests.post(url, data=body.encode(), timeout=10).status_code == 400
    assert requests.get(url, timeout=10).status_code == 400


@pytest.mark.parametrize("framing", ["binary", "b64"])
def test_a_binary_event_is_read_from_either_framing(server, framing):
    url = joined(server)
    event = '451-4["send_message",{"channel":"lobby","message":{"_placeholder":true,"num":0}}]'
    attachment = packet.Packet(packet.MESSAGE, b"\x01\x02")
    packets = [packet.Packet(encoded_packet=event), attachment]

    body, kind = polling.encode(packets, 3, b64=framing == "b64")
    headers = {"Content-Type": kind}
    assert requests.post(url, data=body, headers=headers, timeout=10).ok

    answers = []
    while not (acks := [p for p in answers if p.startswith("434")]):
        answers += poll(url)
    assert json.loads(acks[0][3:])[0]["code"] == "invalid_message"


def test_an_upgrade_with_probe_then_binary_frames(server):
    url = joined(server)
    sid = url.rsplit("sid=", 1)[1]
    raw = websocket.create_connection(
        base(server, "websocket").replace("http", "ws") + f"&sid={sid}", timeout=10
    )
    raw.send("2probe")
    assert raw.recv() == "3probe"
    assert requests.get(url, timeout=10).text == "1:6"  # NOOP ends the poll
    raw.send("5")

    raw.send(
        '451-5["send_message",{"channel":"lobby","message":{"_placeholder":true,"num":0}}]'
    )
    raw.send_binary(b"\x04\x01\x02")  # the type byte, then the data
    while not (frame := raw.recv()).startswith("435"):
        assert frame != "6"
    assert json.loads(frame[3:])[0]["code"] == "invalid_message"
    raw.send("2")
    assert raw.recv() == "3"
    raw.close()


def test_an_unknown_namespace_is_refused_as_protocol_4_says(server):
    raw = websocket.create_connection(
        base(server, "websocket").replace("http", "ws"), timeout=10
    )
    raw.recv()
    assert raw.recv() == "40"

    raw.send("40/random?token=1,")

    assert raw.recv() == '44/random,"Invalid namespace"'
    raw.close()
