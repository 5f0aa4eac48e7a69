"""The HTTP connections under the app: what one client may hold.

ChatHandler serves each HTTP connection (for gunicorn's worker and for
`python wsgi.py` alike) and bounds what a client may hold before any of the
app's code runs: time to send a request, time idle between requests, the
size of a body, and connections per address.
"""

import io
import logging
from collections import Counter
from functools import partial
from http.client import HTTPException

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer
from geventwebsocket.handler import WebSocketHandler

from app.wire import budget
from app.wire.websocket import ChatWebSocket

log = logging.getLogger(__name__)


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
    * an address holding `max_per_address` connections (0: no limit), or a
      server holding `max_connections`, has more refused with 503 and
      closed at once.

    Once the app is called nothing here limits the connection: a long-poll
    waits for packets, and a WebSocket lives until Engine.IO's ping timeout
    or the client ends it. A WebSocket is a ChatWebSocket (app.wire.websocket)
    that Engine.IO detaches from the request once it is set up: this
    greenlet then ends, leaving the socket open, and the connection counts
    until the ChatWebSocket closes it. `configured()` makes the class that a
    server uses.
    """

    request_timeout = 10.0
    keepalive_timeout = 5.0
    max_body = 64 * 1024
    max_per_address = 0
    max_connections = 0
    inbound = budget.DEFAULT  # the budget of a WebSocket's inbound frames
    # Of the configured class (see configured()): connections open, by
    # address, and the total under None.
    open_per_address = Counter()

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
                "max_connections": config["WORKER_CONNECTIONS"],
                "inbound": budget.Settings.of(config),
                "open_per_address": Counter(),
            },
        )

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server, rfile=sock.makefile("rb", READ_BUFFER))
        self._deadline = None
        self._kept_alive = False
        self._detached = False

    def handle(self):
        """Serve the connection's requests, unless its address or the server
        holds too many connections already."""
        address = _address_of(self)
        held = self.open_per_address
        if self.max_per_address and held[address] >= self.max_per_address:
            limit = "it holds %d already (MAX_CONNECTIONS_PER_ADDRESS)"
            self._refuse(address, limit, self.max_per_address)
            return
        if self.max_connections and held[None] >= self.max_connections:
            limit = "the server holds %d (WORKER_CONNECTIONS)"
            self._refuse(address, limit, self.max_connections)
            return
        held[address] += 1
        held[None] += 1
        try:
            super().handle()
        finally:
            if not self._detached:
                _release(held, address)

    def run_websocket(self):
        """Serve the app on the request's WebSocket, as a ChatWebSocket.

        gevent-websocket's own closes the WebSocket once the app returns;
        one that Engine.IO detached stays open, read through the event loop,
        and is counted until it closes itself.
        """
        legacy = "EIO=3" in (self.environ.get("QUERY_STRING") or "")
        websocket = ChatWebSocket(
            self.websocket,
            self.max_body,
            protocol=3 if legacy else 4,
            budget=self.inbound,
            on_closed=partial(_release, self.open_per_address, _address_of(self)),
        )
        self.environ["wsgi.websocket"] = websocket
        try:
            self.application(self.environ, _no_response)
        finally:
            self.environ["wsgi.websocket"] = self.websocket = None
            if websocket.detached:
                self._detached = True
                self.socket = None  # pywsgi leaves it open
            else:
                websocket.close()

    def _refuse(self, address, why, limit):
        log.info("refused a connection from %s: " + why, address, limit)
        with gevent.Timeout(1, False):  # never wait on a client that reads nothing
            try:
                self.socket.sendall(_UNAVAILABLE)
            except OSError:
                pass
        self.rfile.close()
        self.socket.close()

    def log_request(self):
        """One line per request on the server's log, as pywsgi writes it
        (gevent-websocket's handler writes to a logger of its own that
        prints nothing): standard error under `make run`, gunicorn's log
        under `make serve`. A WebSocket's line comes when it is set up."""
        WSGIHandler.log_request(self)

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


def _release(held, address):
    """A connection of `address` has closed."""
    held[address] -= 1
    held[None] -= 1
    if not held[address]:
        del held[address]


def _address_of(handler):
    address = handler.client_address
    return address[0] if isinstance(address, tuple) else address


def _no_response(status, headers, exc_info=None):
    """start_response for a WebSocket: nothing is written."""
    return []


class _Unserved(Exception):
    """A request that gets this answer, as handle_one_request returns it:
    (status, the whole response) or None to close without one."""

    def __init__(self, answer):
        super().__init__(answer)
        self.answer = answer


def serve(app, host, port):
    """Serve `app` on host:port as `make run` does: gevent's WSGI server,
    each connection served by ChatHandler with the app's limits (gunicorn's
    worker, in gunicorn.conf.py, uses the same handler), and one line per
    request on standard error."""
    handler = ChatHandler.configured(app.config)
    WSGIServer((host, port), app, handler_class=handler).serve_forever()
