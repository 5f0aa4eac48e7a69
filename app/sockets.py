"""Socket.IO events of the chat, on the default namespace `/`.

Each handler parses its payload, calls the service, and answers: with an ack
when the client asked for one, and with `chat_error` to the sender alone
whenever it refuses the event, so clients without acks learn why too.
"""

from functools import wraps

from flask import request
from flask_socketio import Namespace, emit, join_room, leave_room, rooms

from app import chat, rules
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
    """The chat's events: join, send_message and leave."""

    @answered
    def on_join(self, payload=None):
        """A page sends `join {channel, since?}` on every (re)connect.

        The joiner alone gets the retained messages after `since`, oldest
        first, as `message` events, and then the ack.
        """
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        since = rules.since_seq(fields.get("since"))
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
        return {
            "ok": True,
            "channel": channel,
            "last_seq": found.last_seq,
            "recovered": found.recovered,
        }

    @answered
    def on_send_message(self, payload=None):
        """A member sends `send_message {channel, message}` from the page's form.

        Acked with the stored message's id and seq, after it is committed.
        """
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        if room_of(channel) not in rooms():
            raise ChatError("not_joined", f"join {channel!r} before sending to it")
        stored = chat.post_message(channel, fields.get("message"))
        return {"ok": True, "id": stored["id"], "seq": stored["seq"]}

    @answered
    def on_leave(self, payload=None):
        """A member sends `leave {channel}` to stop receiving a channel."""
        channel = rules.channel_name(rules.fields(payload).get("channel"))
        leave_room(room_of(channel))
        return {"ok": True}

    @answered
    def on_malformed(self, payload=None):
        """Stands for any packet that could not be decoded (see app.packets)."""
        raise ChatError("invalid_payload", "packet is not a valid Socket.IO event")
