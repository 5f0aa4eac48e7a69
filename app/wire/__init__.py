"""The wire: Engine.IO connections, WebSocket frames and HTTP bodies.

Everything here works below Socket.IO and replaces parts of python-engineio,
gevent-websocket and gevent's pywsgi (the "Library internals" table of
docs/internals.md says what, why, and what it gained). install() puts it all
in place, once, after checking that those libraries are the versions it was
written against.
"""

from app.wire import budget, endpoint, versions


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
        # One app context for the messages a WebSocket's wake-up brings,
        # rather than one per event (7 µs each).
        context=app.app_context,
    )
