"""Socket.IO events of the chat, on the default namespace `/`.

Each handler parses its payload, calls a service, and answers: with an ack
when the client asked for one, and with `chat_error` to the sender alone
whenever it refuses the event, so clients without acks learn why too.
"""

from functools import wraps

from flask import request
from flask_socketio import (
    ConnectionRefusedError,
    Namespace,
    emit,
    join_room,
    leave_room,
    rooms,
)

from app import chat, presence, rules
from app.broadcast import broadcaster, room_of
from app.errors import ChatError


def answered(handler):
    """Report a ChatError as `chat_error` and a failed ack; accept any arity."""
    event = handler.__name__.removeprefix("on_")

    @wraps(handler)
    def answer(self, *args):
        try:
            return handler(self, *args[:1])
        except ChatError as error:
            emit("chat_error", {"event": event, **error.as_dict()})
            return {"ok": False, **error.as_dict()}

    return answer


class ChatNamespace(Namespace):
    """The chat's events: join, send_message, typing and leave."""

    def on_connect(self, auth=None):
        """A page connects, optionally with `auth: {name}`, its display name.

        Without a name it gets a readable guest name. An invalid name refuses
        the connection: the client's `connect_error` has the reason as its
        `message` and `{code, message}` as its `data`.
        """
        try:
            name = rules.display_name(
                auth.get("name") if isinstance(auth, dict) else None
            )
        except ChatError as error:
            raise ConnectionRefusedError(error.message, error.as_dict()) from None
        presence.connect(request.sid, name or rules.guest_name())

    def on_disconnect(self, reason=None):
        """The connection ended: the member leaves every channel it was in."""
        presence.disconnect(request.sid)

    @answered
    def on_join(self, payload=None):
        """A page sends `join {channel, since?, name?}` on every (re)connect.

        The joiner alone gets the retained messages after `since`, oldest
        first, as `message` events, and then the ack; the room gets the new
        `presence`. A `name` here replaces the one given at connect.
        """
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        since = rules.since_seq(fields.get("since"))
        name = rules.display_name(fields.get("name"))
        if name:
            presence.connect(request.sid, name)
        # Join, and hold live messages, before reading: a message committed
        # meanwhile then arrives after the history, once, not lost between.
        join_room(room_of(channel))
        members = broadcaster()
        members.hold(request.sid, channel)
        try:
            found = chat.history(channel, since)
        except ChatError:
            leave_room(room_of(channel))
            raise
        members.replay(request.sid, channel, found.messages, found.last_seq)
        present = presence.enter(channel, request.sid)
        return {
            "ok": True,
            "channel": channel,
            "last_seq": found.last_seq,
            "recovered": found.recovered,
            "name": self._name(),
            "count": present["count"],
            "members": present["members"],
        }

    @answered
    def on_send_message(self, payload=None):
        """A member sends `send_message {channel, message}` from the page's form.

        Acked with the stored message's id and seq, after it is committed.
        """
        fields = rules.fields(payload)
        channel = self._joined(fields.get("channel"))
        stored = chat.post_message(channel, fields.get("message"), self._name())
        return {"ok": True, "id": stored["id"], "seq": stored["seq"]}

    @answered
    def on_typing(self, payload=None):
        """A member's page sends `typing {channel}` while its person types.

        The other members get `typing {channel, author}`, at most once per
        CHAT_TYPING_INTERVAL per member; notices in between are dropped.
        """
        channel = self._joined(rules.fields(payload).get("channel"))
        if presence.may_type(channel, request.sid):
            presence.typing(channel, request.sid, self._name())
        return {"ok": True}

    @answered
    def on_leave(self, payload=None):
        """A member sends `leave {channel}` to stop receiving a channel."""
        channel = rules.channel_name(rules.fields(payload).get("channel"))
        leave_room(room_of(channel))
        presence.leave(channel, request.sid)
        return {"ok": True}

    @answered
    def on_malformed(self, payload=None):
        """Stands for any packet that could not be decoded (see app.packets)."""
        raise ChatError("invalid_payload", "packet is not a valid Socket.IO event")

    def _joined(self, value):
        """A valid channel name this socket has joined, or `not_joined`."""
        channel = rules.channel_name(value)
        if room_of(channel) not in rooms():
            raise ChatError("not_joined", f"join {channel!r} before sending to it")
        return channel

    def _name(self):
        return presence.name_of(request.sid)
