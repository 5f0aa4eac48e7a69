"""Engine.IO sockets that cost one greenlet each, however many are open.

python-engineio gives every WebSocket three greenlets: the request's, which
reads; a writer, which moves packets from a queue to the WebSocket; and a
ping task, which sleeps out each ping interval. Idle, each holds its saved
stack, and together they were half of what an open connection cost.

A ChatSocket has only the request's greenlet. Once it is on a WebSocket, a
packet sent to it goes straight onto its CoalescingWebSocket (app.wire.websocket),
which queues the frame and writes it when the sender yields; and one task
per server sends every socket its PING when due, and closes a socket that
has not answered within the ping timeout. Long-polling clients, and
clients during the upgrade from long-polling, keep Engine.IO's queue.

python-socketio keeps an Engine.IO connection that never connects to a
Socket.IO namespace for as long as it answers pings. When a ChatSocket's
ping falls due more than `connect_timeout` seconds after it opened, and it
has no namespace, it is closed instead (as Socket.IO's own server does after
its connectTimeout).
"""

import logging
import time
from collections import deque

from engineio import exceptions, packet
from engineio.socket import Socket

logger = logging.getLogger(__name__)

# Sockets whose pings fall due this close together are pinged together.
_PING_GRANULARITY = 0.1


def install(server, connect_timeout):
    """Make every Engine.IO socket that the Socket.IO `server` opens from now
    a ChatSocket, closed when it has joined no namespace `connect_timeout`
    seconds after it opened."""
    eio, manager = server.eio, server.manager
    connect = eio.handlers.get("connect")

    def joined(sid):
        namespaces = list(manager.get_namespaces())
        return any(manager.sid_from_eio_sid(sid, ns) for ns in namespaces)

    pinger = Pinger(eio, joined, connect_timeout)

    def adopt(sid, environ):
        socket = eio.sockets[sid]
        # Engine.IO builds its own Socket and queues the open packet; this
        # event comes next, before the socket is pinged or serves a request.
        # ChatSocket keeps the same state plus a few attributes, so the
        # object can change class here.
        socket.__class__ = ChatSocket
        socket.pinger = pinger
        socket.opened = time.monotonic()
        return connect(sid, environ) if connect else True

    eio.on("connect", adopt)


class ChatSocket(Socket):
    """An Engine.IO socket writing straight to its WebSocket, without a writer
    greenlet, and pinged by its server's Pinger, without a ping greenlet."""

    websocket = None  # engineio's WebSocket wrapper, once upgraded
    pinger = None
    opened = 0.0  # time.monotonic() when the socket opened

    def send(self, pkt):
        """Send a packet: onto the WebSocket, or into the long-polling queue."""
        websocket = self.websocket
        if websocket is None:
            return super().send(pkt)
        if self.check_ping_timeout():
            websocket.send(pkt.encode())

    def schedule_ping(self):
        """Ping again one interval after the client answered the last ping."""
        if self.last_ping:
            self.last_ping = None
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

    def close(self, wait=True, abort=False, reason=None):
        """Close; on a WebSocket, after writing what is queued for it."""
        websocket = self.websocket
        if websocket is None:
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event(
            "disconnect",
            self.sid,
            reason or self.server.reason.SERVER_DISCONNECT,
            run_async=False,
        )
        if not abort:
            websocket.send(packet.Packet(packet.CLOSE).encode())
        self.closed = True
        websocket.close()  # the reader sees the end and returns

    def _websocket_handler(self, ws):
        """Serve the WebSocket: read packets until it closes."""
        if self.connected and not self._upgrade(ws):
            return []
        self.connected = self.upgraded = True
        self.upgrading = False
        self._move_queue_to(ws)
        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)

        while True:
            try:
                data = ws.wait()  # app.wire.websocket refuses messages over the limit
            except Exception as error:
                if not self.closed:
                    self.server.logger.info(
                        '%s: Unexpected error "%s", closing connection',
                        self.sid,
                        error,
                    )
                break
            if data is None:
                break  # closed by the client
            try:
                self.receive(packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                break
            except Exception:
                self.server.logger.exception("Unknown receive error")
                break

        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        ws.close()
        return []

    def _upgrade(self, ws):
        """The probe exchange of a long-polling client moving to a WebSocket."""
        if self.upgrading or self.upgraded:
            return False  # another WebSocket of the same session got here first
        self.upgrading = True  # packets wait in the queue meanwhile
        probe = packet.Packet(encoded_packet=ws.wait())
        if probe.packet_type != packet.PING or probe.data != "probe":
            self.server.logger.info("%s: Failed websocket upgrade", self.sid)
            self.upgrading = False
            return False
        ws.send(packet.Packet(packet.PONG, data="probe").encode())
        self.queue.put(packet.Packet(packet.NOOP))  # ends the pending poll
        upgrade = packet.Packet(encoded_packet=ws.wait())
        if upgrade.packet_type != packet.UPGRADE:
            self.server.logger.info("%s: Failed websocket upgrade", self.sid)
            self.upgraded = self.upgrading = False
            return False
        # Let the long-poll still waiting on the queue take the NOOP that
        # ends it before the queue moves to the WebSocket.
        self.server.sleep(0)
        return True

    def _move_queue_to(self, ws):
        """Send what waits in the queue, then send straight to the WebSocket,
        and drop the queue (a few KB per connection).

        Nothing yields in between, so no packet overtakes a queued one.
        """
        empty = self.server.get_queue_empty_exception()
        while True:
            try:
                pkt = self.queue.get(block=False)
            except empty:
                break
            self.queue.task_done()
            if pkt is not None:
                ws.send(pkt.encode())
        self.websocket = ws
        self.queue = None


class Pinger:
    """One task sending each socket of a server its PING when due, and
    closing each socket that has not answered it within the ping timeout.

    Every socket waits the same interval for its ping, and the same timeout
    for the answer, so sockets come due in the order they were scheduled,
    and a deque for each keeps them in that order. (Engine.IO's own check
    goes round all sockets once per ping timeout, which let a silent one
    stay up to a whole timeout longer.)
    """

    def __init__(self, server, joined, connect_timeout):
        self.server = server
        self.joined = joined  # whether an Engine.IO sid has a namespace
        self.connect_timeout = connect_timeout
        self.due = deque()  # (when to ping, socket)
        self.answers = deque()  # (when the answer is late, socket)
        self.task = None

    def stray(self, socket):
        """Whether `socket` has had its time to join a namespace, and has none."""
        in_time = time.monotonic() - socket.opened < self.connect_timeout
        return not in_time and not self.joined(socket.sid)

    def schedule(self, socket):
        self.due.append((time.monotonic() + self.server.ping_interval, socket))
        if self.task is None:
            self.task = self.server.start_background_task(self._run)

    def _run(self):
        while True:
            self._wait()
            horizon = time.monotonic() + _PING_GRANULARITY
            while self.due and self.due[0][0] <= horizon:
                _, socket = self.due.popleft()
                self._attempt(socket.ping, socket)
                if socket.last_ping is not None:  # sent: expect the answer
                    late = self.server.ping_timeout + _PING_GRANULARITY
                    self.answers.append((time.monotonic() + late, socket))
            now = time.monotonic()
            while self.answers and self.answers[0][0] <= now:
                _, socket = self.answers.popleft()
                if not socket.closing and not socket.closed:
                    self._attempt(socket.check_ping_timeout, socket)

    def _wait(self):
        """Sleep until the next ping or answer falls due."""
        heads = [queue[0][0] for queue in (self.due, self.answers) if queue]
        if not heads:
            self.server.sleep(self.server.ping_interval)
        elif (delay := min(heads) - time.monotonic()) > 0:
            self.server.sleep(max(delay, _PING_GRANULARITY))

    @staticmethod
    def _attempt(action, socket):
        try:
            action()
        except Exception:
            logger.exception("ping of %s failed", socket.sid)
