"""The WebSocket under Engine.IO: guarded frames in, coalesced frames out.

WebSocketTransport wraps the WebSocket that gevent-websocket hands each
connection (in `python wsgi.py` and in gunicorn's worker alike):

* A text frame that is not an Engine.IO frame at all reaches Socket.IO as an
  undecodable packet, which app.packets reports as `malformed`, rather than
  an exception in Engine.IO.
* Frames queued one after another go out in one write when the sender
  next yields, so a member receiving a burst of messages costs one system
  call per burst rather than one per message. Engine.IO's writer queues its
  packets here, and app.delivery queues chat messages directly: one frame,
  built once, for every member of a channel.
"""

import re
import socket

import gevent
from geventwebsocket.websocket import Header, WebSocket

from app.packets import MALFORMED

# An Engine.IO frame: a packet type digit, or 'b' and base64 for binary.
_ENGINEIO_FRAME = re.compile(r"[0-6b]")
# An Engine.IO message whose Socket.IO packet fails to decode, on purpose.
_MALFORMED_FRAME = "4" + MALFORMED


class WebSocketTransport:
    """WSGI middleware: wrap each request's WebSocket in a CoalescingWebSocket."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if "wsgi.websocket" in environ:
            environ["wsgi.websocket"] = CoalescingWebSocket(environ["wsgi.websocket"])
        return self.app(environ, start_response)


class CoalescingWebSocket:
    """A gevent-websocket WebSocket that guards input and coalesces output."""

    def __init__(self, websocket):
        self._websocket = websocket
        self._pending = []
        self._flusher = None
        # Each text message is decoded as UTF-8 anyway, which refuses invalid
        # input (closing with 1007) at C speed; gevent-websocket's check of
        # every frame in pure Python before that only costs time.
        websocket.utf8validator = _DECODED_LATER
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
        """Queue a text frame; a greenlet writes all queued frames at once
        when the sender next yields."""
        if binary or not isinstance(message, str):
            self._flush_now()
            return self._websocket.send(message, binary)
        if self._websocket.closed:
            return self._websocket.send(message)  # raises, as the writer expects
        self.write_frame(text_frame(message))

    def write_frame(self, frame):
        """Queue a whole frame (see text_frame); dropped once closed."""
        if self._websocket.closed:
            return
        self._pending.append(frame)
        if self._flusher is None:
            self._flusher = gevent.spawn_raw(self._flush)

    def close(self, *args, **kwargs):
        """Write what is queued, then close."""
        self._flush_now()
        return self._websocket.close(*args, **kwargs)

    def _flush(self):
        try:
            self._flush_now()
        finally:
            self._flusher = None

    def _flush_now(self):
        try:
            while self._pending:
                data = b"".join(self._pending)
                self._pending = []
                self._websocket.raw_write(data)
        except OSError:
            self._pending = []  # the peer is gone; the reader will notice


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
