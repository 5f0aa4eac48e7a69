"""The transports under Engine.IO: guarded input, coalesced output.

websocket_transport wraps the WebSocket that gevent-websocket hands each
connection (in `python wsgi.py` and in gunicorn's worker alike), and the
body of each long-polling POST:

* Input that is not Engine.IO at all (a WebSocket text frame, or a packet of
  a polling body, that does not start with a packet type; a body that is not
  UTF-8 or holds too many packets) reaches Socket.IO as an undecodable
  packet, which app.packets reports as `malformed`, rather than as an
  exception with a traceback in Engine.IO.
* Frames are read here rather than by gevent-websocket: unmasked at C speed,
  and a message longer than the limit is refused before it is read.
* Frames queued one after another go out in one write when the sender
  next yields, so a member receiving a burst of messages costs one system
  call per burst rather than one per message. Engine.IO's packets are queued
  here by app.engine, and chat messages by app.delivery: one frame, built
  once, for every member of a channel.

Under both, ChatHandler serves each HTTP connection (for gunicorn's worker
and for `python wsgi.py` alike) and bounds what a client may hold before
any of the app's code runs: time to send a request, time idle between
requests, the size of a body, and connections per address.
"""

import io
import logging
import re
import socket
from collections import Counter
from http.client import HTTPException

import gevent
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header

from app.packets import MALFORMED

log = logging.getLogger(__name__)

# An Engine.IO frame: a packet type digit, or 'b' and base64 for binary.
_ENGINEIO_FRAME = re.compile(r"[0-6b]")
# An Engine.IO message whose Socket.IO packet fails to decode, on purpose.
_MALFORMED_FRAME = "4" + MALFORMED
# Packets of a long-polling body are separated by the record separator.
_SEPARATOR = "\x1e"
# Engine.IO refuses (with a traceback) bodies of more packets than this.
_MOST_PACKETS = 16

# WebSocket frames (RFC 6455, 5.2): the bits of the first two bytes, the
# opcodes, and the close codes (7.4.1) the reader uses.
_FIN, _RESERVED, _OPCODE, _MASKED, _LENGTH = 0x80, 0x70, 0x0F, 0x80, 0x7F
_CONTINUATION, _TEXT, _BINARY = 0x0, 0x1, 0x2
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA
_NORMAL, _PROTOCOL_ERROR, _INVALID_DATA, _TOO_BIG = 1000, 1002, 1007, 1009
# Most bytes taken from a socket at once, unless a frame needs more.
_RECEIVE_SIZE = 4 * 1024
# Seconds a client has to answer the server's close frame.
CLOSE_GRACE = 5


def websocket_transport(app, max_message):
    """WSGI middleware: wrap each request's WebSocket in a CoalescingWebSocket.

    A function rather than an object with __call__: calling an object from
    Python nests the interpreter on the C stack, and every WebSocket's
    greenlet keeps a copy of that stack for as long as it is open.
    """

    def serve(environ, start_response):
        if "wsgi.websocket" in environ:
            environ["wsgi.websocket"] = CoalescingWebSocket(
                environ["wsgi.websocket"], max_message
            )
        elif environ.get("REQUEST_METHOD") == "POST" and "transport=polling" in (
            environ.get("QUERY_STRING") or ""
        ):
            _guard_polling_body(environ, max_message)
        return app(environ, start_response)

    return serve


def _guard_polling_body(environ, max_message):
    """Replace what is not Engine.IO in a long-polling POST body.

    ChatHandler has read the body already, refusing one over the limit; a
    body still announced as longer is left unread for Engine.IO to refuse.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # Engine.IO answers 400 itself
    if length > max_message:
        return
    body = environ["wsgi.input"].read(length)
    try:
        packets = body.decode("utf-8").split(_SEPARATOR)
    except UnicodeDecodeError:
        packets = [_MALFORMED_FRAME]
    if len(packets) > _MOST_PACKETS:
        packets = [_MALFORMED_FRAME]
    packets = [p if _ENGINEIO_FRAME.match(p) else _MALFORMED_FRAME for p in packets]
    guarded = _SEPARATOR.join(packets).encode()
    environ["wsgi.input"] = io.BytesIO(guarded)
    environ["CONTENT_LENGTH"] = str(len(guarded))


class CoalescingWebSocket:
    """A gevent-websocket WebSocket that reads frames itself and coalesces
    output.

    Reading: gevent-websocket unmasks each frame byte by byte in Python (a
    tenth of the server's time under load), and reads whatever length a
    frame announces before anyone checks it. Here a frame is unmasked at C
    speed, and a message longer than `max_message` closes the connection
    (1009) before its payload is read.
    """

    def __init__(self, websocket, max_message):
        self._websocket = websocket
        self._max_message = max_message
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

        A text message that is not Engine.IO becomes a malformed one. A frame
        that breaks the protocol, text that is not UTF-8, or a message that
        is too long closes the connection with the matching close code.
        """
        if self._websocket.closed:
            return None
        try:
            message = self._read_message()
        except _Refused as refusal:
            self.close(refusal.code)
            return None
        except UnicodeDecodeError:
            self.close(_INVALID_DATA)
            return None
        except (OSError, EOFError):
            self.close()  # the peer is gone
            return None
        if self._websocket.closed:
            return None  # closed meanwhile, by either side
        if isinstance(message, str) and not _ENGINEIO_FRAME.match(message):
            return _MALFORMED_FRAME
        return message

    def _read_message(self):
        """Read frames up to the end of a data message; answer control frames."""
        opcode, fragments, size = None, [], 0
        while True:
            fin, frame_opcode, payload = self._read_frame(size)
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

    def write_frame(self, frame):
        """Queue a whole frame (see text_frame); dropped once closed."""
        if self._websocket.closed:
            return
        self._pending.append(frame)
        if not self._scheduled and not self._draining:
            self._scheduled = True
            _flush_next_tick(self)

    def close(self, code=_NORMAL):
        """Queue a close frame with `code` after what is queued; then closed.

        (gevent-websocket's own close() sends its close frame without the
        code.) Frames go out by the usual path, so they never interleave with
        a write in progress, and closing never waits for the client. A
        reader waiting for a frame returns None when the client's answering
        close frame, or anything else, arrives; a client that sends nothing
        for CLOSE_GRACE seconds has its connection shut.
        """
        if self._websocket.closed:
            return
        self._pending.append(_frame(_CLOSE, code.to_bytes(2, "big")))
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


def websocket_of(environ):
    """The CoalescingWebSocket of a connection's WSGI environ, if it has one."""
    websocket = environ.get("wsgi.websocket") if environ else None
    return websocket if isinstance(websocket, CoalescingWebSocket) else None


# Each connection reads through a buffer of this size for as long as it is
# open: pywsgi's default of 8 KB cost 3 KB of memory per idle WebSocket
# more than this, while requests and chat frames are a few hundred bytes.
READ_BUFFER = 1024
_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Connection: close\r\nContent-Length: 0\r\n\r\n"
)
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Connection: close\r\nContent-Length: 0\r\n\r\n"
)


class ChatHandler(WebSocketHandler):
    """gevent-websocket's handler, bounding what one client may hold.

    pywsgi reads a request's line, headers and body with no time limit, and
    after the app has answered it reads (to discard) whatever body the
    client announced, however large. Here:

    * a request's line, headers and body must arrive within
      `request_timeout` seconds of the connection opening, or of the next
      request's first byte on a kept-alive connection, which may wait idle
      `keepalive_timeout` seconds for it; otherwise the connection closes;
    * a body announced (Content-Length) as longer than `max_body` is
      answered 413 and the connection closed, without reading any of it; a
      chunked body is read up to the limit and refused the same way. A body
      within the limit is read whole before the app is called, which then
      reads it from memory and never waits for the client;
    * an address holding `max_per_address` connections (0: no limit) has
      more refused with 503 and closed at once.

    Once the app is called nothing here limits the connection: a long-poll
    waits for packets, and a WebSocket lives until Engine.IO's ping timeout
    or the client ends it. `configured()` makes the class that a server uses.
    """

    request_timeout = 10.0
    keepalive_timeout = 5.0
    max_body = 64 * 1024
    max_per_address = 0
    open_per_address = Counter()  # of the configured class, see configured()

    @classmethod
    def configured(cls, config):
        """A handler class with the limits of the app's `config`, counting
        the connections of its own server."""
        return type(
            cls.__name__,
            (cls,),
            {
                "request_timeout": config["REQUEST_TIMEOUT"],
                "keepalive_timeout": config["KEEPALIVE_TIMEOUT"],
                "max_body": config["MAX_CONTENT_LENGTH"],
                "max_per_address": config["MAX_CONNECTIONS_PER_ADDRESS"],
                "open_per_address": Counter(),
            },
        )

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server, rfile=sock.makefile("rb", READ_BUFFER))
        self._deadline = None
        self._kept_alive = False

    def handle(self):
        """Serve the connection's requests, unless its address holds too
        many connections already."""
        address = self.client_address
        address = address[0] if isinstance(address, tuple) else address
        held = self.open_per_address
        if self.max_per_address and held[address] >= self.max_per_address:
            self._refuse(address)
            return
        held[address] += 1
        try:
            super().handle()
        finally:
            held[address] -= 1
            if not held[address]:
                del held[address]

    def _refuse(self, address):
        log.info(
            "refused a connection from %s: it holds %d already"
            " (MAX_CONNECTIONS_PER_ADDRESS)",
            address,
            self.max_per_address,
        )
        with gevent.Timeout(1, False):  # never wait on a client that reads nothing
            try:
                self.socket.sendall(_UNAVAILABLE)
            except OSError:
                pass
        self.rfile.close()
        self.socket.close()

    def handle_one_request(self):
        """Read one request within the time limits and answer it; None
        closes the connection."""
        if self._kept_alive and not self._next_request_began():
            return None
        self._kept_alive = True
        self._deadline = gevent.Timeout.start_new(self.request_timeout)
        try:
            return super().handle_one_request()
        except gevent.Timeout as timeout:
            if timeout is not self._deadline:
                raise
            return None  # too slow to send its request: close quietly
        except _Unserved as unserved:
            return unserved.answer
        finally:
            self._deadline.close()

    def _next_request_began(self):
        """Wait up to keepalive_timeout for a kept-alive connection's next
        request to begin."""
        if self.rfile.closed:
            return False
        with gevent.Timeout(self.keepalive_timeout, False):
            try:
                return bool(self.rfile.peek(1))
            except OSError:
                return False
        return False

    def read_request(self, raw_requestline):
        """Parse the headers; too many of them is a client's error too."""
        try:
            return super().read_request(raw_requestline)
        except HTTPException as error:  # pywsgi would print its traceback
            raise ValueError(f"invalid headers: {error}") from None

    def get_environ(self):
        """The request's environ, with its body read whole within the limits
        (under the request's deadline, which ends here)."""
        environ = super().get_environ()
        body = self.wsgi_input
        if environ["wsgi.input"] is body and (
            self.content_length or body.chunked_input
        ):
            data = self._read_body()
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("HTTP_TRANSFER_ENCODING", None)  # read already
        self._deadline.close()
        return environ

    def _read_body(self):
        if (self.content_length or 0) > self.max_body:
            raise _Unserved(("413", _TOO_LARGE))  # before a byte of it is read
        try:
            data = self.wsgi_input.read(self.max_body + 1)
        except OSError:  # the client left, or broke the chunked encoding
            raise _Unserved(None) from None
        if len(data) > self.max_body:
            raise _Unserved(("413", _TOO_LARGE))
        return data


class _Unserved(Exception):
    """A request that gets this answer, as handle_one_request returns it:
    (status, the whole response) or None to close without one."""

    def __init__(self, answer):
        super().__init__(answer)
        self.answer = answer


def serve(app, host, port):
    """Serve `app` on host:port as `make run` does: gevent's WSGI server,
    each connection served by ChatHandler with the app's limits (gunicorn's
    worker, in gunicorn.conf.py, uses the same handler)."""
    handler = ChatHandler.configured(app.config)
    WSGIServer((host, port), app, handler_class=handler, log=None).serve_forever()
