"""The WebSocket of one connection: read through the event loop, written in
coalesced bursts.

A connection's request greenlet serves its WebSocket only until Engine.IO
has set it up (the open packet, or an upgrade's probe). Then the connection
is detached from the request: pywsgi's handler and gevent-websocket's
WebSocket are dropped, and the socket is read by a watcher of the event
loop. While the client is silent, nothing but that watcher waits for it; when
bytes arrive, a greenlet of their own acts on the messages they hold and
ends once the socket has no more. An idle greenlet keeps its saved stack and
a page of Python frames (7 KB at least, 16 KB for a request's): an idle
connection now costs only its objects.

The frames are parsed by app.wire.frames, and every one is paid for from the
connection's inbound budget (app.wire.budget) before it is acted on: a
connection over its budget is not read until the budget refills, and one
that stays over it is closed (1008, with the reason).

Frames queued one after another go out in one write when the sender next
yields, so a member receiving a burst of messages costs one system call per
burst rather than one per message. A socket that takes less than is queued
is written again when it is writable, by the event loop: no greenlet waits
on a slow reader either.
"""

import _socket
import logging
import socket

import gevent

from app.wire import frames
from app.wire.budget import DEFAULT, InboundBudget, OverBudget

logger = logging.getLogger(__name__)

# Most bytes taken from a socket at once.
RECEIVE_SIZE = 64 * 1024
# Seconds a client has to answer the server's close frame.
CLOSE_GRACE = 5
_READ, _WRITE = 1, 2


class ChatWebSocket:
    """One connection's WebSocket (see the module). Until detach() it is
    read in the request's greenlet (receive()); then through the event loop,
    each message handed to on_message."""

    __slots__ = (
        "protocol",
        "closed",
        "detached",
        "address",
        "_websocket",
        "_handler",
        "_sock",
        "_parser",
        "_budget",
        "_pending",
        "_scheduled",
        "_readable",
        "_writable",
        "_on_message",
        "_on_end",
        "_on_closed",
        "_context",
        "_ended",
        "_read_buffered",
    )

    def __init__(
        self, websocket, max_message, protocol=4, budget=DEFAULT, on_closed=None
    ):
        handler = websocket.handler
        self.protocol = protocol  # of Engine.IO, which frames binary data its way
        self.closed = False  # no more frames are sent
        self.detached = False
        self.address = _address(handler)
        self._websocket = websocket  # gevent-websocket's, for the handshake's details
        self._handler = handler
        self._sock = handler.socket._sock  # the operating system's socket
        self._parser = frames.FrameParser(max_message)
        self._budget = InboundBudget(budget)
        self._pending = []  # frames queued, not yet written
        self._scheduled = False  # in the next tick's flush
        self._readable = self._writable = None  # the event loop's watchers
        self._on_message = self._on_end = None
        self._on_closed = on_closed  # once the socket is closed
        self._context = None  # what the messages of one wake-up are acted on in
        self._ended = False
        self._read_buffered = False  # what pywsgi's reader held, taken
        # pywsgi keeps the request's parsed headers for as long as the handler
        # lives; the environ already holds them all.
        handler.headers = None
        try:  # frames go out as soon as they are written
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def __getattr__(self, name):
        # Engine.IO reads the handshake's details (path, origin, version).
        websocket = object.__getattribute__(self, "_websocket")
        if websocket is None:
            raise AttributeError(name)
        return getattr(websocket, name)

    # Reading in the request's greenlet, before detach()

    def receive(self):
        """The next message, or None once the connection has ended (the
        request's greenlet waits for it)."""
        while not self.closed:
            try:
                event = self._parser.next_event()
                if event is None:
                    data = self._wait_for_bytes()
                    if not data:
                        break  # the peer is gone
                    self._parser.feed(data)
                    continue
                message = self._act(event)
            except (frames.Refused, OverBudget) as refusal:
                self._refuse(refusal)
                return None
            except OSError:
                break
            if message is not None and not self.closed:
                return message
        self.close()
        return None

    def wait(self):
        """receive(), as gevent-websocket's WebSocket names it."""
        return self.receive()

    def _wait_for_bytes(self):
        handler = self._handler
        if not self._read_buffered:
            self._read_buffered = True
            return handler.rfile.read1()  # all that it holds, or one read
        return handler.socket.recv(RECEIVE_SIZE)

    # Reading through the event loop

    def detach(self, on_message, on_end, context=None):
        """Leave the request: from now on the socket is read by the event
        loop, on_message(data) is called for each message (in a greenlet
        that lives while there are messages to act on, inside `context()`
        if given), and on_end() once the connection has ended. The
        request's handler must then leave the socket open
        (app.wire.http.ChatHandler)."""
        handler = self._handler
        handler.socket.settimeout(0)
        held = handler.rfile.read1() if not self._read_buffered else b""
        fd = handler.socket.detach()  # pywsgi and gevent let go of it
        self._sock = _socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self._handler = self._websocket = None
        self._on_message, self._on_end = on_message, on_end
        self._context = context
        self.detached = True
        self._readable = gevent.get_hub().loop.io(fd, _READ)
        if held:
            self._parser.feed(held)
        if self._parser.buffered:  # frames that came with the last ones read
            gevent.spawn_raw(self._serve)
        else:
            self._readable.start(self._wake)

    def _wake(self):
        """The socket has bytes: act on them in a greenlet (this runs in the
        event loop, which must never wait)."""
        self._readable.stop()
        gevent.spawn_raw(self._serve)

    def _serve(self):
        """Act on every message the socket holds (inside the context, one
        for them all); then wait for more with no greenlet, or end the
        connection."""
        if self._context is None:
            self._act_on_messages()
        else:
            with self._context():
                self._act_on_messages()

    def _act_on_messages(self):
        parser, on_message = self._parser, self._on_message
        try:
            while not self._ended:
                event = parser.next_event()
                if event is None:
                    try:
                        data = self._sock.recv(RECEIVE_SIZE)
                    except BlockingIOError:
                        self._readable.start(self._wake)
                        return
                    if not data:
                        break  # the peer is gone
                    parser.feed(data)
                    continue
                message = self._act(event)
                if self.closed:
                    break  # by either side: nothing more is read
                if message is not None:
                    on_message(message)
        except (frames.Refused, OverBudget) as refusal:
            self._refuse(refusal)
        except OSError:
            pass
        self.end()

    def _act(self, event):
        """Pay for a frame, answer a control frame; the data of a message."""
        self._budget.take()
        opcode = event.opcode
        if opcode == frames.TEXT or opcode == frames.BINARY:
            return event.data
        if opcode == frames.PING:
            self.write_frame(frames.frame(frames.PONG, event.data))
        elif opcode == frames.CLOSE:
            self.close()  # the answer; then the connection ends
        return None

    def _refuse(self, refusal):
        if isinstance(refusal, OverBudget):
            logger.info("%s: %s, closing", self.address, refusal)
            self.close(frames.POLICY, str(refusal))
        else:
            self.close(refusal.code)

    # Writing

    def send(self, message, binary=None):
        """Queue a text (or binary) frame; all queued frames go out in one
        write when the sender next yields."""
        if binary or not isinstance(message, str):
            self.write_frame(frames.frame(frames.BINARY, bytes(message)))
        else:
            self.write_frame(frames.text_frame(message))

    def write_frame(self, frame):
        """Queue a whole frame (see app.wire.frames); dropped once closed."""
        if self.closed:
            return
        self._pending.append(frame)
        if not self._scheduled and self._writable is None:
            self._scheduled = True
            _flush_next_tick(self)

    def _flush(self):
        """Write what is queued as far as the socket takes it now; the rest
        when the socket is writable again."""
        self._scheduled = False
        pending = self._pending
        if not pending or self._sock is None:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the peer is gone; reading notices
        if sent < len(data):
            pending.append(data[sent:])
            if self._writable is None:
                self._writable = gevent.get_hub().loop.io(self._sock.fileno(), _WRITE)
                self._writable.start(self._write_more)
        elif self._writable is not None:
            self._writable.stop()
            self._writable = None

    def _write_more(self):
        self._flush()
        if self._ended and not self._pending:
            self._close_socket()

    # Closing

    def close(self, code=frames.NORMAL, reason=""):
        """Queue a close frame with `code` (and `reason`) after what is
        queued; then nothing more is sent. The connection ends when the
        client answers, or CLOSE_GRACE seconds later."""
        if self.closed:
            return
        self._pending.append(frames.close_frame(code, reason))
        self.closed = True
        self._flush()
        if self.detached and not self._ended:
            gevent.spawn_later(CLOSE_GRACE, self.end)

    def end(self):
        """The connection has ended: stop reading, tell Engine.IO, close the
        socket once what is queued is written (or cannot be)."""
        if self._ended:
            return
        self._ended = self.closed = True
        if self._readable is not None:
            self._readable.stop()
            self._readable = None
        if self._on_end is not None:
            self._on_end()
        # Let go of the session, whose methods these are: it can then be
        # freed at once rather than by the garbage collector's next pass.
        self._on_message = self._on_end = self._context = None
        if not self.detached:
            return  # pywsgi's handler closes the socket
        if self._writable is None:
            self._close_socket()
        else:  # after what is queued, or CLOSE_GRACE for a client that reads nothing
            gevent.spawn_later(CLOSE_GRACE, self._close_socket)

    def _close_socket(self):
        if self._writable is not None:
            self._writable.stop()
            self._writable = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        if self._on_closed is not None:
            self._on_closed()


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
        websocket._flush()


def _address(handler):
    """The client's address, for the log and the limits."""
    address = getattr(handler, "client_address", None)
    return address[0] if isinstance(address, tuple) else address


def websocket_of(environ):
    """The ChatWebSocket of a connection's WSGI environ, if it has one."""
    websocket = environ.get("wsgi.websocket") if environ else None
    return websocket if isinstance(websocket, ChatWebSocket) else None
