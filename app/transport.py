"""The transports under Engine.IO: guarded input, coalesced output.

WebSocketTransport wraps the WebSocket that gevent-websocket hands each
connection (in `python wsgi.py` and in gunicorn's worker alike), and the
body of each long-polling POST:

* Input that is not Engine.IO at all (a WebSocket text frame, or a packet of
  a polling body, that does not start with a packet type; a body that is not
  UTF-8 or holds too many packets) reaches Socket.IO as an undecodable
  packet, which app.packets reports as `malformed`, rather than as an
  exception with a traceback in Engine.IO.
* Frames queued one after another go out in one write when the sender
  next yields, so a member receiving a burst of messages costs one system
  call per burst rather than one per message. Engine.IO's packets are queued
  here by app.engine, and chat messages by app.delivery: one frame, built
  once, for every member of a channel.
"""

import io
import re
import socket

import gevent
from geventwebsocket.websocket import Header, WebSocket

from app.packets import MALFORMED

# An Engine.IO frame: a packet type digit, or 'b' and base64 for binary.
_ENGINEIO_FRAME = re.compile(r"[0-6b]")
# An Engine.IO message whose Socket.IO packet fails to decode, on purpose.
_MALFORMED_FRAME = "4" + MALFORMED
# Packets of a long-polling body are separated by the record separator.
_SEPARATOR = "\x1e"
# Engine.IO refuses (with a traceback) bodies of more packets than this.
_MOST_PACKETS = 16


class WebSocketTransport:
    """WSGI middleware: wrap each request's WebSocket in a CoalescingWebSocket."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if "wsgi.websocket" in environ:
            environ["wsgi.websocket"] = CoalescingWebSocket(environ["wsgi.websocket"])
        elif environ.get("REQUEST_METHOD") == "POST" and "transport=polling" in (
            environ.get("QUERY_STRING") or ""
        ):
            _guard_polling_body(environ)
        return self.app(environ, start_response)


def _guard_polling_body(environ):
    """Replace what is not Engine.IO in a long-polling POST body."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # Engine.IO answers 400 itself
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
    """A gevent-websocket WebSocket that guards input and coalesces output."""

    def __init__(self, websocket):
        self._websocket = websocket
        self._pending = []
        self._scheduled = False  # in the next tick's flush
        self._draining = False  # a greenlet is writing what the socket refused
        # The operating system's socket, for writes that must not block.
        self._socket = getattr(
            getattr(websocket.handler, "socket", None), "_sock", None
        )
        # Each text message is decoded as UTF-8 anyway, which refuses invalid
        # input (closing with 1007) at C speed; gevent-websocket's check of
        # every frame in pure Python before that only costs time.
        websocket.utf8validator = _DECODED_LATER
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
        """The next frame; one that is not Engine.IO becomes a malformed one."""
        frame = self._websocket.receive()
        if isinstance(frame, str) and not _ENGINEIO_FRAME.match(frame):
            return _MALFORMED_FRAME
        return frame

    def send(self, message, binary=None):
        """Queue a text frame; all queued frames go out in one write when the
        sender next yields."""
        if self._websocket.closed:
            return  # the reader has seen the end, or soon will
        if binary or not isinstance(message, str):
            self._flush_now()
            return self._websocket.send(message, binary)
        self.write_frame(text_frame(message))

    def write_frame(self, frame):
        """Queue a whole frame (see text_frame); dropped once closed."""
        if self._websocket.closed:
            return
        self._pending.append(frame)
        if not self._scheduled and not self._draining:
            self._scheduled = True
            _flush_next_tick(self)

    def close(self, *args, **kwargs):
        """Write what is queued, then close."""
        if self._websocket.closed:
            return
        self._flush_now()
        return self._websocket.close(*args, **kwargs)

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
        try:
            self._flush_now()
        finally:
            self._draining = False

    def _flush_now(self):
        try:
            while self._pending:
                data = b"".join(self._pending)
                self._pending = []
                self._websocket.raw_write(data)
        except OSError:
            self._pending = []  # the peer is gone; the reader will notice


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


class _DecodedLater:
    """A UTF-8 validator that accepts every frame: decoding the whole message
    validates it."""

    def reset(self):
        pass

    def validate(self, payload):
        return True, True, 0, 0


_DECODED_LATER = _DecodedLater()


def text_frame(message):
    """A complete, unmasked WebSocket text frame holding `message`."""
    payload = message.encode()
    header = Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)
    return header + payload


def websocket_of(environ):
    """The CoalescingWebSocket of a connection's WSGI environ, if it has one."""
    websocket = environ.get("wsgi.websocket") if environ else None
    return websocket if isinstance(websocket, CoalescingWebSocket) else None
