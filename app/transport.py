"""The WebSocket under Engine.IO: guarded frames in, coalesced frames out.

WebSocketTransport wraps the WebSocket that gevent-websocket hands each
connection (in `python wsgi.py` and in gunicorn's worker alike):

* A text frame that is not an Engine.IO frame at all reaches Socket.IO as an
  undecodable packet, which app.packets reports as `malformed`, rather than
  an exception in Engine.IO.
* Frames that Engine.IO's writer sends one after another (all it found
  queued for the socket) go out in one write, so a member receiving a burst
  of messages costs one system call per burst rather than one per message.
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
        payload = message.encode()
        header = Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)
        self._pending.append(header + payload)
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush)

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
