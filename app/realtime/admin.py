"""The socket.io Admin UI's namespace, `/admin`: python-socketio's
instrumentation (socketio.admin.InstrumentedServer), in production mode and
read-only, listing the process's sockets too.

In production mode python-socketio reports the server's stats alone, and
the UI then shows no sockets. AdminPanel adds what the UI lists them from:
every socket with its rooms when an admin connects, then each connection,
disconnection, room entered and left, and move to a WebSocket, reported
from hooks that run when sockets connect and join, and only while an admin
is watching. The events sockets send and receive are not reported: they
are the chat's messages, private channels' too, and reporting them would
cost every message. Nothing goes through Redis: an admin sees the process
it is connected to, as with /metrics.

The UI (app.web.admin) logs in as `admin` with CHAT_ADMIN_PASSWORD; an
address that keeps getting the password wrong is refused for a while, as
wrong API keys are.
"""

import logging
import os
import socket
import time
from datetime import UTC, datetime
from functools import partial
from urllib.parse import parse_qs

from socketio.admin import InstrumentedServer
from socketio.exceptions import ConnectionRefusedError

from app.chat.errors import ChatError
from app.chat.identity import same_key
from app.chat.rate_limits import Sender
from app.metrics import may_read

log = logging.getLogger(__name__)

NAMESPACE = "/admin"
USER = "admin"
# The admins' room: what is reported goes there, never to the whole
# namespace, where a socket whose password is being checked already is.
ADMINS = "admins"
# What the UI may show: the server's aggregated counts, and every socket
# with its rooms and the events of their lives (ALL_EVENTS is what makes
# the UI list sockets); none of EMIT, JOIN, LEAVE or DISCONNECT.
FEATURES = ["AGGREGATED_EVENTS", "ALL_EVENTS"]
# Handshake headers not shown: credentials of the person behind a socket.
PRIVATE_HEADERS = frozenset(
    {"cookie", "authorization", "proxy_authorization", "x_api_key"}
)
MIN_PASSWORD_LENGTH = 16
OUTSIDE = "the Admin UI is open to this process's operators only"
UPGRADE_CHECKS = 5  # seconds a new long-polling socket is watched for its upgrade


class AdminPanel(InstrumentedServer):
    """The `/admin` namespace of a Socket.IO `server`, for admins who know
    `password`; wrong passwords are counted by `rates` (app.chat.rate_limits)."""

    def __init__(
        self, server, password, rates, allowed=(), person_of=None, stats_interval=2
    ):
        if len(password) < MIN_PASSWORD_LENGTH:
            raise RuntimeError(
                f"CHAT_ADMIN_PASSWORD has {len(password)} characters; the Admin"
                f" UI needs at least {MIN_PASSWORD_LENGTH}"
            )
        if not stats_interval > 0:
            raise RuntimeError("CHAT_ADMIN_STATS_INTERVAL must be a positive number")
        self.password = password
        self.rates = rates
        self.allowed = allowed  # networks besides loopback (CHAT_ADMIN_ALLOW)
        # The Person (app.chat.identity) behind a socket of the chat's
        # namespace, shown as the socket's data.
        self.person_of = person_of
        super().__init__(
            server,
            auth=self.admits,
            mode="production",
            read_only=True,
            namespace=NAMESPACE,
            server_stats_interval=stats_interval,
        )

    # python-socketio calls instrument() from __init__. In production mode
    # it would also wrap engineio's Socket class and Server._ok to count
    # packets and bytes, which the chat's wire does not go through; these
    # are the hooks that reach it.
    def instrument(self):
        server, manager = self.sio, self.sio.manager
        server.on("connect", self.admin_connect, namespace=self.admin_namespace)
        server.eio.on("connect", self._handle_eio_connect)
        server.eio.on("disconnect", self._handle_eio_disconnect)
        manager._timestamps = {}  # sid -> when it connected
        self._connect, manager.connect = manager.connect, self._connected
        self._trigger, server._trigger_event = server._trigger_event, self._triggered
        self._enter, manager.basic_enter_room = manager.basic_enter_room, self._entered
        self._leave, manager.basic_leave_room = manager.basic_leave_room, self._left

    def admits(self, credentials):
        """Whether `credentials` ({username, password}) are the admin's."""
        if not isinstance(credentials, dict):
            return False
        user, password = credentials.get("username"), credentials.get("password")
        return (
            user == USER
            and isinstance(password, str)
            and same_key(password, self.password)
        )

    def admin_connect(self, sid, environ, credentials):
        """Let an admin in, then send the UI its features and every socket.

        Only from the networks the Admin UI is open to (loopback and
        CHAT_ADMIN_ALLOW), never through a proxy. A wrong password counts
        towards the address's limit of wrong keys, and once that is spent
        even the right one is refused; no password at all (the UI
        reconnecting with a session, which python-socketio does not keep)
        is refused without counting."""
        address = environ.get("REMOTE_ADDR")
        if not self.reachable(environ):
            log.warning("Admin UI: a login from %s, outside its networks", address)
            raise ConnectionRefusedError(OUTSIDE)
        sender = Sender(None, address)
        tried = isinstance(credentials, dict) and "password" in credentials
        try:
            if tried:
                self.rates.check_spent("api_key", sender)
            if not self.admits(credentials):
                if tried:
                    log.warning("Admin UI: wrong password from %s", address)
                    self.rates.check("api_key", sender)
                raise ConnectionRefusedError("invalid credentials")
        except ChatError as error:
            raise ConnectionRefusedError(error.message) from None
        log.info("Admin UI: admin connected from %s", address)
        self.sio.enter_room(sid, ADMINS, namespace=self.admin_namespace)
        self.sio.start_background_task(self._welcome, sid)

    def reachable(self, environ):
        """Whether a request may reach the Admin UI: from loopback or the
        `allowed` networks, and not forwarded by a proxy."""
        if "HTTP_X_FORWARDED_FOR" in environ or "HTTP_FORWARDED" in environ:
            return False
        return may_read(environ.get("REMOTE_ADDR"), self.allowed)

    def _welcome(self, sid):
        self.sio.sleep(0.1)  # once the UI has its CONNECT
        self._tell("config", {"supportedFeatures": FEATURES}, to=sid)
        manager = self.sio.manager
        sockets = [
            self.serialize_socket(member, namespace, eio_sid)
            for namespace in list(manager.get_namespaces())
            for member, eio_sid in list(manager.get_participants(namespace, None))
        ]
        self._tell("all_sockets", sockets, to=sid)

    def watched(self):
        """Whether an admin is connected to this process."""
        return bool(self.sio.manager.rooms.get(self.admin_namespace, {}).get(ADMINS))

    def _tell(self, event, data, to=ADMINS):
        """Send the admins of this process (or one of them) an event, not
        through Redis."""
        self.sio.emit(
            event, data, to=to, namespace=self.admin_namespace, ignore_queue=True
        )

    # The hooks: python-socketio's manager and server, wrapped.

    def _connected(self, sid, namespace):
        sid = self._connect(sid, namespace)
        self.sio.manager._timestamps[sid] = time.time()
        if self.watched():
            self._report(
                "socket_connected",
                lambda: (self.serialize_socket(sid, namespace), _now()),
            )
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, namespace)
            connection = self.sio.eio.sockets.get(eio_sid)
            if connection is not None and not connection.upgraded:
                self.sio.start_background_task(
                    self._await_upgrade, connection, sid, namespace
                )
        return sid

    def _triggered(self, event, namespace, *args):
        # Only a socket reported connected has a timestamp to pop.
        if event == "disconnect" and self.sio.manager._timestamps.pop(args[0], None):
            reason = args[1] if len(args) > 1 else None
            self._report("socket_disconnected", (namespace, args[0], reason, _now()))
        return self._trigger(event, namespace, *args)

    def _entered(self, sid, namespace, room, eio_sid=None):
        self._enter(sid, namespace, room, eio_sid=eio_sid)
        # A socket's own room is among its rooms when it is reported.
        if room not in (None, sid):
            self._report("room_joined", (namespace, room, sid, _now()))

    def _left(self, sid, namespace, room):
        self._leave(sid, namespace, room)
        # Not for a socket refused as it connected: it was never reported.
        if room is not None and sid not in self.sio.manager.pending_connect.get(
            namespace, ()
        ):
            self._report("room_left", (namespace, room, sid, _now()))

    def _report(self, event, data):
        """Tell the admins watching `event` with `data` (or what `data()`
        makes): the hooks' one way out, which never fails the chat's own
        work."""
        if not self.watched():
            return
        try:
            self._tell(event, data() if callable(data) else data)
        except Exception:
            log.exception("Admin UI: telling the admins of %s failed", event)

    def _await_upgrade(self, connection, sid, namespace):
        """Report a long-polling socket's move to a WebSocket."""
        for _ in range(UPGRADE_CHECKS):
            self.sio.sleep(1)
            if connection.closed:
                return
            if connection.upgraded:
                update = {"id": sid, "nsp": namespace, "transport": "websocket"}
                self._report("socket_updated", update)
                return

    def _emit_server_stats(self):
        """Every `server_stats_interval` seconds, the server's stats for the
        admins watching (started with the first Engine.IO connection)."""
        started = time.time()
        while not self.stop_stats_event.is_set():
            self.sio.sleep(self.server_stats_interval)
            events = self.event_buffer.get_and_clear()
            self._report("server_stats", partial(self.stats, started, events))

    def stats(self, started, events):
        server, manager = self.sio, self.sio.manager
        connections = list(server.eio.sockets.values())
        namespaces = sorted(set(server.handlers) | set(server.namespace_handlers))
        return {
            "serverId": self.server_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "uptime": time.time() - started,
            "clientsCount": len(connections),
            "pollingClientsCount": sum(1 for each in connections if not each.upgraded),
            "aggregatedEvents": events,
            "namespaces": [
                {
                    "name": namespace,
                    "socketsCount": len(manager.rooms.get(namespace, {}).get(None, ())),
                }
                for namespace in namespaces
            ],
        }

    def serialize_socket(self, sid, namespace, eio_sid=None):
        """A socket as the UI lists it: python-socketio's fields, without
        the credentials among its handshake's headers."""
        manager = self.sio.manager
        if eio_sid is None:
            eio_sid = manager.eio_sid_from_sid(sid, namespace)
        socket = self.sio.eio.sockets.get(eio_sid)
        environ = self.sio.environ.get(eio_sid, {})
        connected = manager._timestamps.get(sid, 0)
        return {
            "id": sid,
            "clientId": eio_sid,
            "transport": "websocket" if socket and socket.upgraded else "polling",
            "nsp": namespace,
            "data": self._data(sid, namespace),
            "handshake": {
                "address": environ.get("REMOTE_ADDR", ""),
                "headers": {
                    name[5:].lower().replace("_", "-"): value
                    for name, value in environ.items()
                    if name.startswith("HTTP_")
                    and name[5:].lower() not in PRIVATE_HEADERS
                },
                "query": {
                    name: values[0] if len(values) == 1 else values
                    for name, values in parse_qs(
                        environ.get("QUERY_STRING", "")
                    ).items()
                },
                "secure": environ.get("wsgi.url_scheme", "") == "https",
                "url": environ.get("PATH_INFO", ""),
                "issued": connected * 1000,
                "time": _iso(connected) if connected else "",
            },
            "rooms": manager.get_rooms(sid, namespace),
        }

    def _data(self, sid, namespace):
        """Who is behind a socket of the chat: a verified person's id, name
        and role, or a guest."""
        if namespace != "/" or self.person_of is None:
            return {}
        person = self.person_of(sid)
        if not person.verified:
            return {"guest": True}
        return {"user_id": person.user_id, "name": person.name, "role": person.role}


def _iso(timestamp):
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _now():
    return _iso(time.time())
