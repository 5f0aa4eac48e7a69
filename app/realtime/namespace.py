"""Socket.IO events of the chat, on the default namespace `/`.

Each handler parses its payload, calls a service, and answers: with an ack
when the client asked for one, and with `chat_error` to the sender alone
whenever it refuses the event, so clients without acks learn why too.
"""

from functools import wraps

from flask import current_app, has_app_context
from flask_socketio import ConnectionRefusedError, Namespace

from app.chat import messages, presence, rate_limits, rules
from app.realtime.broadcaster import broadcaster, room_of
from app.chat.errors import ChatError


def answered(handler):
    """Report a ChatError as `chat_error` and a failed ack; accept any arity."""
    event = handler.__name__.removeprefix("on_")

    @wraps(handler)
    def answer(self, sid, *args):
        try:
            return handler(self, sid, *args[:1])
        except ChatError as error:
            self.tell(sid, "chat_error", {"event": event, **error.as_dict()})
            return {"ok": False, **error.as_dict()}

    return answer


class ChatNamespace(Namespace):
    """The chat's events: join, send_message, typing and leave.

    Handlers take the sender's sid as their first argument and run in an
    application context. Flask-SocketIO would build a whole request context
    for every event, URL matching included, which none of them needs; the
    wire acts on the messages of one WebSocket wake-up in one app context.
    """

    def __init__(self, namespace, app):
        super().__init__(namespace)
        self.app = app

    def trigger_event(self, event, *args):
        """Call on_<event>(sid, ...) in the app's context, if there is one:
        the context the wire acts on a WebSocket's messages in, or one of
        its own."""
        handler = getattr(self, f"on_{event}", None)
        if handler is None:
            return None
        if has_app_context() and current_app._get_current_object() is self.app:
            return handler(*args)
        with self.app.app_context():
            return handler(*args)

    def tell(self, sid, event, data):
        """Send an event to one connection of this process."""
        self.server.emit(
            event, data, to=sid, namespace=self.namespace, ignore_queue=True
        )

    def on_connect(self, sid, environ, auth=None):
        """A page connects, optionally with `auth: {name, person}`: its
        display name, and the key its browser keeps for the person using it
        (so that their tabs count once in presence).

        Without a name it gets a readable guest name. An invalid name or
        person refuses the connection: the client's `connect_error` has the
        reason as its `message` and `{code, message}` as its `data`.
        """
        auth = auth if isinstance(auth, dict) else {}
        try:
            name = rules.display_name(auth.get("name"))
            person = rules.person_key(auth.get("person"))
        except ChatError as error:
            raise ConnectionRefusedError(error.message, error.as_dict()) from None
        presence.connect(sid, name or rules.guest_name(), person)

    def on_disconnect(self, sid, reason=None):
        """The connection ended: the member leaves every channel it was in."""
        presence.disconnect(sid)

    @answered
    def on_join(self, sid, payload=None):
        """A page sends `join {channel, since?, name?}` on every (re)connect.

        The joiner alone gets the retained messages after `since`, oldest
        first, as `message` events, and then the ack; the room gets the new
        `presence`. A `name` here replaces the one given at connect.
        """
        rate_limits.check("join", self._sender(sid))
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        since = rules.since_seq(fields.get("since"))
        name = rules.display_name(fields.get("name"))
        self._may_enter(sid, channel)
        if not self._connected(sid):
            return None  # it closed while the rate limit was checked
        if name:
            presence.rename(sid, name)
        # Join, and hold live messages, before reading: a message committed
        # meanwhile then arrives after the history, once, not lost between.
        self.enter_room(sid, room_of(channel))
        members = broadcaster()
        members.hold(sid, channel)
        try:
            found = messages.history(channel, since)
            members.replay(sid, channel, found.messages, found.last_seq)
        except BaseException:
            # Never leave a member held, receiving nothing, in the room.
            self.leave_room(sid, room_of(channel))
            raise
        if not self._connected(sid):
            return None  # it closed while the history was read: no ghost member
        present = presence.enter(channel, sid)
        return {
            "ok": True,
            "channel": channel,
            "last_seq": found.last_seq,
            "recovered": found.recovered,
            "name": presence.name_of(sid),
            "count": present["count"],
            "members": present["members"],
        }

    @answered
    def on_send_message(self, sid, payload=None):
        """A member sends `send_message {channel, message, client_id?}` from
        the page's form, and again with the same client_id until it is acked.

        Acked with the stored message's id and seq, after it is committed; a
        retry is acked with the ones its first send stored.
        """
        sender = self._sender(sid)
        rate_limits.check("send", sender)
        fields = rules.fields(payload)
        channel = self._joined(sid, fields.get("channel"))
        stored = messages.post_message(
            channel,
            fields.get("message"),
            presence.name_of(sid),
            fields.get("client_id"),
            sender=sender,
        )
        presence.sent(channel, sid)
        return {"ok": True, "id": stored["id"], "seq": stored["seq"]}

    @answered
    def on_typing(self, sid, payload=None):
        """A member's page sends `typing {channel}` while its person types.

        The other members get `typing {channel, author}`, at most once per
        CHAT_TYPING_INTERVAL per member; notices in between are dropped. The
        first notice after the member's message passes at once.
        """
        rate_limits.check("typing", self._sender(sid))
        channel = self._joined(sid, rules.fields(payload).get("channel"))
        if presence.may_type(channel, sid):
            presence.typing(channel, sid, presence.name_of(sid))
        return {"ok": True}

    @answered
    def on_leave(self, sid, payload=None):
        """A member sends `leave {channel}` to stop receiving a channel."""
        channel = rules.channel_name(rules.fields(payload).get("channel"))
        self.leave_room(sid, room_of(channel))
        presence.leave(channel, sid)
        return {"ok": True}

    def _sender(self, sid):
        """Who sent an event, for the rate limits: the connection and its
        address (the client's own behind a proxy, see PROXY_COUNT)."""
        environ = self.server.get_environ(sid, self.namespace) or {}
        return rate_limits.Sender(sid, environ.get("REMOTE_ADDR"))

    def _connected(self, sid):
        """Whether a connection is still open: a handler that yielded (to
        Redis, to the database) may resume after it closed."""
        return self.server.manager.is_connected(sid, self.namespace)

    def _may_enter(self, sid, channel):
        """Refuse a join that would put a connection in too many channels."""
        rooms = self.rooms(sid)
        limit = self.app.config["CHAT_MAX_CHANNELS_PER_CONNECTION"]
        # Socket.IO puts every connection in a room of its own, too.
        if room_of(channel) not in rooms and len(rooms) - 1 >= limit:
            raise ChatError(
                "too_many_channels",
                f"a connection may be in at most {limit} channels: leave one first",
            )

    def _joined(self, sid, value):
        """A valid channel name this socket has joined, or `not_joined`."""
        channel = rules.channel_name(value)
        if room_of(channel) not in self.rooms(sid):
            raise ChatError("not_joined", f"join {channel!r} before sending to it")
        return channel
