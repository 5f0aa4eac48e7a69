"""Scenario (f): WebSocket readers, reading the same client frames.

The chat parses WebSocket frames itself (app/wire/frames.py, fed the bytes
app/wire/websocket.py receives). This times it against the readers
python-engineio can use instead: gevent-websocket's (its default under
gevent) and wsproto's, the parser under simple-websocket
(python-engineio's reader when gevent-websocket is not installed; this
measures the parser alone, without the thread simple-websocket adds per
connection). Each reads `--messages` masked client frames of one size
through a socket pair on gevent, a writer greenlet on the other end; `raw`
only receives the bytes, the floor that every reader pays.

    python benchmarks/frames.py [--messages 20000] [--rounds 3] [--sizes 100 16384]

Prints one line of JSON: per size and reader, the round medians in
microseconds per message.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent  # noqa: E402
from gevent import socket  # noqa: E402
from geventwebsocket.websocket import Stream, WebSocket  # noqa: E402
from wsproto import ConnectionType  # noqa: E402
from wsproto.connection import Connection  # noqa: E402
from wsproto.events import TextMessage  # noqa: E402

from app.wire.frames import FrameParser  # noqa: E402

MAX_MESSAGE = 64 * 1024


def client_frame(text):
    """A masked text frame, as a browser sends it (RFC 6455, 5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 65536:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


def chat_event(size):
    """A `send_message` Engine.IO packet of about `size` bytes."""
    head = '42["send_message",{"channel":"lobby","message":"'
    tail = '","client_id":"4f1c2a9e-7d3b-4c55-9a61-0d2f8b3e6a71"}]'
    return head + "x" * max(size - len(head) - len(tail), 1) + tail


class Handler:
    """What a gevent-websocket WebSocket needs of pywsgi's handler."""

    def __init__(self, sock):
        self.socket = sock
        self.rfile = sock.makefile("rb")
        self.headers = {}


def gevent_websocket(sock):
    """gevent-websocket's WebSocket on an open connection."""
    handler = Handler(sock)
    return WebSocket({}, Stream(handler), handler)


def read_raw(sock, frames, count):
    total = len(frames) * count
    while total > 0:
        total -= len(sock.recv(65536))


def read_gevent_websocket(sock, frames, count):
    websocket = gevent_websocket(sock)
    for _ in range(count):
        websocket.receive()


def read_chat(sock, frames, count):
    parser = FrameParser(MAX_MESSAGE)
    received = 0
    while received < count:
        parser.feed(sock.recv(65536))
        while parser.next_event() is not None:
            received += 1


def read_wsproto(sock, frames, count):
    # The connection starts open, as after simple-websocket's handshake.
    connection = Connection(ConnectionType.SERVER)
    received = 0
    while received < count:
        connection.receive_data(sock.recv(65536))
        for event in connection.events():
            if isinstance(event, TextMessage) and event.message_finished:
                received += 1


READERS = {
    "raw": read_raw,
    "chat": read_chat,
    "gevent-websocket": read_gevent_websocket,
    "wsproto": read_wsproto,
}


def time_reader(read, frame, count):
    """Microseconds per message for `read` to take `count` copies of `frame`."""
    server, client = socket.socketpair()
    batch = frame * 64

    def write():
        for _ in range(count // 64):
            client.sendall(batch)
        client.sendall(frame * (count % 64))

    writer = gevent.spawn(write)
    started = time.perf_counter()
    read(server, frame, count)
    elapsed = time.perf_counter() - started
    writer.join()
    server.close()
    client.close()
    return elapsed / count * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 16384])
    args = parser.parse_args()
    results = {str(size): {name: [] for name in READERS} for size in args.sizes}
    for _ in range(args.rounds):
        for size in args.sizes:
            frame = client_frame(chat_event(size))
            for name, read in READERS.items():
                results[str(size)][name].append(time_reader(read, frame, args.messages))
    medians = {
        size: {name: statistics.median(values) for name, values in readers.items()}
        for size, readers in results.items()
    }
    print(json.dumps({"scenario": "frames", "rounds_us": results, "us": medians}))


if __name__ == "__main__":
    main()
