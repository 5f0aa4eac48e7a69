"""The chat's service layer: store, number, prune and broadcast messages.

Functions take plain values (as they arrived from a socket or a request),
return plain values, and raise ChatError. Each write is one transaction, and
the broadcast happens only after it commits.
"""

import hashlib
from collections import Counter
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from app import rules
from app.broadcast import broadcaster
from app.errors import ChatError
from app.extensions import db
from app.models import Channel, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class History:
    """What a joiner is sent: retained messages after `since`, oldest first."""

    channel: str
    messages: list
    last_seq: int
    recovered: bool


def post_message(channel, message, author=None):
    """Store a message, prune its channel to the newest N, then broadcast it.

    Returns the message as every member receives it, once it is committed.
    Messages posted at the same moment share a transaction (app.batches).
    """
    channel = rules.channel_name(channel)
    body = rules.message_text(message, current_app.config["CHAT_MAX_MESSAGE_LENGTH"])
    author = rules.display_name(author)
    # PostgreSQL writes channels side by side, so one slow channel must not
    # hold up the others; SQLite writes one transaction at a time, blocking
    # the process meanwhile, so there every channel shares each batch.
    batch = channel if db.engine.dialect.name == "postgresql" else None
    return current_app.extensions["chat_writer"].submit(batch, (channel, body, author))


def write_messages(pending):
    """Store `(channel, body, author)`s in one transaction, then broadcast them.

    The broadcast happens after the commit, while the channels' turns are
    still held (see _turn). Returns the stored messages, in the given order.
    """
    limit = current_app.config["CHAT_HISTORY_LIMIT"]
    with _database_work(), db.engine.connect() as connection:
        with _turn(connection, {channel for channel, _, _ in pending}):
            with connection.begin():
                stored = _store(connection, pending, limit)
            members = broadcaster()
            for message in stored:
                members.message(message)
    return stored


@contextmanager
def _turn(connection, channels):
    """Hold the channels' turns from storing messages until they are published.

    On PostgreSQL a session advisory lock per channel makes "commit, then
    publish" one step among the senders of every process, so messages reach
    Redis, and so every member, in seq order. Locks are taken in one order
    everywhere, so batches never deadlock. SQLite serves one process whose
    writes never yield to another greenlet, so the order holds there as is.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    keys = sorted({_lock_key(channel) for channel in channels})
    for key in keys:
        connection.execute(select(func.pg_advisory_lock(key)))
    connection.commit()
    try:
        yield
    finally:
        try:
            for key in keys:
                connection.execute(select(func.pg_advisory_unlock(key)))
            connection.commit()
        except DBAPIError:
            connection.invalidate()  # ending the session releases its locks
            raise


def _lock_key(channel):
    """A signed 64-bit advisory lock key for a channel name."""
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The hot path's statements, written once in the SQL that SQLite and
# PostgreSQL share: compiling them from expressions on every call cost more
# than running them.
_NEXT_SEQS = text(
    "INSERT INTO channels (name, last_seq, last_message_at)"
    " VALUES (:channel, :count, :now)"
    " ON CONFLICT (name) DO UPDATE"
    " SET last_seq = channels.last_seq + :count, last_message_at = :now"
    " RETURNING last_seq"
).bindparams(bindparam("now", type_=Channel.last_message_at.type))
_INSERT = insert(Message).returning(Message.id, Message.channel, Message.seq)
_PRUNE = text("DELETE FROM messages WHERE channel = :channel AND seq <= :oldest")


def _store(connection, pending, limit):
    """Number, insert and prune in the open transaction.

    Per channel of the batch: one upsert that creates the channel or takes as
    many seqs as it has messages (its row lock makes concurrent writers of
    the channel take turns), and one prune; then one insert of every message.
    None of them scans a channel or the table, so the cost does not grow with
    the number of stored rows.
    """
    now = datetime.now(UTC)
    counts = Counter(channel for channel, _, _ in pending)
    next_seq, newest = {}, {}
    for channel, count in counts.items():
        newest[channel] = connection.execute(
            _NEXT_SEQS, {"channel": channel, "count": count, "now": now}
        ).scalar_one()
        next_seq[channel] = newest[channel] - count + 1
    rows = []
    for channel, body, author in pending:
        rows.append(
            {
                "channel": channel,
                "seq": next_seq[channel],
                "body": body,
                "author": author,
                "created_at": now,
            }
        )
        next_seq[channel] += 1
    ids = {(row.channel, row.seq): row.id for row in connection.execute(_INSERT, rows)}
    for channel, last in newest.items():
        connection.execute(_PRUNE, {"channel": channel, "oldest": last - limit})
    return [
        _as_event(
            ids[row["channel"], row["seq"]],
            row["seq"],
            row["channel"],
            row["body"],
            row["author"],
            now,
        )
        for row in rows
    ]


def history(channel, since=None):
    """The retained messages of a channel with seq > since, oldest first.

    ``recovered`` is false when messages after `since` were already pruned
    (or `since` is ahead of the channel): the client should reload.
    """
    channel = rules.channel_name(channel)
    since = rules.since_seq(since)
    with _database_work():
        last_seq = db.session.scalar(
            select(Channel.last_seq).where(Channel.name == channel)
        )
        rows = db.session.execute(
            select(Message)
            .where(Message.channel == channel, Message.seq > (since or 0))
            .order_by(Message.seq)
        ).scalars()
        messages = [_message_event(row) for row in rows]
        db.session.rollback()
    # The messages may be newer than the counter read just before them.
    last_seq = max([last_seq or 0] + [message["seq"] for message in messages[-1:]])
    recovered = since is None or (
        since <= last_seq and (not messages or messages[0]["seq"] == since + 1)
    )
    return History(channel, messages, last_seq, recovered)


def known_history(channel, since=None):
    """Like history(), but a channel nobody ever posted to is ``unknown_channel``."""
    found = history(channel, since)
    if found.last_seq == 0:
        raise ChatError(
            "unknown_channel", f"no channel named {found.channel!r}", status=404
        )
    return found


def active_channels():
    """Channels with messages, most recently active first."""
    counts = (
        select(Message.channel, func.count().label("message_count"))
        .group_by(Message.channel)
        .subquery()
    )
    with _database_work():
        rows = db.session.execute(
            select(Channel, counts.c.message_count)
            .join(counts, counts.c.channel == Channel.name)
            .order_by(Channel.last_message_at.desc(), Channel.name)
        ).all()
        db.session.rollback()
    return [
        {
            "name": channel.name,
            "message_count": count,
            "last_seq": channel.last_seq,
            "last_message_at": _timestamp(channel.last_message_at),
        }
        for channel, count in rows
    ]


def database_answers():
    """True when the database answers a trivial query."""
    try:
        with _database_work():
            db.session.execute(text("SELECT 1"))
            db.session.rollback()
    except ChatError:
        return False
    return True


@contextmanager
def _database_work():
    """Roll back on any error, and report a database failure as `unavailable`."""
    try:
        yield
    except DBAPIError as error:
        db.session.rollback()
        log.warning("database unavailable: %s", error.orig or error)
        raise ChatError(
            "unavailable", "the chat cannot reach its database", status=503
        ) from None
    except BaseException:
        db.session.rollback()
        raise


def _message_event(row):
    return _as_event(row.id, row.seq, row.channel, row.body, row.author, row.created_at)


def _as_event(message_id, seq, channel, body, author, created_at):
    """A message as the `message` event and the HTTP API carry it."""
    return {
        "id": message_id,
        "seq": seq,
        "channel": channel,
        "message": body,
        "author": author,
        "created_at": _timestamp(created_at),
    }


def _timestamp(moment):
    """ISO 8601 in UTC with milliseconds, as browsers write it."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive UTC datetimes
        moment = moment.replace(tzinfo=UTC)
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
