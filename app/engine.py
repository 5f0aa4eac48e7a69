"""Engine.IO sockets that cost one greenlet each, however many are open.

python-engineio gives every WebSocket three greenlets: the request's, which
reads; a writer, which moves packets from a queue to the WebSocket; and a
ping task, which sleeps out each ping interval. Idle, each holds its saved
stack, and together they were half of what an open connection cost.

A ChatSocket has only the request's greenlet. Once it is on a WebSocket, a
packet sent to it goes straight onto its CoalescingWebSocket (app.transport),
which queues the frame and writes it when the sender yields; and one task
per server sends every socket its PING when due. Long-polling clients, and
clients during the upgrade from long-polling, keep Engine.IO's queue.
"""

import logging
import time
from collections import deque

from engineio import exceptions, packet
from engineio.socket import Socket

logger = logging.getLogger(__name__)

# Sockets whose pings fall due this close together are pinged together.
_PING_GRANULARITY = 0.1


def install(server):
    """Make every Engine.IO socket that `server` opens from now a ChatSocket."""
    connect = server.handlers.get("connect")
    pinger = Pinger(server)

    def adopt(sid, environ):
        socket = server.sockets[sid]
        # Engine.IO builds its own Socket and queues the open packet; this
        # event comes next, before the socket is pinged or serves a request.
        # ChatSocket keeps the same state plus two attributes, so the object
        # can change class here.
        socket.__class__ = ChatSocket
        socket.pinger = pinger
        return connect(sid, environ) if connect else True

    server.on("connect", adopt)


class ChatSocket(Socket):
    """An Engine.IO socket writing straight to its WebSocket, without a writer
    greenlet, and pinged by its server's Pinger, without a ping greenlet."""

    websocket = None  # engineio's WebSocket wrapper, once upgraded
    pinger = None

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
        """Send the scheduled PING, unless the socket has closed since."""
        if not self.closing and not self.closed:
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
                data = ws.wait()  # app.transport refuses messages over the limit
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
    """One task sending each socket of a server its PING when due.

    Every socket waits the same interval, so sockets come due in the order
    they were scheduled, and a deque keeps them in that order.
    """

    def __init__(self, server):
        self.server = server
        self.due = deque()
        self.task = None

    def schedule(self, socket):
        self.due.append((time.monotonic() + self.server.ping_interval, socket))
        if self.task is None:
            self.task = self.server.start_background_task(self._run)

    def _run(self):
        while True:
            if not self.due:
                self.server.sleep(self.server.ping_interval)
                continue
            delay = self.due[0][0] - time.monotonic()
            if delay > 0:
                self.server.sleep(max(delay, _PING_GRANULARITY))
            horizon = time.monotonic() + _PING_GRANULARITY
            while self.due and self.due[0][0] <= horizon:
                _, socket = self.due.popleft()
                try:
                    socket.ping()
                except Exception:
                    logger.exception("ping of %s failed", socket.sid)
