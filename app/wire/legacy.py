"""Clients of socket.io 1.x and 2.x: Engine.IO protocol 3 and Socket.IO
protocol 4, translated here so that nothing above the wire knows of them.

Engine.IO protocol 3 differs from 4 in three ways (engine.io-protocol's
history, and engine.io's lib/socket.ts with `allowEIO3`):

* the heartbeat goes the other way: the client sends PING every ping
  interval, the server answers PONG, and closes a session it has not heard
  within the interval and the timeout;
* long-polling bodies count lengths instead of separating packets
  (app.wire.polling);
* a binary message is one byte of packet type and the data, on a WebSocket
  too; as text it is `b4` and base64.

Socket.IO protocol 4 differs from 5 in its handshake (socket.io-protocol's
history, and socket.io's handling of `conn.protocol === 3`): the server
connects every client to `/` as soon as the Engine.IO session opens, without
waiting for a CONNECT; CONNECT carries no payload (protocol 5 sends the
sid); and a refused connection is an ERROR whose payload is the reason
itself rather than `{message, data}`. Events, acks and binary packets are
written the same way, so the chat's `message` frames serve both.
"""

import json
import time

from engineio import exceptions, packet

from app.wire import polling
from app.wire.connections import ChatSocket
from app.wire.packets import ProtocolError


def _decode_message(encoded_packet):
    """The packet of a WebSocket message of protocol 3."""
    if encoded_packet is None:
        return packet.Packet(packet.NOOP)
    return polling.decode_packet3(encoded_packet)


class LegacySocket(ChatSocket):
    """An Engine.IO socket of protocol 3 carrying Socket.IO protocol 4."""

    protocol = 3
    decode = staticmethod(_decode_message)

    def open(self):
        """Connect the client to the default namespace, as protocol 4 does
        without being asked."""
        self.server._trigger_event("message", self.sid, "0", run_async=False)

    def send(self, pkt):
        """Send a packet, its Socket.IO handshake written as protocol 4."""
        data = pkt.data
        if (
            pkt.packet_type == packet.MESSAGE
            and isinstance(data, str)
            and data[:1] in ("0", "4")
        ):
            pkt = packet.Packet(packet.MESSAGE, to_protocol4(data))
        return super().send(pkt)

    @staticmethod
    def encode(pkt):
        """A packet as a WebSocket message: binary data after its type byte."""
        if pkt.binary:
            return bytes([packet.MESSAGE]) + pkt.data
        return pkt.encode()

    def schedule_ping(self):
        """Expect the client's next PING within the interval and timeout."""
        self.last_ping = None
        self.deadline = time.monotonic() + self._silence()
        self.pinger.expect(self)

    def ping(self):
        """Clients of protocol 3 ping; the server never does."""

    def check_ping_timeout(self):
        """Close the socket if the client has been silent past its deadline."""
        if self.closed:
            raise exceptions.SocketIsClosedError()
        if time.monotonic() < self.deadline:
            return True
        self.server.logger.info("%s: Client is gone, closing socket", self.sid)
        self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
        return False

    def receive(self, pkt):
        """Answer the client's PING with PONG; a PONG from a client of
        protocol 3 breaks it, as does a CONNECT to `/`, connected already."""
        kind = pkt.packet_type
        if kind == packet.PING:
            self.schedule_ping()
            self.send(packet.Packet(packet.PONG, data=pkt.data))
        elif kind == packet.PONG:
            raise ProtocolError("invalid heartbeat direction")
        elif kind == packet.MESSAGE and pkt.data == "0":
            raise ProtocolError("a CONNECT to / that protocol 4 makes itself")
        else:
            super().receive(pkt)


def to_protocol4(data):
    """A Socket.IO packet of protocol 5 written as protocol 4: CONNECT
    without its payload, CONNECT_ERROR with the reason as its payload."""
    kind, rest, namespace = data[:1], data[1:], ""
    if rest[:1] == "/":
        comma = rest.find(",")
        if comma == -1:
            namespace, rest = rest + ",", ""
        else:
            namespace, rest = rest[: comma + 1], rest[comma + 1 :]
    if kind == "0":
        return "0" + namespace
    reason = json.loads(rest) if rest else None
    if isinstance(reason, dict):
        data = reason.get("data")
        reason = data if data is not None else reason.get("message")
    return "4" + namespace + (json.dumps(reason) if reason is not None else "")
