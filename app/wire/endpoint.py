"""The Engine.IO endpoint, `/socket.io/`: requests of protocols 4 and 3.

python-engineio 4 serves protocol 4 alone, and departs from the
specification in how it refuses requests. ChatEngine replaces its request
handling (Server.handle_request and _handle_connect) with one that serves
both protocols on the same endpoint, as Node's engine.io does with
`allowEIO3`, and answers as the specification says:

* `EIO` and `transport` are mandatory: without them, or with values not
  served (`EIO=3` while ALLOW_EIO3 is off), 400; so is any method but GET,
  POST and OPTIONS, and a POST that opens no session;
* a session answers only requests of its own protocol and transport, and
  none once it is on a WebSocket;
* the sockets (app.wire.connections, app.wire.legacy) refuse the rest: a
  second concurrent poll or post, a request after the ping deadline, a body
  that is not Engine.IO. Each closes the session and is answered 400.

Everything else (sessions, events, CORS, compression, cookies) is
python-engineio's.
"""

import logging
import time
import urllib.parse

from engineio import exceptions, packet
from engineio.server import Server

from app.wire.budget import DEFAULT
from app.wire.connections import ChatSocket, State
from app.wire.events import EventDispatch
from app.wire.legacy import LegacySocket
from app.wire.pinger import Pinger

logger = logging.getLogger(__name__)

_SOCKETS = {"4": ChatSocket, "3": LegacySocket}


def install(server, connect_timeout, allow_eio3=True, budget=DEFAULT, context=None):
    """Serve the Socket.IO `server`'s Engine.IO requests with ChatEngine:
    protocol 3 too when `allow_eio3`, sessions closed when they have joined
    no namespace `connect_timeout` seconds after they opened, each
    long-polling session's packets read within its inbound `budget`, and
    the messages of a WebSocket acted on inside `context()`."""
    eio, manager = server.eio, server.manager

    def joined(sid):
        namespaces = list(manager.get_namespaces())
        return any(manager.sid_from_eio_sid(sid, ns) for ns in namespaces)

    # The server exists already, built by python-socketio with the app's
    # settings; ChatEngine adds methods and state, no other fields.
    eio.__class__ = ChatEngine
    eio.versions = dict(_SOCKETS) if allow_eio3 else {"4": ChatSocket}
    eio.pinger = Pinger(eio, joined, connect_timeout)
    eio.budget = budget
    eio.socketio = server
    eio.dispatch = EventDispatch(server)
    eio.context = context
    server.packet_class = server.packet_class.limited(eio.max_http_buffer_size)


class ChatEngine(Server):
    """python-engineio's server, its requests handled by the chat.

    python-engineio's service task is never started: the Pinger checks
    every session's pings, and a closed session leaves `sockets` at once
    (ChatSocket.become), so all it would do is go round a copy of every
    session once per ping timeout, keeping closed ones alive meanwhile.
    """

    versions = {"4": ChatSocket}  # EIO value -> the class of its sockets
    pinger = None
    budget = DEFAULT  # of each long-polling session's inbound packets
    socketio = None  # the Socket.IO server it serves
    dispatch = None  # its EventDispatch: a socket's messages to Socket.IO
    context = None  # what a WebSocket's messages are acted on in

    def deliver(self, sid, broadcast):
        """Send a Broadcast (app.wire.connections) to the session `sid`."""
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.deliver(broadcast)
        else:  # gone, or a client of Flask-SocketIO's test client
            self.socketio._send_eio_packet(sid, broadcast.packet())

    def handle_request(self, environ, start_response):
        """Answer one request to the Engine.IO endpoint (WSGI)."""
        answer = self._answer(environ, start_response)
        if not isinstance(answer, dict):
            return answer  # a WebSocket, served until it closed
        self._compress(environ, answer)
        start_response(
            answer["status"], answer["headers"] + self._cors_headers(environ)
        )
        return [answer["response"]]

    def _answer(self, environ, start_response):
        if self.cors_allowed_origins != []:
            origin = environ.get("HTTP_ORIGIN")
            allowed = self._cors_allowed_origins(environ)
            if origin and allowed is not None and origin not in allowed:
                self._log_error_once(
                    f"{origin} is not an accepted origin.", "bad-origin"
                )
                return self._bad_request("Not an accepted origin.")
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            return self._ok()
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        version = _one(query, "EIO")
        transport = _one(query, "transport")
        sid = _one(query, "sid")
        jsonp = _one(query, "j")
        websocket = transport == "websocket"
        if version not in self.versions:
            return _refused("unsupported version of Engine.IO", version)
        if transport not in self.transports:
            return _refused("invalid transport", transport)
        if method not in ("GET", "POST"):
            return _refused("unsupported method", method)
        if jsonp is not None and (not jsonp.isdigit() or websocket or version == "3"):
            return _refused("JSONP: an index, for long-polling of protocol 4", jsonp)
        upgrade = environ.get("HTTP_UPGRADE", "").lower()
        if websocket and (method != "GET" or upgrade != "websocket"):
            return _refused("invalid WebSocket request", upgrade)
        if websocket and "wsgi.websocket" not in environ:
            # gevent-websocket upgrades only with `Connection: upgrade` too.
            connection = environ.get("HTTP_CONNECTION")
            return _refused("invalid WebSocket request", connection)
        if sid is None:
            if method != "GET":
                return _refused("a POST without a session", None)
            return self._open(environ, start_response, version, transport, query)
        socket = self.sockets.get(sid)
        if socket is None:  # never opened, or closed (ChatSocket.become)
            return _refused("unknown session", sid)
        if (
            socket.protocol != int(version)
            or socket.upgraded
            or (not socket.connected and not websocket)
        ):
            return _refused("request out of the session's protocol", sid)
        try:
            return self._serve(socket, environ, start_response, websocket, jsonp)
        except exceptions.EngineIOError:
            self.sockets.pop(sid, None)
            return self._bad_request()

    def _serve(self, socket, environ, start_response, websocket, jsonp):
        if websocket:
            return socket.serve_websocket(environ, start_response)
        if environ["REQUEST_METHOD"] == "POST":
            socket.post_request(environ)
            return {
                "status": "200 OK",
                "headers": [("Content-Type", "text/html")],
                "response": b"ok",  # as the specification writes it
            }
        return socket.response(socket.poll_request(), jsonp)

    def _open(self, environ, start_response, version, transport, query):
        """Open a session: the handshake, and its first packets."""
        sid = self.generate_id()
        socket = self.versions[version](self, sid)
        socket.opened = time.monotonic()
        socket.deadline = socket.opened + self.ping_interval + self.ping_timeout
        socket.pinger = self.pinger
        socket.b64 = "b64" in query
        self.sockets[sid] = socket
        socket.send(
            packet.Packet(
                packet.OPEN,
                {
                    "sid": sid,
                    "upgrades": self._upgrades(sid, transport),
                    "pingTimeout": int(self.ping_timeout * 1000),
                    "pingInterval": int(
                        (self.ping_interval + self.ping_interval_grace_period) * 1000
                    ),
                    "maxPayload": self.max_http_buffer_size,
                },
            )
        )
        accepted = self._trigger_event("connect", sid, environ, run_async=False)
        if accepted is not None and accepted is not True:
            del self.sockets[sid]
            logger.info("%s: the application refused the connection", sid)
            return self._unauthorized(accepted or None)
        socket.schedule_ping()
        if isinstance(socket, LegacySocket):
            socket.open()
        if transport == "websocket":
            return socket.serve_websocket(environ, start_response)
        socket.become(State.POLLING)
        answer = socket.response(socket.take(), _one(query, "j"))
        if self.cookie:
            answer["headers"].append(("Set-Cookie", self._cookie(sid)))
        return answer

    def _cookie(self, sid):
        attributes = self.cookie
        if not isinstance(attributes, dict):
            attributes = {"name": attributes, "path": "/", "SameSite": "Lax"}
        return self._generate_sid_cookie(sid, attributes)

    def _compress(self, environ, answer):
        """Compress a long answer as the client accepts, as engineio does."""
        if not self.http_compression or len(answer["response"]) < (
            self.compression_threshold
        ):
            return
        accepted = environ.get("HTTP_ACCEPT_ENCODING", "").split(",")
        for encoding in (choice.split(";")[0].strip() for choice in accepted):
            if encoding in self.compression_methods:
                answer["response"] = getattr(self, "_" + encoding)(answer["response"])
                answer["headers"].append(("Content-Encoding", encoding))
                return


def _one(query, name):
    values = query.get(name)
    return values[0] if values else None


def _refused(why, value):
    logger.info("refused an Engine.IO request: %s (%r)", why, value)
    return {
        "status": "400 BAD REQUEST",
        "headers": [("Content-Type", "text/plain")],
        "response": f'"{why}"'.encode(),
    }
