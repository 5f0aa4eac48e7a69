"""gunicorn settings for `make serve`: one gevent-websocket worker per process.

Flask-SocketIO serves a client's long-polling requests from the process that
holds its session, so each process runs exactly one worker; scale out with
more processes behind a sticky load balancer (deploy/nginx.conf), joined by
REDIS_URL. Nothing here imports the app: the worker must patch the standard
library with gevent before psycopg is first imported.
"""

import os

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler

# Each connection reads through a buffer of this size for as long as it is
# open: pywsgi's default of 8 KB cost 3 KB of memory per idle WebSocket
# more than this, while requests and chat frames are a few hundred bytes.
READ_BUFFER = 1024


class ChatHandler(WebSocketHandler):
    """gevent-websocket's handler, reading through a small buffer."""

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server, rfile=sock.makefile("rb", READ_BUFFER))


class ChatWorker(GeventWebSocketWorker):
    """Closes every Socket.IO connection when asked to stop.

    Without this the worker waits out graceful_timeout for WebSockets that
    never end. Closing the Engine.IO transport (not the Socket.IO session)
    makes clients reconnect at once, to another process or to the restarted
    one, and catch up with `since`.
    """

    def handle_exit(self, sig, frame):
        # SIGTERM: stop accepting, close connections, finish what is running.
        super().handle_exit(sig, frame)
        gevent.spawn(_close_connections)

    wsgi_handler = ChatHandler


def _close_connections():
    from app.extensions import socketio

    socketio.server.eio.disconnect()


bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
worker_class = ChatWorker
workers = 1
# Each open WebSocket holds one of these; gunicorn's default of 1,000 would
# silently cap a process at 1,000 clients.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "20000"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
timeout = 60
accesslog = "-"
errorlog = "-"
# One control socket per machine would be shared by every process here.
control_socket_disable = True
