"""How stored messages reach the members of a channel.

Services hand each committed message to the app's broadcaster and know
nothing else of sockets; tests swap in a fake with the same methods. The
socket handlers use it to replay a joiner's history in order with live
messages (see app.realtime.delivery).
"""

import json

from flask import current_app


def room_of(channel):
    """The Socket.IO room of a channel's members.

    The prefix keeps channel rooms apart from the per-socket rooms Socket.IO
    names after each sid, which are valid channel names too.
    """
    return f"#{channel}"


def channel_of(room):
    """The channel whose members a room holds (the inverse of room_of)."""
    return room[1:]


class RoomBroadcaster:
    """Sends messages to channel rooms through the chat's Socket.IO manager."""

    def __init__(self, socketio):
        self.socketio = socketio

    @property
    def _manager(self):
        return self.socketio.server.manager

    def message(self, message):
        """Send a stored message to every member of its channel, on any process."""
        self._manager.publish_message(message, room_of(message["channel"]))

    def presence(self, presence):
        """Tell a channel's members who is in it: `presence {channel, count, members}`."""
        self.socketio.emit("presence", presence, to=room_of(presence["channel"]))

    def typing(self, notice, skip):
        """Tell a channel's members but `skip` who is typing."""
        self.socketio.emit(
            "typing", notice, to=room_of(notice["channel"]), skip_sid=skip
        )

    def hold(self, sid, channel):
        """Hold a joiner's live messages until its history is replayed."""
        self._manager.hold(sid, room_of(channel))

    def replay(self, sid, channel, history, last_seq):
        """Send a joiner its history, then what was held, each once, in order."""
        self._manager.replay(sid, room_of(channel), history, last_seq)


def queue_notice(message, room, namespace="/"):
    """A stored message as it travels on the Redis channel: python-socketio's
    emit, with no host_id, so that every process, the sender's included,
    delivers it from Redis, in Redis's order."""
    return {
        "method": "emit",
        "event": "message",
        "data": [message],
        "binary": False,
        "namespace": namespace,
        "room": room,
        "skip_sid": None,
        "callback": None,
        "host_id": None,
    }


class QueueBroadcaster:
    """Sends messages from outside the servers, on the Redis channel that
    joins them (as `flask chat post` does)."""

    def __init__(self, link, channel):
        self.link = link
        self.channel = channel

    def message(self, message):
        """Send a stored message to every member of its channel; when Redis
        does not take it, the servers' repairers deliver it."""
        notice = json.dumps(queue_notice(message, room_of(message["channel"])))
        self.link.run("publish", lambda client: client.publish(self.channel, notice))


def init_app(app, socketio):
    """Give the app its broadcaster."""
    app.extensions["chat_broadcaster"] = RoomBroadcaster(socketio)


def broadcaster():
    """The current app's broadcaster."""
    return current_app.extensions["chat_broadcaster"]
