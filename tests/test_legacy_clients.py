"""socket.io-client 1.7.4 and 2.3.1 from Node (Engine.IO 3, Socket.IO 4),
over WebSocket alone and long-polling alone, in one channel with a
socket.io-client 4.8.4: history on join, chat both ways, acks, a reconnect
that catches up with `since`, and binary events."""

import json
import subprocess
import threading

import pytest
from servers import ROOT

CLIENT = ROOT / "tests" / "clients" / "chat_client.js"


class NodeClient:
    """A socket.io client of one major version in a Node process
    (tests/clients/chat_client.js), driven command by command."""

    def __init__(self, url, version, transports):
        self.lines = []
        self.arrived = threading.Condition()
        self.process = subprocess.Popen(
            ["node", str(CLIENT), url, str(version), transports],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda line: line.get("event") == "connect")

    def _read(self):
        for line in self.process.stdout:
            with self.arrived:
                self.lines.append(json.loads(line))
                self.arrived.notify_all()

    def wait(self, done, timeout=15):
        """The first line for which done(line) holds, waiting for it."""
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: next((line for line in self.lines if done(line)), None),
                timeout,
            )
        assert found, f"nothing came in time; got {self.lines}"
        return found

    def command(self, **fields):
        self.next_id += 1
        self.process.stdin.write(json.dumps({"id": self.next_id, **fields}) + "\n")
        self.process.stdin.flush()
        return self.wait(lambda line: line.get("id") == self.next_id)

    def call(self, event, payload, binary=None):
        """Emit an event and return its ack."""
        return self.command(do="emit", event=event, payload=payload, binary=binary)[
            "ack"
        ]

    def texts(self, count):
        """Wait for `count` messages; their texts."""
        self.wait(lambda _: len(self.received()) >= count)
        return [message["message"] for message in self.received()]

    def received(self):
        with self.arrived:
            return [
                line["data"] for line in self.lines if line.get("event") == "message"
            ]

    def reconnect(self):
        connects = sum(line.get("event") == "connect" for line in self.lines)
        self.command(do="open")
        self.wait(
            lambda _: sum(x.get("event") == "connect" for x in self.lines) > connects
        )

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def server(start_thread_server):
    return start_thread_server()


@pytest.fixture
def node_client(server):
    started = []

    def start(version, transports):
        started.append(NodeClient(server.url, version, transports))
        return started[-1]

    yield start
    for client in started:
        client.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("version", [1, 2])
def test_a_legacy_client_chats_with_a_4x_client(
    server, node_client, version, transport
):
    modern = node_client(4, "websocket")
    assert modern.call("join", {"channel": "lobby"})["ok"] is True
    modern.call("send_message", {"channel": "lobby", "message": "before"})

    legacy = node_client(version, transport)
    joined = legacy.call("join", {"channel": "lobby"})
    assert (joined["ok"], joined["last_seq"]) == (True, 1)
    assert legacy.texts(1) == ["before"]  # history on join

    ack = legacy.call("send_message", {"channel": "lobby", "message": "안녕 😀"})
    assert (ack["ok"], ack["seq"]) == (True, 2)
    modern.call("send_message", {"channel": "lobby", "message": "hi, old friend"})
    assert legacy.texts(3) == ["before", "안녕 😀", "hi, old friend"]
    assert modern.texts(3) == ["before", "안녕 😀", "hi, old friend"]

    legacy.command(do="close")
    modern.call("send_message", {"channel": "lobby", "message": "while away"})
    legacy.reconnect()
    caught_up = legacy.call("join", {"channel": "lobby", "since": 3})
    assert (caught_up["recovered"], caught_up["last_seq"]) == (True, 4)
    assert legacy.texts(4)[3:] == ["while away"]

    refused = legacy.call(
        "send_message", {"channel": "lobby", "message": "bytes"}, binary="message"
    )
    assert refused["code"] == "invalid_message"  # a binary event, decoded
    assert transport in legacy.command(do="transport")["done"]
    assert "Traceback" not in server.log()
