"""Tables of the chat: channels with their counters, and retained messages."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class Channel(db.Model):
    """A channel: its name and the seq of the newest message ever posted to it.

    ``last_seq`` is the counter that numbers messages. Bumping it locks the
    row, which serialises the senders of one channel and keeps seq contiguous.
    """

    __tablename__ = "channels"
    __table_args__ = (
        # Serves the channel list, most recently active first, page by page.
        Index("ix_channels_last_message_at_name", "last_message_at", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    last_seq: Mapped[int] = mapped_column(default=0)
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Messages the channel retains: kept with every write, never counted.
    message_count: Mapped[int] = mapped_column(default=0)
    # The counter that numbers edits and deletes, as last_seq numbers
    # messages: each process delivers them in this order, and reads from the
    # database the ones Redis did not bring.
    last_change: Mapped[int] = mapped_column(default=0, server_default="0")
    # Least seconds between two messages of one person here (0: off).
    slow_mode: Mapped[int] = mapped_column(default=0, server_default="0")


class Message(db.Model):
    """One retained message; a channel keeps only its newest few."""

    __tablename__ = "messages"
    __table_args__ = (
        # Serves "newest N of a channel", "seq > since" and the prune, and
        # guarantees that no seq is used twice within a channel.
        Index("ix_messages_channel_seq", "channel", "seq", unique=True),
        {"sqlite_autoincrement": True},
    )

    # 64-bit ids on PostgreSQL; SQLite's 64-bit rowid needs the INTEGER type.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(
        String(64), ForeignKey("channels.name", ondelete="CASCADE")
    )
    seq: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )
    # The sender's own name for the message, which it sends again on a retry.
    client_id: Mapped[str | None] = mapped_column(String(64))
    # The author's id at the host site when a token vouched for them (the
    # token's `sub`); null for a guest.
    user_id: Mapped[str | None] = mapped_column(String(64))
    # Set by an edit or a delete (a deleted message keeps its row, and its
    # seq, as a tombstone without text); `change` is the channel's
    # last_change of the latest one.
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    change: Mapped[int | None]

    def event(self):
        """This message as members receive it."""
        return message_event(
            self.id,
            self.seq,
            self.channel,
            self.body,
            self.author,
            self.client_id,
            self.created_at,
            self.user_id,
            self.edited_at,
            self.deleted_at is not None,
        )


class Receipt(db.Model):
    """What a client's send stored, found again when the client retries it.

    A retry of `client_id` in `channel` stores nothing new and is answered
    with the original `message_id` and `seq`. Receipts outlive the pruning of
    their messages, and expire after CHAT_RETRY_HOURS.
    """

    __tablename__ = "receipts"
    __table_args__ = (
        Index("ix_receipts_channel_client_id", "channel", "client_id", unique=True),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(
        String(64), ForeignKey("channels.name", ondelete="CASCADE")
    )
    client_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite")
    )
    seq: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def message_event(
    message_id,
    seq,
    channel,
    body,
    author,
    client_id,
    created_at,
    user_id=None,
    edited_at=None,
    deleted=False,
):
    """A message as the `message` event and the HTTP API carry it: with
    `edited_at` once edited; a deleted one as a tombstone, `deleted: true`
    with an empty text and no author."""
    event = {
        "id": message_id,
        "seq": seq,
        "channel": channel,
        "message": "" if deleted else body,
        "author": None if deleted else author,
        "created_at": timestamp(created_at),
        "client_id": client_id,
        "user_id": None if deleted else user_id,
    }
    if deleted:
        event["deleted"] = True
    elif edited_at is not None:
        event["edited_at"] = timestamp(edited_at)
    return event


def change_of(message):
    """The change members are sent for a Message that was edited or deleted,
    as it stands now: what travels between processes (see
    app.realtime.delivery.change_event for what members get)."""
    if message.deleted_at is not None:
        kind, text, edited_at = "deleted", None, None
    else:
        kind, text, edited_at = "edited", message.body, timestamp(message.edited_at)
    return {
        "channel": message.channel,
        "seq": message.seq,
        "change": message.change,
        "kind": kind,
        "message": text,
        "edited_at": edited_at,
    }


def timestamp(moment):
    """ISO 8601 in UTC with milliseconds, as browsers write it."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive UTC datetimes
        moment = moment.replace(tzinfo=UTC)
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class Ban(db.Model):
    """A person (a token's `sub`) kept out until `until`."""

    __tablename__ = "bans"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(db.Model):
    """What a moderator or an operator did, by whom and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None]
    user_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)

    def entry(self):
        """This entry as the API reads it back."""
        return {
            "id": self.id,
            "at": timestamp(self.at),
            "actor": self.actor,
            "action": self.action,
            "channel": self.channel,
            "seq": self.seq,
            "user_id": self.user_id,
            "detail": self.detail,
        }
