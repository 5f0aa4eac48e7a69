"""What a connection does in the chat's channels: it connects as a guest or
as a verified person, joins channels (getting what it missed), sends, types,
refreshes its token and leaves.

The Socket.IO handlers hand each event's payload here as it arrived; this
service checks it, applies the chat's rules and limits, and works the rooms
through `rooms` (app.realtime.rooms.Rooms), which it is handed.
"""

import heapq
import time
from functools import partial

from app.chat import messages, rules
from app.chat.errors import ChatError
from app.chat.identity import GUEST
from app.chat.moderation import refusal as moderation_refusal


class Membership:
    """The chat as a connection (a `member`, named by its sid) sees it."""

    def __init__(
        self, rooms, posting, moderation, presence, rates, tokens, config, bans, slow
    ):
        self.rooms = rooms
        self.posting = posting  # app.chat.messages.Messages
        self.moderation = moderation  # app.chat.moderation.Moderation
        self.bans = bans  # app.chat.moderation.Bans
        self.slow = slow  # app.chat.moderation.SlowMode
        self.presence = presence
        self.rates = rates
        self.tokens = tokens  # app.chat.identity.Tokens
        self.max_channels = config["CHAT_MAX_CHANNELS_PER_CONNECTION"]
        self.grace = config["CHAT_TOKEN_GRACE"]
        self.people = {}  # member -> Person, for the connections of this process
        self.by_user = {}  # user_id -> its members here
        self.expires = {}  # member -> its token's exp, for verified connections
        # Heap of (exp, member) of `expires`, with entries of connections
        # gone or refreshed since: skipped when due, and dropped once they
        # outnumber the live ones (_prune_expiring).
        self.expiring = []

    def connect(self, member, auth):
        """A page connects with `auth: {token}` as the person its token
        vouches for, or as a guest with `auth: {name, person}`: a display
        name, and the key its browser keeps for the person using it (so
        that their tabs count once in presence; a verified person's tabs
        count once anywhere). A guest without a name gets a readable one.
        An invalid token, name or person is refused."""
        auth = auth if isinstance(auth, dict) else {}
        person = self.tokens.person(auth.get("token"))
        self.bans.check(person)
        if person.verified:
            name, key = person.name, f"user:{person.user_id}"
        else:
            name = rules.display_name(auth.get("name")) or rules.guest_name()
            key = rules.person_key(auth.get("person"))
        self._become(member, person)
        self.presence.connect(member, name, key)

    def disconnect(self, member):
        """The connection ended: it leaves every channel it was in."""
        self._forget(member)
        self.rates.forget(member)
        self.presence.disconnect(member)

    def person_of(self, member):
        """Who is behind a connection of this process."""
        return self.people.get(member, GUEST)

    def join(self, member, sender, payload):
        """`join {channel, since?, changes_since?, name?}`: enter the
        channel's room, get its retained messages after `since` as `message`
        events, oldest first (and, with `changes_since`, the `last_change`
        of its previous join ack, the edits and deletes of earlier messages
        made since), and announce the new presence. A `name` replaces the
        one given at connect.

        Returns the joined channel `{channel, last_seq, recovered, name,
        count, members}`, or None when the connection closed meanwhile.
        """
        self.rates.check("join", sender)
        fields = rules.fields(payload)
        channel = rules.channel_name(fields.get("channel"))
        since = rules.since_seq(fields.get("since"))
        changes_since = rules.since_change(fields.get("changes_since"))
        name = self._new_name(member, fields.get("name"))
        self.person_of(member).check_access(channel)
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
            rooms.replay(
                member, channel, found.messages, found.last_seq, found.last_change
            )
        except BaseException:
            # Never leave a member held, receiving nothing, in the room.
            rooms.leave(member, channel)
            raise
        if not rooms.is_connected(member):
            return None  # it closed while the history was read: no ghost member
        if since and changes_since is not None and found.last_change > changes_since:
            # Edits and deletes of what it had before `since`, made while it
            # was away; what came after `since` was sent as it stands now.
            missed = messages.changes_after(channel, changes_since)
            rooms.catch_up(member, [c for c in missed if c["seq"] <= since])
        present = self.presence.enter(channel, member)
        return {
            "channel": channel,
            "last_seq": found.last_seq,
            "recovered": found.recovered,
            "last_change": found.last_change,
            "name": self.presence.name_of(member),
            "user_id": self.person_of(member).user_id,
            "slow_mode": self.slow.of(channel),
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
        person = self.people.get(member, GUEST)
        if rules.is_private(channel):
            person.check_access(channel)
        post = partial(
            self.posting.post,
            channel,
            fields.get("message"),
            self.presence.name_of(member),
            fields.get("client_id"),
            sender=sender,
            user_id=person.user_id,
        )
        slowed = self.presence.person_of(member)
        stored = self.slow.admit(channel, slowed, person.moderator, post)
        self.presence.sent(channel, member)
        return stored

    def edit(self, member, sender, payload):
        """`edit_message {channel, seq, message}`: its verified author, in
        a joined channel, within CHAT_EDIT_WINDOW. Counted as a send."""
        self.rates.check("send", sender)
        fields = rules.fields(payload)
        channel = self._joined(member, fields.get("channel"))
        return self.moderation.edit(
            self.person_of(member), channel, fields.get("seq"), fields.get("message")
        )

    def delete(self, member, sender, payload):
        """`delete_message {channel, seq}`: its verified author or a
        moderator, in a joined channel. Counted as a send."""
        self.rates.check("send", sender)
        fields = rules.fields(payload)
        channel = self._joined(member, fields.get("channel"))
        return self.moderation.delete(
            self.person_of(member), channel, fields.get("seq")
        )

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

    def refresh(self, member, payload):
        """`refresh {token}`: a verified connection carries on past its
        token's exp with a new token for the same person. Channels the new
        token no longer grants are left. Returns `{exp, left}`.

        A token that is not valid, or names someone else, is refused and
        closes the connection (it reconnects with a token of its own).
        """
        current = self.people.get(member)
        if current is None:
            return None  # it closed meanwhile
        try:
            person = self.tokens.verify(rules.fields(payload).get("token"))
        except ChatError as error:
            error.closes = error.code == "invalid_token"
            raise
        if person.user_id != current.user_id:
            error = ChatError(
                "invalid_token",
                "refresh needs a token for the person who connected",
                status=401,
            )
            error.closes = True
            raise error
        self._become(member, person)
        if person.name != current.name:
            self.presence.rename(member, person.name)
        left = sorted(
            channel
            for channel in self.rooms.channels_of(member)
            if not person.may_enter(channel)
        )
        for channel in left:
            self.rooms.leave(member, channel)
            self.presence.leave(channel, member)
        return {"exp": person.expires, "left": left}

    def expire(self, now=None):
        """Tell every connection whose token expired more than
        CHAT_TOKEN_GRACE seconds ago, unrefreshed, `token_expired`, and
        disconnect it. Run every second or so; returns those disconnected."""
        now = time.time() if now is None else now
        expired = []
        while self.expiring and self.expiring[0][0] + self.grace <= now:
            exp, member = heapq.heappop(self.expiring)
            if self.expires.get(member) == exp:  # not refreshed (nor gone) since
                expired.append(member)
        for member in expired:
            self._forget(member)  # a guest, if anything, until it is gone
            self.rooms.tell(
                member,
                "chat_error",
                {
                    "event": "refresh",
                    "code": "token_expired",
                    "message": "the token expired and was not refreshed",
                },
            )
            self.rooms.disconnect(member)
        return expired

    def obey(self, command):
        """Do what every process was told to (app.chat.moderation): close a
        person's connections here (`kick`), or learn a channel's slow mode."""
        if command.get("kind") == "kick":
            self._kick(command.get("user_id"), command.get("refusal") or {})
        elif command.get("kind") == "slow_mode":
            self.slow.learn(command.get("channel"), command.get("slow_mode"))

    def sweep(self):
        """Enforce what the database says, whatever Redis carried: close the
        connections here of people banned, and read slow mode. Run every
        CHAT_REPAIR_INTERVAL (a second) or so."""
        for user_id, ban in self.bans.active().items():
            if user_id in self.by_user:
                self._kick(user_id, moderation_refusal(ban).as_dict())
        self.slow.reload()

    def _kick(self, user_id, refusal):
        """Tell every connection here of a person why (`chat_error` with the
        refusal), and close it."""
        for member in list(self.by_user.get(user_id, ())):
            self.rooms.tell(member, "chat_error", {"event": "connect", **refusal})
            self.rooms.disconnect(member)

    def _become(self, member, person):
        """Remember who is behind a connection, and when their token ends."""
        self.people[member] = person
        if person.verified:
            self.by_user.setdefault(person.user_id, set()).add(member)
        if person.expires is not None:
            self.expires[member] = person.expires
            heapq.heappush(self.expiring, (person.expires, member))
            self._prune_expiring()

    def _forget(self, member):
        """Forget who is behind a connection: it ended, or its token did."""
        person = self.people.pop(member, None)
        if person is not None and person.verified:
            members = self.by_user.get(person.user_id, set())
            members.discard(member)
            if not members:
                self.by_user.pop(person.user_id, None)
        if self.expires.pop(member, None) is not None:
            self._prune_expiring()

    def _prune_expiring(self):
        """Drop the heap's entries of connections gone or refreshed since,
        once they outnumber the live ones: each would otherwise stay until
        its exp (an hour after a short visit, for an hour's token)."""
        if len(self.expiring) > 2 * len(self.expires):
            self.expiring = [(exp, member) for member, exp in self.expires.items()]
            heapq.heapify(self.expiring)

    def _new_name(self, member, value):
        """The name a join asks for, if any. A verified person's name is
        their token's: asking for another is `forbidden`."""
        name = rules.display_name(value)
        person = self.person_of(member)
        if name is None or not person.verified:
            return name
        if name != person.name:
            raise ChatError(
                "forbidden",
                "a verified person's name is the one their token gives",
                status=403,
            )
        return None

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
