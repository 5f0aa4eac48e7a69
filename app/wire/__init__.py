"""The wire: Engine.IO connections, WebSocket frames and HTTP bodies.

Everything here works below Socket.IO and replaces parts of python-engineio,
gevent-websocket and gevent's pywsgi (the README's "Library internals" table
says what, why, and what it gained). install() puts it all in place, once,
after checking that those libraries are the versions it was written against.
"""

from app.wire import connections, polling, versions
from app.wire.websocket import CoalescingWebSocket


def install(app, socketio):
    """Check the libraries' versions, then serve `app`'s Socket.IO server
    through the chat's Engine.IO sockets, WebSockets and guarded bodies."""
    versions.check()
    connections.install(socketio.server, app.config["CONNECT_TIMEOUT"])
    app.wsgi_app = guarded(app.wsgi_app, max_message=app.config["MAX_CONTENT_LENGTH"])


def guarded(app, max_message):
    """WSGI middleware: wrap each request's WebSocket in a CoalescingWebSocket,
    and check each long-polling POST body before Engine.IO decodes it.

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
            polling.guard_body(environ, max_message)
        return app(environ, start_response)

    return serve
