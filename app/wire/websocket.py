"""The WebSocket under Engine.IO: frames read and guarded, output coalesced.

The chat reads frames itself rather than through gevent-websocket: unmasked
at C speed, and a message longer than the limit is refused (1009) before it
is read. What the frames hold is Engine.IO's to judge (app.wire.connections
closes a connection whose message is not Engine.IO).

Frames queued one after another go out in one write when the sender next
yields, so a member receiving a burst of messages costs one system call per
burst rather than one per message. Engine.IO's packets are queued here by
app.wire.connections, and chat messages by app.realtime.delivery as a
SharedFrame: built once for every member of a channel, or once for each
Engine.IO protocol version among them.
"""

import logging
import socket

import gevent
from geventwebsocket.websocket import Header

from app.wire.budget import DEFAULT, InboundBudget, OverBudget

logger = logging.getLogger(__name__)

# WebSocket frames (RFC 6455, 5.2): the bits of the first two bytes, the
# opcodes, and the close codes (7.4.1) the reader uses.
_FIN, _RESERVED, _OPCODE, _MASKED, _LENGTH = 0x80, 0x70, 0x0F, 0x80, 0x7F
_CONTINUATION, _TEXT, _BINARY = 0x0, 0x1, 0x2
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA
_NORMAL, _PROTOCOL_ERROR, _INVALID_DATA, _POLICY, _TOO_BIG = (
    1000,
    1002,
    1007,
    1008,
    1009,
)
# Most bytes taken from a socket at once, unless a frame needs more.
_RECEIVE_SIZE = 64 * 1024
# Seconds a client has to answer the server's close frame.
CLOSE_GRACE = 5


class CoalescingWebSocket:
    """A gevent-websocket WebSocket that reads frames itself and coalesces
    output.

    Reading: gevent-websocket unmasks each frame byte by byte in Python (a
    tenth of the server's time under load), and reads whatever length a
    frame announces before anyone checks it. Here a frame is unmasked at C
    speed, and a message longer than `max_message` closes the connection
    (1009) before its payload is read. Every frame is paid for from the
    connection's inbound budget (app.wire.budget) before it is acted on; a
    connection that stays over it is closed (1008, with the reason).
    """

    protocol = 4  # of Engine.IO, which writes binary messages its own way

    def __init__(self, websocket, max_message, protocol=4, budget=DEFAULT):
        self._websocket = websocket
        self.protocol = protocol
        self._max_message = max_message
        self._budget = InboundBudget(budget)
        # Received bytes not yet read, from position _at on. The first read
        # takes what pywsgi's buffered reader holds beyond the request; later
        # ones read the socket itself, which waits for data in Python rather
        # than under the buffered reader's C code (so each idle connection's
        # greenlet saves a shallower stack), and takes all that has arrived.
        self._received, self._at = b"", 0
        self._receive = self._first_receive
        self._reader = None  # the greenlet reading frames
        self._pending = []
        self._scheduled = False  # in the next tick's flush
        self._draining = False  # a greenlet is writing what the socket refused
        # The operating system's socket, for writes that must not block.
        self._socket = getattr(
            getattr(websocket.handler, "socket", None), "_sock", None
        )
        # pywsgi keeps the request's parsed headers for as long as the handler
        # lives; the environ already holds them all, and nothing reads them
        # again once the WebSocket is open.
        websocket.handler.headers = None
        try:  # frames go out as soon as they are written
            websocket.handler.socket.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        except (AttributeError, OSError):
            pass

    def __getattr__(self, name):
        return getattr(self._websocket, name)

    def receive(self):
        """The next message, or None once the connection has ended.

        A frame that breaks the protocol, text that is not UTF-8, or a
        message that is too long closes the connection with the matching
        close code.
        """
        if self._websocket.closed:
            return None
        try:
            message = self._read_message()
        except _Refused as refusal:
            self.close(refusal.code)
            return None
        except OverBudget as over:
            logger.info("%s: %s, closing", _peer(self._websocket), over)
            self.close(_POLICY, str(over))
            return None
        except UnicodeDecodeError:
            self.close(_INVALID_DATA)
            return None
        except (OSError, EOFError):
            self.close()  # the peer is gone
            return None
        if self._websocket.closed:
            return None  # closed meanwhile, by either side
        return message

    def _read_message(self):
        """Read frames up to the end of a data message; answer control frames."""
        opcode, fragments, size = None, [], 0
        while True:
            fin, frame_opcode, payload = self._read_frame(size)
            self._budget.take()
            if self._websocket.closed:
                return None
            if frame_opcode == _PING:
                self.write_frame(_frame(_PONG, payload))
                continue
            if frame_opcode == _PONG:
                continue
            if frame_opcode == _CLOSE:
                self.close()
                return None
            if frame_opcode not in (_CONTINUATION, _TEXT, _BINARY) or (
                (frame_opcode == _CONTINUATION) == (opcode is None)
            ):
                raise _Refused(_PROTOCOL_ERROR)
            opcode = opcode or frame_opcode
            fragments.append(payload)
            size += len(payload)
            if fin:
                break
        message = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        return message.decode() if opcode == _TEXT else message

    def _read_frame(self, already):
        """One frame (RFC 6455, 5.2) of a message `already` bytes long so far."""
        first, second = self._read_exactly(2)
        if first & _RESERVED or not second & _MASKED:
            raise _Refused(_PROTOCOL_ERROR)  # no extension; clients must mask
        fin, opcode, length = bool(first & _FIN), first & _OPCODE, second & _LENGTH
        if opcode >= _CLOSE and (not fin or length > 125):
            raise _Refused(_PROTOCOL_ERROR)  # control frames are short and whole
        if length >= 126:
            length = int.from_bytes(self._read_exactly(2 if length == 126 else 8))
        if already + length > self._max_message:
            raise _Refused(_TOO_BIG)
        mask = self._read_exactly(4)
        return fin, opcode, _unmask(self._read_exactly(length), mask)

    def _read_exactly(self, size):
        end = self._at + size
        while len(self._received) < end:
            more = self._receive(max(_RECEIVE_SIZE, end - len(self._received)))
            if not more:
                raise EOFError("the connection ended inside a frame")
            self._received = self._received[self._at :] + more
            end -= self._at
            self._at = 0
        data = self._received[self._at : end]
        if end == len(self._received):
            self._received, self._at = b"", 0  # keep nothing while idle
        else:
            self._at = end
        return data

    def _first_receive(self, size):
        self._reader = gevent.getcurrent()
        handler = self._websocket.handler
        self._receive = handler.socket.recv
        return handler.rfile.read1()  # all that it holds, or one read

    def send(self, message, binary=None):
        """Queue a text (or binary) frame; all queued frames go out in one
        write when the sender next yields."""
        if binary or not isinstance(message, str):
            self.write_frame(_frame(_BINARY, bytes(message)))
        else:
            self.write_frame(text_frame(message))

    def write_shared(self, shared):
        """Queue a SharedFrame, framed for this socket's protocol version
        (once for all the sockets of that version)."""
        frame = shared.frames.get(self.protocol)
        if frame is None:
            frame = shared.frames[self.protocol] = packet_frame(
                shared.packet, self.protocol
            )
        self.write_frame(frame)

    def write_frame(self, frame):
        """Queue a whole frame (see text_frame); dropped once closed."""
        if self._websocket.closed:
            return
        self._pending.append(frame)
        if not self._scheduled and not self._draining:
            self._scheduled = True
            _flush_next_tick(self)

    def close(self, code=_NORMAL, reason=""):
        """Queue a close frame with `code` (and `reason`) after what is
        queued; then closed.

        (gevent-websocket's own close() sends its close frame without the
        code.) Frames go out by the usual path, so they never interleave with
        a write in progress, and closing never waits for the client. A
        reader waiting for a frame returns None when the client's answering
        close frame, or anything else, arrives; a client that sends nothing
        for CLOSE_GRACE seconds has its connection shut.
        """
        if self._websocket.closed:
            return
        reason = reason.encode()[:123]  # a control frame's payload is short
        self._pending.append(_frame(_CLOSE, code.to_bytes(2, "big") + reason))
        self._websocket.closed = True
        self._flush_without_blocking()
        if gevent.getcurrent() is not self._reader:
            gevent.spawn_later(CLOSE_GRACE, self._shut)

    def _shut(self):
        """End a connection whose client did not answer the close."""
        try:
            self._websocket.handler.socket.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass  # already ended

    def _flush_without_blocking(self):
        """Write what is queued as far as the socket takes it at once; a
        greenlet writes the rest (a slow reader waits alone)."""
        self._scheduled = False
        if self._draining or not self._pending:
            return
        if self._socket is None:
            self._drain_later()
            return
        data = b"".join(self._pending)
        self._pending = []
        try:
            sent = self._socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the peer is gone; the reader will notice
        if sent < len(data):
            self._pending.insert(0, data[sent:])
            self._drain_later()

    def _drain_later(self):
        self._draining = True
        gevent.spawn_raw(self._drain)

    def _drain(self):
        """The only write that may block: a greenlet of the socket's own,
        writing until nothing is queued."""
        try:
            while self._pending:
                data = b"".join(self._pending)
                self._pending = []
                self._websocket.raw_write(data)
        except OSError:
            self._pending = []  # the peer is gone; the reader will notice
        finally:
            self._draining = False


# The sockets with frames queued during this tick of the event loop, written
# by one callback once the running greenlet yields: no greenlet per socket.
_queued = []


def _flush_next_tick(websocket):
    if not _queued:
        gevent.get_hub().loop.run_callback(_flush_queued)
    _queued.append(websocket)


def _flush_queued():
    sockets = _queued[:]
    del _queued[:]
    for websocket in sockets:
        websocket._flush_without_blocking()


class _Refused(Exception):
    """A client's frame breaks the protocol: close with this code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _peer(websocket):
    """The client's address, for the log."""
    address = getattr(websocket.handler, "client_address", None)
    return address[0] if isinstance(address, tuple) else address


def _unmask(payload, mask):
    """XOR the payload with the repeated 4-byte mask, as one big integer."""
    if not payload:
        return payload
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return masked.to_bytes(size, "little")


def _frame(opcode, payload):
    """A complete, unmasked WebSocket frame."""
    return Header.encode_header(True, opcode, b"", len(payload), 0) + payload


def text_frame(message):
    """A complete, unmasked WebSocket text frame holding `message`."""
    return _frame(_TEXT, message.encode())


def packet_frame(pkt, protocol=4):
    """An Engine.IO packet as a WebSocket frame of `protocol`: protocol 3
    writes the packet type before binary data, protocol 4 the data alone."""
    if not pkt.binary:
        return text_frame(pkt.encode())
    data = pkt.data if protocol == 4 else bytes([pkt.packet_type]) + pkt.data
    return _frame(_BINARY, data)


class SharedFrame:
    """An Engine.IO packet sent to many WebSockets, framed at most once for
    each protocol version among them."""

    __slots__ = ("packet", "frames")

    def __init__(self, packet):
        self.packet = packet
        self.frames = {}  # protocol version -> frame


def websocket_of(environ):
    """The CoalescingWebSocket of a connection's WSGI environ, if it has one."""
    websocket = environ.get("wsgi.websocket") if environ else None
    return websocket if isinstance(websocket, CoalescingWebSocket) else None
