"""Engine.IO sessions that cost no greenlet of their own, however many are open.

python-engineio gives every WebSocket three greenlets: the request's, which
reads; a writer, which moves packets from a queue to the WebSocket; and a
ping task, which sleeps out each ping interval. Idle, each holds its saved
stack, and together they were most of what an open connection cost.

A ChatSocket has none. Once it is on a WebSocket, a packet sent to it goes
straight onto its ChatWebSocket (app.wire.websocket), which queues the frame
and writes it when the sender yields, and which the event loop reads once
the request's greenlet has set it up; one task per server (app.wire.pinger)
sends every socket its PING when due, and closes a socket that has not
answered within the ping timeout. Long-polling clients, and clients during
the upgrade from long-polling, keep Engine.IO's queue. A session's life is
one State; python-engineio's flags (`connected`, `upgrading`, `upgraded`,
`closing`, `closed`) are views of it.

The socket follows the Engine.IO specification where python-engineio does
not: a packet that breaks the Engine.IO or Socket.IO protocol closes the
session; a second poll while one waits closes it (the waiting poll gets
CLOSE, the second 400); a poll or post after the ping deadline is refused
and the session closed; a poll pending when the client closes gets NOOP;
and the NOOP that ends a poll during an upgrade goes to that poll alone,
never onto the WebSocket. LegacySocket (app.wire.legacy) is the same socket
for clients of protocol 3.

python-socketio keeps an Engine.IO connection that never connects to a
Socket.IO namespace for as long as it answers pings. When a ChatSocket's
ping falls due more than `connect_timeout` seconds after it opened, and it
has no namespace, it is closed instead (as Socket.IO's own server does after
its connectTimeout).
"""

import enum
import logging
import time

import gevent
from engineio import exceptions, packet
from engineio.socket import Socket

from app.wire import frames, polling
from app.wire.budget import InboundBudget, OverBudget
from app.wire.packets import ProtocolError
from app.wire.websocket import websocket_of

logger = logging.getLogger(__name__)

# Put in a socket's queue to end the poll waiting on it with a NOOP; never
# sent itself.
END_POLL = object()


class State(enum.Enum):
    """Where an Engine.IO session is in its life."""

    OPENED = "opened"  # the handshake is sent; no transport connected yet
    POLLING = "polling"  # connected by long-polling
    UPGRADING = "upgrading"  # a WebSocket's probe: packets wait in the queue
    WEBSOCKET = "websocket"  # on its WebSocket, for good
    CLOSING = "closing"  # the disconnect handlers run
    CLOSED = "closed"


# The states each state may move to.
_NEXT = {
    State.OPENED: {State.POLLING, State.WEBSOCKET, State.CLOSING},
    State.POLLING: {State.UPGRADING, State.CLOSING},
    State.UPGRADING: {State.WEBSOCKET, State.POLLING, State.CLOSING},
    State.WEBSOCKET: {State.CLOSING},
    State.CLOSING: {State.CLOSED},
    State.CLOSED: set(),
}


def _flag(*states, on=None):
    """python-engineio's boolean for being in one of `states`, as a view of
    the socket's state. Its code sets it too: True moves the socket to
    `on`; False is its initial value, or (for `upgrading`) the end of a
    failed upgrade."""

    def read(socket):
        return socket.state in states

    def write(socket, value):
        if value:
            socket.become(on)
        elif socket.state is State.UPGRADING and State.UPGRADING in states:
            socket.become(State.POLLING)

    return property(read, write)


class ChatSocket(Socket):
    """An Engine.IO socket (protocol 4) writing straight to its WebSocket,
    without a writer greenlet, and pinged by its server's Pinger, without a
    ping greenlet."""

    protocol = 4
    decode = staticmethod(packet.Packet)  # a WebSocket message's packet
    # A packet as a WebSocket message (LegacySocket writes protocol 3's).
    encode = staticmethod(packet.Packet.encode)
    websocket = None  # its ChatWebSocket, once on one: packets go straight there
    pinger = None
    opened = 0.0  # time.monotonic() when the socket opened
    deadline = 0.0  # time.monotonic() by which the client must be heard
    polling = False  # a GET waits for packets
    posting = False  # a POST's packets are being received
    b64 = False  # (protocol 3) the client reads no binary long-polling bodies
    watched = False  # (protocol 3) the Pinger holds its deadline
    budget = None  # the InboundBudget of its long-polling packets
    ended_by = None  # why its WebSocket ended, if not by the client
    state = State.OPENED
    connected = _flag(State.POLLING, State.UPGRADING, State.WEBSOCKET, on=State.POLLING)
    upgrading = _flag(State.UPGRADING, on=State.UPGRADING)
    upgraded = _flag(State.WEBSOCKET, on=State.WEBSOCKET)
    closing = _flag(State.CLOSING, on=State.CLOSING)
    closed = _flag(State.CLOSED, on=State.CLOSED)

    def become(self, state):
        """Move to `state`; RuntimeError for a move its life does not make.
        A closed session leaves its server's sockets at once, whichever way
        it closed (python-engineio's own sweep would take up to a ping
        timeout to find it, and /metrics would count it meanwhile)."""
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"{self.sid}: {self.state.value} -> {state.value}")
        self.state = state
        if state is State.CLOSED and self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]

    def send(self, pkt):
        """Send a packet: onto the WebSocket, or into the long-polling queue."""
        websocket = self.websocket
        if websocket is None:
            return super().send(pkt)
        if self.check_ping_timeout():
            websocket.send(self.encode(pkt))

    def send_text(self, text):
        """Send a Socket.IO packet (text): as one frame onto the WebSocket,
        or as a packet into the long-polling queue. Nothing, once the
        connection has closed: an ack for a connection closed while its
        message was being stored is lost with it (its client sends the
        message again, with its client_id, and is acked then)."""
        if self.closed or self.closing:
            return
        websocket = self.websocket
        if websocket is None:
            self.send(packet.Packet(packet.MESSAGE, text))
        elif self.check_ping_timeout():
            websocket.write_frame(frames.text_frame("4" + text))  # Engine.IO MESSAGE

    def deliver(self, broadcast):
        """Send a message shared by many sockets: the one WebSocket frame
        made of it, or its packet into the long-polling queue."""
        websocket = self.websocket
        if websocket is None:
            self.send(broadcast.packet())
        else:
            websocket.write_frame(broadcast.frame())

    def schedule_ping(self):
        """Ping again one interval after the client answered the last ping."""
        if self.last_ping:
            self.last_ping = None
            self.deadline = time.monotonic() + self._silence()
            self.pinger.schedule(self)

    def ping(self):
        """Send the scheduled PING, unless the socket has closed since; close
        it instead if it has not connected to Socket.IO in time."""
        if self.closing or self.closed:
            return
        if self.pinger.stray(self):
            logger.info("%s: no Socket.IO connect in time, closing", self.sid)
            self.close(wait=False, reason=self.server.reason.SERVER_DISCONNECT)
            return
        self.last_ping = time.time()
        self.send(packet.Packet(packet.PING))

    def receive(self, pkt):
        """Act on a packet from the client; ProtocolError for one the
        protocol forbids."""
        kind = pkt.packet_type
        if kind == packet.MESSAGE:
            self._dispatch(pkt.data)
        elif kind == packet.PONG:
            self.schedule_ping()
        elif kind == packet.CLOSE:
            self.close(
                wait=False, abort=True, reason=self.server.reason.CLIENT_DISCONNECT
            )
        elif kind not in (packet.UPGRADE, packet.NOOP):  # ignored, as engine.io does
            raise ProtocolError(f"unexpected Engine.IO packet {kind}")

    def _dispatch(self, data):
        """Hand a message to Socket.IO, inline. ProtocolError, a packet that
        breaks the Socket.IO protocol, goes to the caller; anything else
        (the chat's handlers run inside) is logged with its traceback, as
        engineio does, and the connection stays."""
        try:
            self.server.dispatch(self, data)
        except ProtocolError:
            raise
        except Exception:
            self.server.logger.exception("message handler error")

    def close(self, wait=True, abort=False, reason=None):
        """Close; on a WebSocket, after writing what is queued for it."""
        websocket = self.websocket
        if websocket is None:
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        self.become(State.CLOSING)
        self.server._trigger_event(
            "disconnect",
            self.sid,
            reason or self.server.reason.SERVER_DISCONNECT,
            run_async=False,
        )
        if not abort:
            websocket.send(packet.Packet(packet.CLOSE).encode())
        self.become(State.CLOSED)
        websocket.close()  # after what is queued for it

    def refuse(self, why, reason=None):
        """Close the session for a request that breaks the protocol; the
        request is answered 400 (EngineIOError)."""
        logger.info("%s: %s, closing", self.sid, why)
        self.close(wait=False, reason=reason or self.server.reason.TRANSPORT_ERROR)
        raise exceptions.EngineIOError(why)

    def _silence(self):
        """Seconds the client may stay silent: the ping interval and timeout."""
        return self.server.ping_interval + self.server.ping_timeout

    def _check_deadline(self):
        if time.monotonic() >= self.deadline:
            self.refuse(
                "no answer to the ping in time", self.server.reason.PING_TIMEOUT
            )

    # Long-polling

    def poll_request(self):
        """The packets for a long-polling GET: those queued, or the first
        that arrive within the ping interval and timeout."""
        if self.polling:
            self.refuse("a second poll while one waits")
        self._check_deadline()
        if self.upgrading:
            return [packet.Packet(packet.NOOP)]  # the WebSocket takes over
        self.polling = True
        try:
            return self.take()
        except exceptions.QueueEmpty:
            self.refuse("a poll waited longer than the ping timeout")
        finally:
            self.polling = False

    def take(self):
        """Wait for a packet, then take every one queued; a NOOP when the
        wait ends without any (the socket closed, or is upgrading)."""
        queue = self.queue
        try:
            item = queue.get(timeout=self._silence())
        except self.server.get_queue_empty_exception():
            raise exceptions.QueueEmpty() from None
        packets = []
        while True:
            queue.task_done()
            if item is None:  # closed
                break
            if item is not END_POLL:
                packets.append(item)
            try:
                item = queue.get(block=False)
            except self.server.get_queue_empty_exception():
                break
        return packets or [packet.Packet(packet.NOOP)]

    def post_request(self, environ):
        """Receive the packets of a long-polling POST."""
        if self.posting:
            self.refuse("a second post while one is received")
        self._check_deadline()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > self.server.max_http_buffer_size:
            self.refuse("a long-polling body over the limit")
        body = environ["wsgi.input"].read(length)
        if self.budget is None:
            self.budget = InboundBudget(self.server.budget)
        self.posting = True
        try:
            for pkt in polling.decode(body, self.protocol, environ.get("CONTENT_TYPE")):
                self.budget.take()  # the answer waits while over the budget
                if self.closed:
                    break
                self.receive(pkt)
                if self.closed:
                    break
        except ValueError as error:
            self.refuse(f"invalid input ({error})")
        except OverBudget as over:
            self.refuse(str(over), self.server.reason.SERVER_DISCONNECT)
        finally:
            self.posting = False

    def response(self, packets, jsonp_index=None):
        """The long-polling response carrying `packets`."""
        body, content_type = polling.encode(
            packets, self.protocol, b64=self.b64, jsonp_index=jsonp_index
        )
        return {
            "status": "200 OK",
            "headers": [("Content-Type", content_type)],
            "response": body,
        }

    # WebSocket

    def serve_websocket(self, environ, start_response):
        """Serve this session's WebSocket request (an upgrade, or the
        session's only transport) until it closes."""
        websocket = self.server._async["websocket"](
            self._websocket_handler, self.server
        )
        return websocket(environ, start_response)

    def _websocket_handler(self, ws):
        """Set the WebSocket up (after an upgrade's probe, in the request's
        greenlet), then detach it: it is read through the event loop, and
        this greenlet ends."""
        if (self.connected and not self._upgrade(ws)) or self.closed:
            return []
        self.become(State.WEBSOCKET)
        self._move_queue_to(ws)
        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)
        self.websocket.detach(
            self._on_message, self._on_websocket_end, self.server.context
        )
        return []

    def _on_message(self, data):
        """A message of the WebSocket. A packet that breaks the protocol
        closes the connection, as does a fault of Engine.IO's own."""
        try:
            if type(data) is str and data[:2] == "42":  # a Socket.IO event
                self._dispatch(data[1:])  # as receive() would, without a Packet
            else:
                self.receive(self.decode(encoded_packet=data))
        except exceptions.SocketIsClosedError:
            self.websocket.close()
        except (ValueError, TypeError) as error:
            logger.info("%s: invalid input (%s), closing", self.sid, error)
            self.ended_by = self.server.reason.TRANSPORT_ERROR
            self.websocket.close()
        except Exception:
            self.server.logger.exception("Unknown receive error")
            self.websocket.close()

    def _on_websocket_end(self):
        """The WebSocket has ended: so has the session."""
        self.close(
            wait=False,
            abort=True,
            reason=self.ended_by or self.server.reason.TRANSPORT_CLOSE,
        )

    def _upgrade(self, ws):
        """The probe exchange of a long-polling client moving to a WebSocket,
        within the ping timeout, and while the session stays open."""
        if self.state is not State.POLLING:
            return False  # another WebSocket of the same session got here first
        self.become(State.UPGRADING)  # packets wait in the queue meanwhile
        upgraded = False
        with gevent.Timeout(self.server.ping_timeout, False):
            upgraded = self._probe(ws)
        if upgraded and not self.closed:
            return True
        self.server.logger.info("%s: Failed websocket upgrade", self.sid)
        if self.state is State.UPGRADING:
            self.become(State.POLLING)
        return False

    def _probe(self, ws):
        if not self._read(ws, packet.PING, "probe") or self.closed:
            return False
        ws.send(self.encode(packet.Packet(packet.PONG, data="probe")))
        if self.polling:
            self.queue.put(END_POLL)  # the pending poll ends with a NOOP
        return self._read(ws, packet.UPGRADE)

    def _read(self, ws, kind, data=None):
        """Whether the WebSocket's next packet is of `kind` with `data`."""
        try:
            pkt = self.decode(encoded_packet=ws.wait())
        except (ValueError, TypeError):
            return False
        return pkt.packet_type == kind and (data is None or pkt.data == data)

    def _move_queue_to(self, ws):
        """Send what waits in the queue, then send straight to the WebSocket,
        and drop the queue (a few KB per connection).

        Nothing yields in between, so no packet overtakes a queued one. A
        poll still waiting on the queue (its wake-up taken here) is ended.
        """
        queue, empty = self.queue, self.server.get_queue_empty_exception()
        while True:
            try:
                pkt = queue.get(block=False)
            except empty:
                break
            queue.task_done()
            if pkt is not None and pkt is not END_POLL:
                ws.send(self.encode(pkt))
        # From now on packets go straight onto the chat's WebSocket, without
        # Engine.IO's wrapper (which holds the request's environ).
        self.websocket = websocket_of(ws.environ)
        self.queue = None
        if self.polling:
            queue.put(END_POLL)


class Broadcast:
    """A Socket.IO packet (its text) sent to many sockets: one WebSocket
    frame of it for every socket on a WebSocket, of either protocol (a text
    message is framed alike in both), and one Engine.IO packet for every
    long-polling queue, each made at most once."""

    __slots__ = ("text", "_frame", "_packet")

    def __init__(self, text):
        self.text = text
        self._frame = self._packet = None

    def frame(self):
        if self._frame is None:
            self._frame = frames.text_frame("4" + self.text)  # Engine.IO MESSAGE
        return self._frame

    def packet(self):
        if self._packet is None:
            self._packet = packet.Packet(packet.MESSAGE, self.text)
        return self._packet
