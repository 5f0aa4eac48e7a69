"""How stored messages reach the members of a channel.

Services hand each committed message to the app's broadcaster and know
nothing else of sockets; tests swap in a fake with the same method.
"""

from flask import current_app


def room_of(channel):
    """The Socket.IO room of a channel's members.

    The prefix keeps channel rooms apart from the per-socket rooms Socket.IO
    names after each sid, which are valid channel names too.
    """
    return f"#{channel}"


class RoomBroadcaster:
    """Emits `message` events to a channel's room through Flask-SocketIO."""

    def __init__(self, socketio):
        self.socketio = socketio

    def message(self, message):
        """Send a stored message to every member of its channel."""
        self.socketio.emit("message", message, to=room_of(message["channel"]))


def init_app(app, socketio):
    """Give the app its broadcaster."""
    app.extensions["chat_broadcaster"] = RoomBroadcaster(socketio)


def broadcaster():
    """The current app's broadcaster."""
    return current_app.extensions["chat_broadcaster"]
