"""Where messages are kept: one unit of work for every read and write, and
the write path that numbers, stores and prunes a batch in one transaction.

Every service reaches the database through unit_of_work(), which commits or
rolls back in one place and reports a database that does not answer as
`unavailable`.
"""

import hashlib
import logging
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import bindparam, delete, insert, select, text, tuple_
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.chat.errors import ChatError
from app.chat.models import Channel, Message, Receipt, message_event
from app.extensions import db
from app.realtime.broadcaster import broadcaster

log = logging.getLogger(__name__)


# A database that does not answer, or a pool with no connection free in time.
# Anything else (a constraint, a value the column refuses) is a bug: it keeps
# its traceback rather than telling the sender to try again for ever.
_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)


@contextmanager
def _reaching_the_database():
    """Report a database that cannot be reached as `unavailable` (503)."""
    try:
        yield
    except _UNREACHABLE as error:
        log.warning("database unavailable: %s", getattr(error, "orig", None) or error)
        raise ChatError(
            "unavailable", "the chat cannot reach its database", status=503
        ) from None


@contextmanager
def unit_of_work():
    """One piece of database work on the session: committed when the block
    ends, rolled back when it raises. A database that cannot be reached is
    `unavailable` (503).
    """
    with _reaching_the_database():
        try:
            yield db.session
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise


class Draft(NamedTuple):
    """A message as a sender submitted it, checked but not yet stored."""

    channel: str
    body: str
    author: str | None
    client_id: str | None


def write_messages(drafts):
    """Store drafts in one transaction, then broadcast the new messages.

    The broadcast happens after the commit, while the channels' turns are
    still held (see _turn). Returns each draft's message, in the given order:
    the one stored now, or the one a previous send of its client_id stored.
    """
    limit = current_app.config["CHAT_HISTORY_LIMIT"]
    with _reaching_the_database():
        connection = db.engine.connect()
    with connection, _turn(connection, {draft.channel for draft in drafts}):
        with _reaching_the_database(), connection.begin():
            answers, stored = _store(connection, drafts, limit)
        # Committed: no database error after this point concerns the senders.
        members = broadcaster()
        for message in stored:
            members.message(message)
    return answers


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
    try:
        with _reaching_the_database():
            for key in keys:
                connection.execute(_LOCK, {"key": key})
            connection.commit()
    except BaseException:
        connection.invalidate()  # ending the session releases what it took
        raise
    try:
        yield
    finally:
        _release(connection, keys)


def _release(connection, keys):
    """Give back the channels' turns; a connection that cannot is closed, as
    ending its session releases its locks."""
    try:
        for key in keys:
            connection.execute(_UNLOCK, {"key": key})
        connection.commit()
    except BaseException as error:
        connection.invalidate()
        if not isinstance(error, DBAPIError):
            raise
        log.warning("closed a connection that kept its turns: %s", error.orig)


def _lock_key(channel):
    """A signed 64-bit advisory lock key for a channel name."""
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The hot path's statements, written once in the SQL that SQLite and
# PostgreSQL share: compiling them from expressions on every call cost more
# than running them.
# The upsert also keeps the count of retained messages: the prune that
# follows keeps exactly the newest `limit`, so the count is the old one plus
# the new messages, capped at the limit.
_NEXT_SEQS = text(
    "INSERT INTO channels (name, last_seq, last_message_at, message_count)"
    " VALUES (:channel, :count, :now, :kept)"
    " ON CONFLICT (name) DO UPDATE"
    " SET last_seq = channels.last_seq + :count, last_message_at = :now,"
    " message_count = CASE WHEN channels.message_count + :count > :limit"
    " THEN :limit ELSE channels.message_count + :count END"
    " RETURNING last_seq"
).bindparams(bindparam("now", type_=Channel.last_message_at.type))
_LOCK = text("SELECT pg_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_INSERT = insert(Message).returning(Message.id, Message.channel, Message.seq)
_PRUNE = text("DELETE FROM messages WHERE channel = :channel AND seq <= :oldest")
_RECEIPTS = (
    select(
        Receipt.channel,
        Receipt.client_id,
        Receipt.message_id,
        Receipt.seq,
        Receipt.created_at,
        Message.body,
        Message.author,
    )
    .outerjoin(Message, Message.id == Receipt.message_id)
    .where(
        tuple_(Receipt.channel, Receipt.client_id).in_(
            bindparam("keys", expanding=True)
        )
    )
)
_KEEP_RECEIPTS = insert(Receipt)


def _store(connection, drafts, limit):
    """Number, insert and prune in the open transaction.

    Per channel of the batch: one upsert that creates the channel or takes as
    many seqs as it has new messages (its row lock makes concurrent writers
    of the channel take turns), and one prune; then one insert of every new
    message. None of them scans a channel or the table, so the cost does not
    grow with the number of stored rows. A draft whose client_id was already
    stored, before or earlier in this batch, is answered, not stored again.

    Returns each draft's answer, in order, and the newly stored messages.
    """
    answers = _retried(connection, drafts)
    first_of = {}  # a draft's client_id key -> the index of its first draft
    for index, draft in enumerate(drafts):
        if answers[index] is None:
            first_of.setdefault(_retry_key(draft, index), index)
    new = sorted(first_of.values())
    if not new:
        return answers, []
    now = datetime.now(UTC)
    counts = Counter(drafts[i].channel for i in new)
    newest = _take_seqs(connection, counts, now, limit)
    seq = {channel: last - count for channel, (last, count) in newest.items()}
    stored = []
    for index in new:
        draft = drafts[index]
        seq[draft.channel] += 1
        stored.append(message_event(None, seq[draft.channel], *draft, created_at=now))
    rows = connection.execute(_INSERT, [_row(message, now) for message in stored])
    ids = {(row.channel, row.seq): row.id for row in rows}
    for message in stored:
        message["id"] = ids[message["channel"], message["seq"]]
    _keep_receipts(connection, stored, now)
    for channel, (last, _) in newest.items():
        connection.execute(_PRUNE, {"channel": channel, "oldest": last - limit})
    by_index = dict(zip(new, stored, strict=True))
    for index, draft in enumerate(drafts):
        if answers[index] is None:
            answers[index] = by_index[first_of[_retry_key(draft, index)]]
    return answers, stored


def _retry_key(draft, index):
    """Drafts with one key are one message: a client_id's sends in a channel."""
    return (draft.channel, draft.client_id) if draft.client_id else index


def _take_seqs(connection, counts, now, limit):
    """Take `count` seqs of each channel: `{channel: (newest seq, count)}`."""
    return {
        channel: (
            connection.execute(
                _NEXT_SEQS,
                {
                    "channel": channel,
                    "count": count,
                    "now": now,
                    "limit": limit,
                    "kept": min(count, limit),
                },
            ).scalar_one(),
            count,
        )
        for channel, count in counts.items()
    }


def _row(message, now):
    """The `messages` row of a message event."""
    return {
        "channel": message["channel"],
        "seq": message["seq"],
        "body": message["message"],
        "author": message["author"],
        "client_id": message["client_id"],
        "created_at": now,
    }


def _retried(connection, drafts):
    """For each draft, the message its client_id already stored, or None.

    Only batches holding a client_id pay for this query.
    """
    keys = {(draft.channel, draft.client_id) for draft in drafts if draft.client_id}
    if not keys:
        return [None] * len(drafts)
    rows = connection.execute(_RECEIPTS, {"keys": list(keys)})
    known = {(row.channel, row.client_id): row for row in rows}
    answers = []
    for draft in drafts:
        row = known.get((draft.channel, draft.client_id)) if draft.client_id else None
        if row is None:
            answers.append(None)
            continue
        # A pruned original is answered with the text and author as retried.
        pruned = row.body is None
        answers.append(
            message_event(
                row.message_id,
                row.seq,
                draft.channel,
                draft.body if pruned else row.body,
                draft.author if pruned else row.author,
                draft.client_id,
                row.created_at,
            )
        )
    return answers


def _keep_receipts(connection, stored, now):
    """Remember what each client_id stored, for its retries."""
    receipts = [
        {
            "channel": message["channel"],
            "client_id": message["client_id"],
            "message_id": message["id"],
            "seq": message["seq"],
            "created_at": now,
        }
        for message in stored
        if message["client_id"]
    ]
    if receipts:
        connection.execute(_KEEP_RECEIPTS, receipts)


def forget_receipts(batch=1000):
    """Drop receipts older than CHAT_RETRY_HOURS; returns how many.

    They go `batch` at a time, each batch its own transaction, yielding to
    other greenlets in between: an hour of receipts in one DELETE would hold
    SQLite's only writer, and this process, for as long as it took.
    """
    hours = current_app.config["CHAT_RETRY_HOURS"]
    cutoff = datetime.now(UTC) - timedelta(hours=hours)
    oldest = select(Receipt.id).where(Receipt.created_at < cutoff).limit(batch)
    forgotten = 0
    while True:
        with unit_of_work() as session:
            result = session.execute(delete(Receipt).where(Receipt.id.in_(oldest)))
        forgotten += result.rowcount
        if result.rowcount < batch:
            return forgotten
        time.sleep(0)  # gevent patches it into a yield to other greenlets
