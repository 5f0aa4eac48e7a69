"""The chat's channel rooms, as the services see them.

The services are handed a Rooms and know nothing else of sockets: they put
a member in a channel's room and take it out, hand it committed messages,
presence and typing notices, and hold a joiner's live messages while its
history is replayed (in order with them, see app.realtime.delivery).
"""

import json

# How an edit or a delete, and a command to every process (such as "close
# this person's connections"), travel between processes (see queue_notice).
CHANGE_EVENT = "chat:change"
COMMAND_EVENT = "chat:command"


def room_of(channel):
    """The Socket.IO room of a channel's members.

    The prefix keeps channel rooms apart from the per-socket rooms Socket.IO
    names after each sid, which are valid channel names too.
    """
    return f"#{channel}"


def channel_of(room):
    """The channel whose members a room holds (the inverse of room_of)."""
    return room[1:]


class Rooms:
    """Channel rooms on the default namespace of the chat's Socket.IO server."""

    NAMESPACE = "/"

    def __init__(self, socketio):
        self.socketio = socketio

    @property
    def _server(self):
        return self.socketio.server

    @property
    def _manager(self):
        return self.socketio.server.manager

    def enter(self, member, channel):
        """Put a connection in a channel's room."""
        self._server.enter_room(member, room_of(channel), namespace=self.NAMESPACE)

    def leave(self, member, channel):
        """Take a connection out of a channel's room."""
        self._server.leave_room(member, room_of(channel), namespace=self.NAMESPACE)

    def channels_of(self, member):
        """The channels whose rooms a connection is in."""
        return {
            channel_of(room)
            for room in self._manager.get_rooms(member, self.NAMESPACE)
            if room.startswith("#")
        }

    def is_in(self, member, channel):
        """Whether a connection is in a channel's room."""
        return self._manager.is_in_room(member, self.NAMESPACE, room_of(channel))

    def tell(self, member, event, data):
        """Send an event to one connection of this process."""
        self._server.emit(
            event, data, to=member, namespace=self.NAMESPACE, ignore_queue=True
        )

    def disconnect(self, member):
        """Close a connection of this process."""
        self._server.disconnect(member, namespace=self.NAMESPACE, ignore_queue=True)

    def is_connected(self, member):
        """Whether a connection is still open: a service that yielded (to
        Redis, to the database) may resume after it closed."""
        return self._manager.is_connected(member, self.NAMESPACE)

    def message(self, message):
        """Send a stored message to every member of its channel, on any process."""
        self._manager.publish_message(message, room_of(message["channel"]))

    def change(self, change):
        """Send an edit or a delete to the members of its channel that have
        its message, on any process, in the channel's order of changes."""
        self._manager.publish_change(change, room_of(change["channel"]))

    def command(self, command):
        """Have every process, this one too, obey a command (app.chat's
        Membership.obey): through Redis when there is one."""
        self._manager.publish_command(command)

    def catch_up(self, member, changes):
        """Send a rejoining member the changes it missed while away."""
        for change in changes:
            self.tell(member, *change_event(change))

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

    def replay(self, sid, channel, history, last_seq, last_change=None):
        """Send a joiner its history (as it stood at `last_change`), then
        what was held, each once, in order."""
        self._manager.replay(sid, room_of(channel), history, last_seq, last_change)


def queue_notice(message, room, namespace="/", event="message"):
    """A stored message (or a change of one) as it travels on the Redis
    channel: python-socketio's emit, with no host_id, so that every process,
    the sender's included, delivers it from Redis, in Redis's order."""
    return {
        "method": "emit",
        "event": event,
        "data": [message],
        "binary": False,
        "namespace": namespace,
        "room": room,
        "skip_sid": None,
        "callback": None,
        "host_id": None,
    }


class QueuePublisher:
    """Sends messages from outside the servers, on the Redis channel that
    joins them (as `flask chat post` does)."""

    def __init__(self, link, channel):
        self.link = link
        self.channel = channel

    def message(self, message):
        """Send a stored message to every member of its channel; when Redis
        does not take it, the servers' repairers deliver it."""
        self._publish(queue_notice(message, room_of(message["channel"])))

    def change(self, change):
        """Send an edit or a delete to the members of its channel; when Redis
        does not take it, the servers' repairers deliver it."""
        room = room_of(change["channel"])
        self._publish(queue_notice(change, room, event=CHANGE_EVENT))

    def command(self, command):
        """Have every server process obey a command; when Redis does not
        take it, they find what the database holds (bans) on their own."""
        self._publish(queue_notice(command, None, event=COMMAND_EVENT))

    def _publish(self, notice):
        encoded = json.dumps(notice)
        self.link.run("publish", lambda client: client.publish(self.channel, encoded))


def change_event(change):
    """The event a member gets for a change: `message_deleted {channel,
    seq}` or `message_edited {channel, seq, message, edited_at}`."""
    if change["kind"] == "deleted":
        return "message_deleted", {"channel": change["channel"], "seq": change["seq"]}
    return "message_edited", {
        "channel": change["channel"],
        "seq": change["seq"],
        "message": change["message"],
        "edited_at": change["edited_at"],
    }
