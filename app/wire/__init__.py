"""The wire: Engine.IO connections, WebSocket frames and HTTP bodies.

Everything here works below Socket.IO and replaces parts of python-engineio,
gevent-websocket and gevent's pywsgi (the README's "Library internals" table
says what, why, and what it gained). install() puts it all in place, once,
after checking that those libraries are the versions it was written against.
"""

from app.wire import budget, endpoint, versions
from app.wire.websocket import CoalescingWebSocket


def install(app, socketio):
    """Check the libraries' versions, then serve `app`'s Socket.IO server
    through the chat's Engine.IO endpoint, sockets and WebSockets: Engine.IO
    protocol 4, and protocol 3 too unless ALLOW_EIO3 is off."""
    versions.check()
    inbound = budget.Settings.of(app.config)
    endpoint.install(
        socketio.server,
        app.config["CONNECT_TIMEOUT"],
        allow_eio3=app.config["ALLOW_EIO3"],
        budget=inbound,
    )
    app.wsgi_app = guarded(
        app.wsgi_app, max_message=app.config["MAX_CONTENT_LENGTH"], budget=inbound
    )


def guarded(app, max_message, budget):
    """WSGI middleware: wrap each request's WebSocket in a CoalescingWebSocket
    that frames messages for the request's Engine.IO protocol version, and
    reads them within the connection's inbound `budget`.

    A function rather than an object with __call__: calling an object from
    Python nests the interpreter on the C stack, and every WebSocket's
    greenlet keeps a copy of that stack for as long as it is open.
    """

    def serve(environ, start_response):
        if "wsgi.websocket" in environ:
            legacy = "EIO=3" in (environ.get("QUERY_STRING") or "")
            environ["wsgi.websocket"] = CoalescingWebSocket(
                environ["wsgi.websocket"],
                max_message,
                protocol=3 if legacy else 4,
                budget=budget,
            )
        return app(environ, start_response)

    return serve
