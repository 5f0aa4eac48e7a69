"""The chat's service layer: store, number, prune and broadcast messages.

Functions take plain values (as they arrived from a socket or a request),
return plain values, and raise ChatError. Each write is one transaction, and
the broadcast happens only after it commits.
"""

import base64
import hashlib
import json
import logging
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import bindparam, delete, func, insert, select, text, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import rates, rules
from app.broadcast import broadcaster
from app.errors import ChatError
from app.extensions import db
from app.models import Channel, Message, Receipt

log = logging.getLogger(__name__)


class Draft(NamedTuple):
    """A message as a sender submitted it, checked but not yet stored."""

    channel: str
    body: str
    author: str | None
    client_id: str | None


@dataclass(frozen=True)
class History:
    """What a joiner is sent: retained messages after `since`, oldest first."""

    channel: str
    messages: list
    last_seq: int
    recovered: bool


def post_message(channel, message, author=None, client_id=None, sender=None):
    """Store a message, prune its channel to the newest N, then broadcast it.

    Returns the message as every member receives it, once it is committed.
    A retry of a `client_id` already stored in the channel stores nothing and
    returns the original message (its text as retried, if it was pruned).
    A message that opens a new channel counts against the `sender`'s
    new-channel limit. Messages posted at the same moment share a
    transaction (app.batches).
    """
    draft = Draft(
        rules.channel_name(channel),
        rules.message_text(message, current_app.config["CHAT_MAX_MESSAGE_LENGTH"]),
        rules.display_name(author),
        rules.client_id(client_id),
    )
    if sender is not None:
        _count_if_new(draft.channel, sender)
    # PostgreSQL writes channels side by side, so one slow channel must not
    # hold up the others; SQLite writes one transaction at a time, blocking
    # the process meanwhile, so there every channel shares each batch.
    batch = draft.channel if db.engine.dialect.name == "postgresql" else None
    return current_app.extensions["chat_writer"].submit(batch, draft)


def _count_if_new(channel, sender):
    """Count a new channel against the sender's limit before it is opened.

    Channels known to exist are remembered, so a message to one costs no
    query; only the first message to a channel this process has not seen
    looks it up.
    """
    known = current_app.extensions["chat_known_channels"]
    if channel in known:
        return
    with _database_work():
        exists = db.session.scalar(select(Channel.id).where(Channel.name == channel))
        db.session.rollback()
    if exists is None:
        rates.check("new_channel", sender)
    else:
        known.add(channel)


class KnownChannels:
    """The names of channels known to exist, up to `size` of them."""

    def __init__(self, size=100_000):
        self.size = size
        self.names = set()

    def __contains__(self, name):
        return name in self.names

    def add(self, name):
        if len(self.names) >= self.size:
            self.names.clear()  # forgetting costs one lookup per channel
        self.names.add(name)


def write_messages(drafts):
    """Store drafts in one transaction, then broadcast the new messages.

    The broadcast happens after the commit, while the channels' turns are
    still held (see _turn). Returns each draft's message, in the given order:
    the one stored now, or the one a previous send of its client_id stored.
    """
    limit = current_app.config["CHAT_HISTORY_LIMIT"]
    with _database_work(), db.engine.connect() as connection:
        with _turn(connection, {draft.channel for draft in drafts}):
            with connection.begin():
                answers, stored = _store(connection, drafts, limit)
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
_INSERT = insert(Message).returning(Message.id, Message.channel, Message.seq)
_PRUNE = text("DELETE FROM messages WHERE channel = :channel AND seq <= :oldest")


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
        stored.append(_as_event(None, seq[draft.channel], *draft, created_at=now))
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
    rows = connection.execute(
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
        .where(tuple_(Receipt.channel, Receipt.client_id).in_(keys))
    )
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
            _as_event(
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
        connection.execute(insert(Receipt), receipts)


def forget_receipts():
    """Drop receipts older than CHAT_RETRY_HOURS; returns how many."""
    hours = current_app.config["CHAT_RETRY_HOURS"]
    cutoff = datetime.now(UTC) - timedelta(hours=hours)
    with _database_work():
        result = db.session.execute(delete(Receipt).where(Receipt.created_at < cutoff))
        db.session.commit()
    return result.rowcount


def history(channel, since=None, limit=None):
    """The retained messages of a channel with seq > since, oldest first
    (the oldest `limit` of them, if given).

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
            .limit(limit)
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


def newest_seqs(channels):
    """`{channel: last_seq}` of the given channels that exist, in one query."""
    with _database_work():
        rows = db.session.execute(
            select(Channel.name, Channel.last_seq).where(Channel.name.in_(channels))
        ).all()
        db.session.rollback()
    return dict(rows)


@dataclass(frozen=True)
class ChannelPage:
    """One page of the channel list, and where the next one starts."""

    channels: list
    next_before: str | None


def active_channels(limit=None, before=None):
    """Channels with messages, most recently active first, a page at a time.

    `limit` channels at most (CHANNELS_PER_PAGE without one); `before` is
    the `next_before` of the previous page. One index range, whatever the
    number of channels: the counts are kept on each channel's row.
    """
    limit = rules.page_size(limit)
    query = (
        select(Channel)
        .where(Channel.message_count > 0)
        .order_by(Channel.last_message_at.desc(), Channel.name.desc())
        .limit(limit + 1)
    )
    if before is not None:
        at, name = _page_start(before)
        query = query.where(tuple_(Channel.last_message_at, Channel.name) < (at, name))
    with _database_work():
        rows = db.session.scalars(query).all()
        db.session.rollback()
    more, rows = len(rows) > limit, rows[:limit]
    return ChannelPage(
        [
            {
                "name": channel.name,
                "message_count": channel.message_count,
                "last_seq": channel.last_seq,
                "last_message_at": _timestamp(channel.last_message_at),
            }
            for channel in rows
        ],
        _page_mark(rows[-1]) if more else None,
    )


def _page_mark(channel):
    """An opaque `before` that starts the next page after `channel`."""
    moment = channel.last_message_at
    if moment.tzinfo is not None:  # PostgreSQL; SQLite hands back naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    moment = moment.isoformat()
    raw = json.dumps([moment, channel.name]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_start(mark):
    """`(last_message_at, name)` of a `before`, or `invalid_before`."""
    try:
        raw = base64.urlsafe_b64decode(mark + "=" * (-len(mark) % 4))
        moment, name = json.loads(raw)
        at = datetime.fromisoformat(moment)
    except (ValueError, TypeError):
        raise ChatError("invalid_before", "before must be a next_before") from None
    if not isinstance(name, str):
        raise ChatError("invalid_before", "before must be a next_before")
    if db.engine.dialect.name == "postgresql":
        at = at.replace(tzinfo=UTC)
    return at, name


def health():
    """How the chat's services answer: `{status, database, redis}`.

    `status` is "ok", "degraded" while messages can be stored but Redis does
    not answer (they are delivered from the database meanwhile), or
    "unavailable" when the database does not answer. `redis` is "off"
    without REDIS_URL.
    """
    database = "ok" if database_answers() else "unavailable"
    link = current_app.extensions["chat_redis"]
    if link is None:
        redis = "off"
    else:
        redis = "ok" if link.answers() else "unavailable"
    if database != "ok":
        status = "unavailable"
    else:
        status = "degraded" if redis == "unavailable" else "ok"
    return {"status": status, "database": database, "redis": redis}


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
    except (DBAPIError, PoolTimeout) as error:
        # A pool with no connection free in time is as unavailable as a
        # database that does not answer.
        db.session.rollback()
        log.warning("database unavailable: %s", getattr(error, "orig", None) or error)
        raise ChatError(
            "unavailable", "the chat cannot reach its database", status=503
        ) from None
    except BaseException:
        db.session.rollback()
        raise


def _message_event(row):
    return _as_event(
        row.id,
        row.seq,
        row.channel,
        row.body,
        row.author,
        row.client_id,
        row.created_at,
    )


def _as_event(message_id, seq, channel, body, author, client_id, created_at):
    """A message as the `message` event and the HTTP API carry it."""
    return {
        "id": message_id,
        "seq": seq,
        "channel": channel,
        "message": body,
        "author": author,
        "created_at": _timestamp(created_at),
        "client_id": client_id,
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
