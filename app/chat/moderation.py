"""Moderation: authors edit and delete their messages, moderators and
operators delete any; every change reaches each member that has the message,
after it, once (app.realtime.delivery), and history serves only what stands.
"""

import math
import time
from datetime import UTC, datetime, timedelta

from app.chat import rules, storage
from app.chat.errors import ChatError
from app.chat.models import timestamp


def forbidden(message):
    return ChatError("forbidden", message, status=403)


class Moderation:
    """Edits and deletes, published through `publish_change` (the rooms'
    change(), or a queue's outside the servers)."""

    def __init__(self, publish_change, config):
        self.publish_change = publish_change
        self.edit_window = timedelta(seconds=config["CHAT_EDIT_WINDOW"])
        self.max_length = config["CHAT_MAX_MESSAGE_LENGTH"]

    def edit(self, person, channel, seq, text):
        """The verified author edits message `seq` within CHAT_EDIT_WINDOW
        of posting it. Returns the change."""
        channel, seq = rules.channel_name(channel), rules.seq(seq)
        text = rules.message_text(text, self.max_length)
        if not person.verified:
            raise forbidden("guests cannot edit messages: sign in")
        window = self.edit_window

        def authorize(message):
            if message.user_id != person.user_id:
                raise forbidden("only its author can edit a message")
            created_at = message.created_at
            if created_at.tzinfo is None:  # SQLite hands back naive UTC
                created_at = created_at.replace(tzinfo=UTC)
            if datetime.now(UTC) - created_at > window:
                minutes = int(window.total_seconds() // 60)
                raise forbidden(
                    f"a message can be edited for {minutes} minutes after posting"
                )

        change = storage.change_message(channel, seq, authorize, text=text)
        self.publish_change(change)
        return change

    def delete(self, person, channel, seq, actor=None):
        """Delete message `seq`: its verified author, a moderator, or an
        operator (`person` None, with `actor` saying who). Every delete is
        recorded in the audit log. Returns the change."""
        channel, seq = rules.channel_name(channel), rules.seq(seq)
        if person is not None and not person.verified:
            raise forbidden("guests cannot delete messages: sign in")
        if person is not None:
            actor = f"user:{person.user_id}"

        def authorize(message):
            if person is None or person.moderator:
                return
            if message.user_id != person.user_id:
                raise forbidden("only its author or a moderator can delete a message")

        audit = {"actor": actor, "action": "delete_message"}
        change = storage.change_message(channel, seq, authorize, audit=audit)
        self.publish_change(change)
        return change


# Bans, kicks and slow mode.

MAX_BAN_SECONDS = 10 * 366 * 86400  # ten years; no `seconds` bans for good
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
REASON_MAX_LENGTH = 500
MAX_SLOW_MODE = 86400


def ban_seconds(value):
    """A ban's length: None (for good) or 1 to MAX_BAN_SECONDS seconds."""
    if value is None:
        return None
    return rules.whole_number(value, "seconds", 1, MAX_BAN_SECONDS)


def reason_text(value):
    """A ban's optional reason, shown to the person: at most 500 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > REASON_MAX_LENGTH:
        raise ChatError(
            "invalid_reason",
            f"reason must be a string of at most {REASON_MAX_LENGTH} characters",
        )
    return rules.message_text(value, REASON_MAX_LENGTH) if value.strip() else None


def slow_mode_seconds(value):
    """Slow mode: 0 (off) to MAX_SLOW_MODE seconds between two messages."""
    return rules.whole_number(value, "slow_mode", 0, MAX_SLOW_MODE)


def user_id(value):
    """A person's id at the host site, as a token's `sub` gives it."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ChatError("invalid_user", "a user id is 1 to 64 characters")
    return value


class Bans:
    """Who is banned, stored in the database (the source of truth, which
    survives restarts), and told to every process through `command`."""

    def __init__(self, command):
        self.command = command  # the rooms' command(): every process obeys

    def ban(self, actor, sub, seconds=None, reason=None):
        """Ban a person: their connections everywhere are told `banned` and
        closed, and they are refused until the ban ends. Returns the ban."""
        sub, seconds = user_id(sub), ban_seconds(seconds)
        reason = reason_text(reason)
        now = datetime.now(UTC)
        until = FOREVER if seconds is None else now + timedelta(seconds=seconds)
        storage.keep_ban(sub, until, reason, actor, now)
        ban = {"user_id": sub, "until": timestamp(until), "reason": reason}
        self.command(
            {"kind": "kick", "user_id": sub, "refusal": refusal(ban).as_dict()}
        )
        return ban

    def unban(self, actor, sub):
        """End a person's ban; False if they were not banned."""
        return storage.end_ban(user_id(sub), actor)

    def kick(self, actor, sub):
        """Disconnect every connection of a person now (they may reconnect)."""
        sub = user_id(sub)
        storage.audit(actor, "disconnect", user_id=sub)
        self.command(
            {
                "kind": "kick",
                "user_id": sub,
                "refusal": {
                    "code": "disconnected",
                    "message": "an operator disconnected you",
                },
            }
        )

    @staticmethod
    def check(person):
        """Refuse a banned person with `banned` (403)."""
        if person.verified:
            ban = storage.active_ban(person.user_id)
            if ban is not None:
                raise refusal(ban)

    @staticmethod
    def active():
        """`{user_id: ban}` of the bans in force."""
        return storage.active_bans()


def refusal(ban):
    """The `banned` refusal of a ban, saying why and until when: in words,
    and as `until` (null for good) and `reason`."""
    forever = ban["until"].startswith("9999")
    until = "for good" if forever else f"until {ban['until']}"
    reason = f": {ban['reason']}" if ban["reason"] else ""
    error = ChatError("banned", f"you are banned {until}{reason}", status=403)
    error.details = {
        "until": None if forever else ban["until"],
        "reason": ban["reason"],
    }
    return error


class SlowMode:
    """At most one message per `slow_mode` seconds per person in a channel,
    counted in Redis when there is one (so on every process), else here.
    Each process keeps the channels' settings, read from the database."""

    def __init__(self, command, link=None, prefix="chat"):
        self.command = command  # the rooms' command(): every process obeys
        self.link = link
        self.prefix = prefix  # of its Redis keys: one deployment's own
        self.channels = {}  # channel -> seconds, for channels in slow mode
        self.local = {}  # (channel, person) -> monotonic time it may send again

    def set(self, actor, channel, seconds):
        """Set a channel's slow mode, for every process."""
        channel, seconds = rules.channel_name(channel), slow_mode_seconds(seconds)
        storage.keep_slow_mode(channel, seconds, actor)
        self.command({"kind": "slow_mode", "channel": channel, "slow_mode": seconds})
        return {"channel": channel, "slow_mode": seconds}

    def learn(self, channel, seconds):
        """A channel's slow mode changed (told by a command, or read)."""
        if seconds:
            self.channels[channel] = seconds
        else:
            self.channels.pop(channel, None)

    def reload(self):
        """Read every channel's slow mode from the database."""
        self.channels = storage.slow_channels()

    def of(self, channel):
        return self.channels.get(channel, 0)

    def admit(self, channel, person_key, moderator, store):
        """Store a person's message (`store()`, its result returned) if slow
        mode lets it through: `slow_mode` with `retry_after` when it comes
        too soon. One refused while being stored (ChatError) is not counted.
        Moderators are never slowed."""
        seconds = self.channels.get(channel)
        if not seconds or moderator:
            return store()
        self._count(channel, person_key, seconds)
        try:
            return store()
        except ChatError:
            self._uncount(channel, person_key)
            raise

    def _count(self, channel, person_key, seconds):
        wait = None
        if self.link is not None and self.link.up:
            wait = self.link.run(
                "slow mode",
                lambda client: _mark(client, self._key(channel, person_key), seconds),
            )
        if wait is None:
            wait = self._mark_here(channel, person_key, seconds)
        if wait:
            raise ChatError(
                "slow_mode",
                f"slow mode: one message every {seconds} s here; wait {wait} s",
                status=429,
                retry_after=wait,
            )

    def _mark_here(self, channel, person_key, seconds):
        now = time.monotonic()
        key = (channel, person_key)
        if self.local.get(key, 0) > now:
            return max(1, math.ceil(self.local[key] - now))
        if len(self.local) > 100_000:
            self.local = {k: t for k, t in self.local.items() if t > now}
        self.local[key] = now + seconds
        return 0

    def _uncount(self, channel, person_key):
        """Forget a mark whose message was not stored after all."""
        self.local.pop((channel, person_key), None)
        if self.link is not None and self.link.up:
            key = self._key(channel, person_key)
            self.link.run("slow mode", lambda client: client.delete(key))

    def _key(self, channel, person_key):
        return f"{self.prefix}:slow:{channel}:{person_key}"


def _mark(client, key, seconds):
    """0 when the person may send (and mark it), else the seconds to wait."""
    if client.set(key, 1, nx=True, ex=seconds):
        return 0
    return max(1, math.ceil(client.pttl(key) / 1000))
