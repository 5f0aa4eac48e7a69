"""What a connection does in the chat's channels: it connects under a name,
joins channels (getting what it missed), sends, types and leaves.

The Socket.IO handlers hand each event's payload here as it arrived; this
service checks it, applies the chat's rules and limits, and works the rooms
through `rooms` (app.realtime.rooms.Rooms), which it is handed.
"""

from app.chat import messages, rules
from app.chat.errors import ChatError


class Membership:
    """The chat as a connection (a `member`, named by its sid) sees it."""

    def __init__(self, rooms, posting, presence, rates, max_channels):
        self.rooms = rooms
        self.posting = posting  # app.chat.messages.Messages
        self.presence = presence
        self.rates = rates
        self.max_channels = max_channels

    def connect(self, member, auth):
        """A page connects, optionally with `auth: {name, person}`: its
        display name, and the key its browser keeps for the person using it
        (so that their tabs count once in presence). Without a name it gets
        a readable guest name; an invalid name or person is refused."""
        auth = auth if isinstance(auth, dict) else {}
        name = rules.display_name(auth.get("name"))
        person = rules.person_key(auth.get("person"))
        self.presence.connect(member, name or rules.guest_name(), person)

    def disconnect(self, member):
        """The connection ended: it leaves every channel it was in."""
        self.presence.disconnect(member)

    def join(self, member, sender, payload):
        """`join {channel, since?, name?}`: enter the channel's room, get its
        retained messages after `since` as `message` events, oldest first,
        and announce the new presence. A `name` replaces the one given at
        connect.

        Returns the joined channel `{channel, last_seq, recovered, name,
        count, members}`, or None when the connection closed meanwhile.
        """
        self.rates.check("join", sender)
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        since = rules.since_seq(fields.get("since"))
        name = rules.display_name(fields.get("name"))
        self._may_enter(member, channel)
        rooms = self.rooms
        if not rooms.is_connected(member):
            return None  # it closed while the rate limit was checked
        if name:
            self.presence.rename(member, name)
        # Enter, and hold live messages, before reading: a message committed
        # meanwhile then arrives after the history, once, not lost between.
        rooms.enter(member, channel)
        rooms.hold(member, channel)
        try:
            found = messages.history(channel, since)
            rooms.replay(member, channel, found.messages, found.last_seq)
        except BaseException:
            # Never leave a member held, receiving nothing, in the room.
            rooms.leave(member, channel)
            raise
        if not rooms.is_connected(member):
            return None  # it closed while the history was read: no ghost member
        present = self.presence.enter(channel, member)
        return {
            "channel": channel,
            "last_seq": found.last_seq,
            "recovered": found.recovered,
            "name": self.presence.name_of(member),
            "count": present["count"],
            "members": present["members"],
        }

    def send(self, member, sender, payload):
        """`send_message {channel, message, client_id?}` to a joined
        channel: stored, then published to its members. Returns the stored
        message (the original one for a retry of its client_id)."""
        self.rates.check("send", sender)
        fields = rules.fields(payload)
        channel = self._joined(member, fields.get("channel"))
        stored = self.posting.post(
            channel,
            fields.get("message"),
            self.presence.name_of(member),
            fields.get("client_id"),
            sender=sender,
        )
        self.presence.sent(channel, member)
        return stored

    def typing(self, member, sender, payload):
        """`typing {channel}`: the channel's other members are told, at most
        once per CHAT_TYPING_INTERVAL per member (the first notice after the
        member's message passes at once)."""
        self.rates.check("typing", sender)
        channel = self._joined(member, rules.fields(payload).get("channel"))
        if self.presence.may_type(channel, member):
            self.presence.typing(channel, member)

    def leave(self, member, payload):
        """`leave {channel}`: stop receiving a channel."""
        channel = rules.channel_name(rules.fields(payload).get("channel"))
        self.rooms.leave(member, channel)
        self.presence.leave(channel, member)

    def _may_enter(self, member, channel):
        """Refuse a join that would put a connection in too many channels."""
        joined = self.rooms.channels_of(member)
        if channel not in joined and len(joined) >= self.max_channels:
            raise ChatError(
                "too_many_channels",
                f"a connection may be in at most {self.max_channels} channels:"
                " leave one first",
            )

    def _joined(self, member, value):
        """A valid channel name this member has joined, or `not_joined`."""
        channel = rules.channel_name(value)
        if not self.rooms.is_in(member, channel):
            raise ChatError("not_joined", f"join {channel!r} before sending to it")
        return channel
