"""gunicorn settings for `make serve`: one gevent-websocket worker per process.

Flask-SocketIO serves a client's long-polling requests from the process that
holds its session, so each process runs exactly one worker; scale out with
more processes behind a sticky load balancer (deploy/nginx.conf), joined by
REDIS_URL. Nothing here imports the app before the worker has loaded it:
the worker must patch the standard library with gevent before psycopg is
first imported.
"""

import os

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker


class ChatWorker(GeventWebSocketWorker):
    """Serves connections with the chat's handler, and closes every
    Socket.IO connection when asked to stop.

    The handler (app.wire.http.ChatHandler, the same as `python wsgi.py`
    uses) bounds what a client may hold: time to send a request, time idle
    between requests, body size, connections per address. gunicorn's own
    `keepalive` and `limit_request_*` settings apply only to its own HTTP
    parser, which this worker does not use, and `timeout` only to a worker
    that stops answering its master.

    Without closing connections on SIGTERM, the worker waits out
    graceful_timeout for WebSockets that never end. Closing the Engine.IO
    transport (not the Socket.IO session) makes clients reconnect at once,
    to another process or to the restarted one, and catch up with `since`.
    """

    def run(self):
        # The app is loaded by now (wsgi.py patched the standard library
        # first), and the handler takes its limits from the app's settings.
        from app.wire.http import ChatHandler

        self.wsgi_handler = ChatHandler.configured(self.wsgi.config)
        super().run()

    def handle_exit(self, sig, frame):
        # SIGTERM: stop accepting, close connections, finish what is running.
        super().handle_exit(sig, frame)
        gevent.spawn(_close_connections)


def _close_connections():
    """Close every Engine.IO transport without waiting for its queue to
    drain (a long-polling client with no poll outstanding would never drain
    it, and the sockets after it would stay open until graceful_timeout),
    and without Engine.IO's CLOSE packet: a client told CLOSE takes it as
    the server ending its session for good and does not reconnect
    (python-engineio's client), whereas a transport that just ends is one to
    reconnect, at once, elsewhere or to the restarted process."""
    from app.extensions import socketio

    eio = socketio.server.eio
    for socket in list(eio.sockets.values()):
        socket.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)


bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
worker_class = ChatWorker
workers = 1
# A connection holds one of these while its request is served (a WebSocket
# until it is set up); the chat's handler counts every open connection,
# WebSockets included, against the same number and refuses more with 503
# (app.wire.http). gunicorn's default of 1,000 would cap a process lower.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "20000"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
timeout = 60
accesslog = "-"
errorlog = "-"
# One control socket per machine would be shared by every process here.
control_socket_disable = True
