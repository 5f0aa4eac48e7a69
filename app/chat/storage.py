"""Where messages are kept: one unit of work for every read and write, and
the write path that numbers, stores and prunes a batch in one transaction.

Every service reaches the database through unit_of_work(), which commits or
rolls back in one place and reports a database that does not answer as
`unavailable`.
"""

import hashlib
import logging
import sqlite3
import threading
import time
import weakref
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import gevent
import gevent.monkey
from sqlalchemy import delete, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.chat.errors import ChatError
from app.chat.models import (
    AuditEntry,
    Ban,
    Channel,
    Message,
    Receipt,
    change_of,
    message_event,
    timestamp,
)
from app.extensions import db

log = logging.getLogger(__name__)


# A database that does not answer, or a pool with no connection free in time.
# Anything else (a constraint, a value the column refuses) is a bug: it keeps
# its traceback rather than telling the sender to try again for ever.
_UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)


@contextmanager
def _reaching_the_database(unreachable=_UNREACHABLE):
    """Report a database that cannot be reached as `unavailable` (503)."""
    try:
        yield
    except unreachable as error:
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
    user_id: str | None = None  # a verified author's id at the host site


class WriteConnections:
    """Where the write path takes its DB-API connection from.

    PostgreSQL's batches of different channels are written at once, each on
    a connection of the pool. A SQLite file is written one batch at a time
    (the chat's batches share one Batcher there), so its connection is kept
    from one batch to the next rather than taken from the pool and handed
    back each time, and its checkpoints are taken off the message path
    (Checkpoints). A connection that failed is handed back, and the next
    batch takes another.
    """

    def __init__(self, sync_every=1.0, keep=True):
        # Seconds between checkpoints; commits that sync themselves (0) still
        # leave checkpoints to a thread, every second.
        self.checkpoint_every = sync_every or 1.0
        self.keep = keep  # False: every batch takes one from the pool
        self.checkpoints = None
        self._kept = None  # (engine, connection)

    def take(self, engine):
        kept = self._kept
        if kept is not None and kept[0] is engine:
            return kept[1]
        connection = engine.raw_connection()
        if self.keep and _one_writer(engine):
            self._kept = (engine, connection)
            self.start_checkpoints(engine)
        return connection

    def start_checkpoints(self, engine=None):
        """Checkpoint the SQLite file of `engine` (the app's) from now on;
        the first write starts them otherwise. The serving process starts
        them at once, so that other writes (bans, edits) are synced too."""
        engine = engine or db.engine
        if not (self.keep and _one_writer(engine)):
            return
        path = engine.url.database
        if self.checkpoints is None or self.checkpoints.path != path:
            self.checkpoints = Checkpoints(path, self.checkpoint_every)
            self.checkpoints.start(self)

    def give_back(self, connection, failed=False):
        kept = self._kept
        if kept is not None and kept[1] is connection:
            if not failed:
                return
            self._kept = None
        connection.close()  # back to the pool


def _one_writer(engine):
    """A SQLite file: one writer at a time, the same database from every
    thread (an in-memory one is a database per thread)."""
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database not in _IN_MEMORY


_IN_MEMORY = (None, "", ":memory:")


class Checkpoints:
    """SQLite's checkpoints, in a thread of their own.

    The chat's SQLite connections commit without waiting for the disk
    (app.extensions: synchronous=NORMAL, unless CHAT_SQLITE_SYNC_INTERVAL is
    0) and leave checkpoints to this: every `interval` seconds, on a
    connection of its own and in an operating system thread, so that the
    event loop serves everyone meanwhile, it syncs the write-ahead log and
    copies it into the database (PASSIVE: writers carry on). An acked
    message is therefore on the disk within about `interval` seconds, and
    safe from a crash of the process at once. A checkpoint in the commit
    that crossed a thousand pages, SQLite's default, held up every client of
    the process for milliseconds; the commits' own checkpoint stays as a
    backstop for a log this has let grow (app.extensions).
    """

    def __init__(self, path, interval):
        self.path = path
        self.interval = interval
        self._connection = None

    def start(self, owner):
        """Run until `owner` (a WriteConnections) is gone or has others."""
        owner = weakref.ref(owner)
        threading.Thread(target=self._run, args=(owner,), daemon=True).start()

    def _run(self, owner):
        while True:
            time.sleep(self.interval)  # gevent makes it a greenlet's sleep
            kept = owner()
            if kept is None or kept.checkpoints is not self:
                break
            del kept
            try:
                _off_the_loop(self.checkpoint)
            except Exception as error:
                log.warning("checkpoint of %s failed: %s", self.path, error)
        if self._connection is not None:
            _off_the_loop(self._connection.close)

    def checkpoint(self, passes=4):
        """Sync the log and copy it into the database. The log starts again
        from its beginning only once all of it is copied, so while commits
        made during a pass are left over, another pass copies them (up to
        `passes`). Returns SQLite's (busy, frames in the log, frames
        copied) of the last pass."""
        if self._connection is None:
            # The database as it is (mode=rw): never a new, empty one.
            uri = Path(self.path).resolve().as_uri() + "?mode=rw"
            self._connection = sqlite3.connect(
                uri, uri=True, timeout=10, check_same_thread=False
            )
        copied_before = None
        for _ in range(passes):
            result = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, frames, copied = result.fetchone()
            if frames < 0:
                log.warning("%s is not in WAL mode: nothing to checkpoint", self.path)
            if busy or frames < 0 or copied == copied_before:  # all copied
                break
            copied_before = copied
        return busy, frames, copied


def _off_the_loop(work):
    """Run `work` in an operating system thread and wait for it: under
    gevent, one of the hub's pool, while the event loop serves others;
    otherwise in the calling thread, which is one."""
    if gevent.monkey.is_module_patched("threading"):
        return gevent.get_hub().threadpool.apply(work)
    return work()


_FROM_THE_POOL = WriteConnections(keep=False)


def write_messages(drafts, limit, publish, connections=None):
    """Store drafts in one transaction, keeping each channel's newest
    `limit`, then `publish` each new message.

    Publishing happens after the commit, while the channels' turns are
    still held (see _turn). Returns each draft's message, in the given order:
    the one stored now, or the one a previous send of its client_id stored.
    The connection comes from `connections` (a WriteConnections), or the
    pool.
    """
    engine = db.engine
    sql = _SQL[engine.dialect.name == "postgresql"]
    unreachable = _unreachable(engine)
    connections = connections or _FROM_THE_POOL
    with _reaching_the_database(unreachable):
        connection = connections.take(engine)
    failed = True
    try:
        with _turn(connection, sql, {draft.channel for draft in drafts}, unreachable):
            with _reaching_the_database(unreachable):
                answers, stored = _transaction(connection, sql, drafts, limit)
            failed = False
            # Committed: no database error after this point concerns the senders.
            for message in stored:
                publish(message)
    finally:
        connections.give_back(connection, failed)
    return answers


def _unreachable(engine):
    """The errors that say `engine`'s database cannot be reached, the
    driver's own (the write path talks to the driver) and SQLAlchemy's."""
    dbapi = engine.dialect.dbapi
    return (*_UNREACHABLE, dbapi.OperationalError, dbapi.InterfaceError)


def _transaction(connection, sql, drafts, limit):
    """_store in a transaction of its own on the DB-API `connection`."""
    cursor = connection.cursor()
    try:
        result = _store(cursor, sql, drafts, limit)
        connection.commit()
        return result
    except BaseException:
        _roll_back(connection)
        raise
    finally:
        cursor.close()


def _roll_back(connection):
    """Roll back; a connection that cannot is dropped from the pool."""
    try:
        connection.rollback()
    except Exception:
        connection.invalidate()


@contextmanager
def _turn(connection, sql, channels, unreachable):
    """Hold the channels' turns from storing messages until they are published.

    On PostgreSQL a session advisory lock per channel makes "commit, then
    publish" one step among the senders of every process, so messages reach
    Redis, and so every member, in seq order. Locks are taken in one order
    everywhere, so batches never deadlock. SQLite serves one process whose
    writes never yield to another greenlet, so the order holds there as is.
    """
    if sql.lock is None:
        yield
        return
    keys = sorted({_lock_key(channel) for channel in channels})
    try:
        with _reaching_the_database(unreachable):
            _each(connection, sql.lock, keys)
    except BaseException:
        connection.invalidate()  # ending the session releases what it took
        raise
    try:
        yield
    finally:
        _release(connection, sql, keys)


def _each(connection, statement, keys):
    """Run `statement` for each key, then commit."""
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute(statement, (key,))
    connection.commit()


def _release(connection, sql, keys):
    """Give back the channels' turns; a connection that cannot is closed, as
    ending its session releases its locks."""
    try:
        _each(connection, sql.unlock, keys)
    except BaseException as error:
        connection.invalidate()
        if not isinstance(error, Exception):
            raise
        log.warning("closed a connection that kept its turns: %s", error)


def _lock_key(channel):
    """A signed 64-bit advisory lock key for a channel name."""
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Statements:
    """The write path's SQL, in one driver's placeholders.

    The write path runs on the DB-API driver (sqlite3, psycopg) rather than
    through SQLAlchemy, whose per-statement work (compiling, bind and result
    processors) cost more than the statements themselves; the SQL is the
    one SQLite and PostgreSQL share, written once per driver and, for the
    statements of many rows, once per row count.
    """

    def __init__(self, placeholder, postgres):
        self.p = placeholder
        self.postgres = postgres
        self.lock = "SELECT pg_advisory_lock(%s)" if postgres else None
        self.unlock = "SELECT pg_advisory_unlock(%s)" if postgres else None
        self.prune = self._sql("DELETE FROM messages WHERE channel = ? AND seq <= ?")
        self.keep_receipts = self._sql(
            "INSERT INTO receipts (channel, client_id, message_id, seq, created_at)"
            " VALUES (?, ?, ?, ?, ?)"
        )
        self._cache = {}

    def _sql(self, statement):
        return statement.replace("?", self.p)

    def _rows(self, width, count):
        row = "(" + ", ".join([self.p] * width) + ")"
        return ", ".join([row] * count)

    def next_seqs(self, channels, limit):
        """Create each channel or take as many seqs as it has new messages;
        keep its count of retained messages (the prune that follows keeps
        exactly the newest `limit`: the old count plus the new, capped).
        Returns (name, last_seq) per channel."""
        key = ("next_seqs", channels, limit)
        if key not in self._cache:
            count = "channels.message_count + excluded.last_seq"
            self._cache[key] = (
                "INSERT INTO channels (name, last_seq, last_message_at, message_count)"
                f" VALUES {self._rows(4, channels)}"
                " ON CONFLICT (name) DO UPDATE"
                " SET last_seq = channels.last_seq + excluded.last_seq,"
                " last_message_at = excluded.last_message_at,"
                f" message_count = CASE WHEN {count} > {int(limit)}"
                f" THEN {int(limit)} ELSE {count} END"
                " RETURNING name, last_seq"
            )
        return self._cache[key]

    def insert(self, messages):
        """Insert messages; returns (id, channel, seq) of each."""
        key = ("insert", messages)
        if key not in self._cache:
            self._cache[key] = (
                "INSERT INTO messages"
                " (channel, seq, body, author, client_id, created_at, user_id)"
                f" VALUES {self._rows(7, messages)} RETURNING id, channel, seq"
            )
        return self._cache[key]

    def receipts(self, keys):
        """The receipts of (channel, client_id) keys, with their messages'
        text, author and author's user_id (null once pruned)."""
        return (
            "SELECT r.channel, r.client_id, r.message_id, r.seq, r.created_at,"
            " m.body, m.author, m.user_id, m.edited_at, m.deleted_at"
            " FROM receipts r"
            " LEFT JOIN messages m ON m.id = r.message_id"
            f" WHERE (r.channel, r.client_id) IN (VALUES {self._rows(2, keys)})"
        )

    def moment(self, now):
        """`now` as the driver stores it: PostgreSQL takes the datetime;
        on SQLite, the text SQLAlchemy's DateTime writes and reads."""
        return now if self.postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")


# By whether the database is PostgreSQL: psycopg's placeholders, or sqlite3's.
_SQL = {True: _Statements("%s", True), False: _Statements("?", False)}


def _store(cursor, sql, drafts, limit):
    """Number, insert and prune in the open transaction.

    For the channels of the batch: one upsert that creates them or takes as
    many seqs as each has new messages (its row lock makes concurrent
    writers of a channel take turns); then one insert of every new message,
    and the prunes. None of them scans a channel or the table, so the cost
    does not grow with the number of stored rows. A draft whose client_id
    was already stored, before or earlier in this batch, is answered, not
    stored again.

    Returns each draft's answer, in order, and the newly stored messages.
    """
    answers = _retried(cursor, sql, drafts)
    first_of = {}  # a draft's client_id key -> the index of its first draft
    for index, draft in enumerate(drafts):
        if answers[index] is None:
            first_of.setdefault(_retry_key(draft, index), index)
    new = sorted(first_of.values())
    if not new:
        return answers, []
    now = datetime.now(UTC)
    moment, created_at = sql.moment(now), timestamp(now)
    counts = Counter(drafts[i].channel for i in new)
    cursor.execute(
        sql.next_seqs(len(counts), limit),
        [
            value
            for channel, count in counts.items()
            for value in (channel, count, moment, min(count, limit))
        ],
    )
    newest = dict(cursor.fetchall())
    seq = {channel: newest[channel] - count for channel, count in counts.items()}
    stored, values = [], []
    for index in new:
        channel, body, author, client_id, user_id = drafts[index]
        seq[channel] += 1
        stored.append(
            {
                "id": None,
                "seq": seq[channel],
                "channel": channel,
                "message": body,
                "author": author,
                "created_at": created_at,
                "client_id": client_id,
                "user_id": user_id,
            }
        )
        values += (channel, seq[channel], body, author, client_id, moment, user_id)
    cursor.execute(sql.insert(len(stored)), values)
    ids = {(channel, number): id_ for id_, channel, number in cursor.fetchall()}
    for message in stored:
        message["id"] = ids[message["channel"], message["seq"]]
    receipts = [
        (m["channel"], m["client_id"], m["id"], m["seq"], moment)
        for m in stored
        if m["client_id"]
    ]
    if receipts:
        cursor.executemany(sql.keep_receipts, receipts)
    cursor.executemany(
        sql.prune, [(channel, newest[channel] - limit) for channel in counts]
    )
    by_index = dict(zip(new, stored, strict=True))
    for index, draft in enumerate(drafts):
        if answers[index] is None:
            answers[index] = by_index[first_of[_retry_key(draft, index)]]
    return answers, stored


def _retry_key(draft, index):
    """Drafts with one key are one message: a client_id's sends in a channel."""
    return (draft.channel, draft.client_id) if draft.client_id else index


def _retried(cursor, sql, drafts):
    """For each draft, the message its client_id already stored, or None.

    Only batches holding a client_id pay for this query.
    """
    keys = {(draft.channel, draft.client_id) for draft in drafts if draft.client_id}
    if not keys:
        return [None] * len(drafts)
    cursor.execute(sql.receipts(len(keys)), [value for key in keys for value in key])
    known = {(row[0], row[1]): row for row in cursor.fetchall()}
    answers = []
    for draft in drafts:
        row = known.get((draft.channel, draft.client_id)) if draft.client_id else None
        if row is None:
            answers.append(None)
            continue
        _, _, message_id, seq, created_at, body, author, user_id = row[:8]
        edited_at, deleted_at = (_moment(value) for value in row[8:])
        created_at = _moment(created_at)
        # A pruned original is answered with the text and author as retried.
        pruned = body is None
        answers.append(
            message_event(
                message_id,
                seq,
                draft.channel,
                draft.body if pruned else body,
                draft.author if pruned else author,
                draft.client_id,
                created_at,
                draft.user_id if pruned else user_id,
                edited_at,
                deleted_at is not None,
            )
        )
    return answers


def _moment(value):
    """A datetime as the driver hands it back (SQLite: text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def change_message(channel, seq, authorize, text=None, audit=None):
    """Edit message `seq` of `channel` to `text`, or delete it (no text),
    in one transaction that numbers the change among the channel's
    changes; `authorize(message)` raises ChatError to refuse it. A deleted
    message stays as a tombstone: its seq, without its text. With `audit`
    (an AuditEntry's fields), the change is recorded with it. Returns the
    change (app.chat.models.change_of)."""
    with unit_of_work() as session:
        message = session.scalar(
            select(Message)
            .where(Message.channel == channel, Message.seq == seq)
            .with_for_update()
        )
        if message is None or message.deleted_at is not None:
            raise ChatError(
                "unknown_message",
                f"{channel} has no message #{seq} (it may have been deleted or"
                " pruned)",
                status=404,
            )
        authorize(message)
        change = session.execute(
            update(Channel)
            .where(Channel.name == channel)
            .values(last_change=Channel.last_change + 1)
            .returning(Channel.last_change)
        ).scalar_one()
        now = datetime.now(UTC)
        if text is None:
            message.body, message.deleted_at = "", now
        else:
            message.body, message.edited_at = text, now
        message.change = change
        if audit is not None:
            session.add(AuditEntry(at=now, channel=channel, seq=seq, **audit))
        session.flush()
        return change_of(message)


def forget_receipts(hours, batch=1000):
    """Drop receipts older than `hours`; returns how many.

    They go `batch` at a time, each batch its own transaction, yielding to
    other greenlets in between: an hour of receipts in one DELETE would hold
    SQLite's only writer, and this process, for as long as it took.
    """
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


# Moderation's records: bans, slow mode and the audit log.


def audit(actor, action, **fields):
    """Record what a moderator or an operator did."""
    with unit_of_work() as session:
        session.add(
            AuditEntry(at=datetime.now(UTC), actor=actor, action=action, **fields)
        )


def keep_ban(user_id, until, reason, actor, now):
    """Store a ban (replacing one in force) and its audit entry."""
    with unit_of_work() as session:
        session.merge(
            Ban(user_id=user_id, until=until, reason=reason, by=actor, created_at=now)
        )
        session.add(
            AuditEntry(
                at=now,
                actor=actor,
                action="ban",
                user_id=user_id,
                detail=f"until {timestamp(until)}" + (f": {reason}" if reason else ""),
            )
        )


def end_ban(user_id, actor):
    """End a ban; False if there was none."""
    with unit_of_work() as session:
        ended = session.execute(delete(Ban).where(Ban.user_id == user_id)).rowcount
        if ended:
            session.add(
                AuditEntry(
                    at=datetime.now(UTC), actor=actor, action="unban", user_id=user_id
                )
            )
    return bool(ended)


def _ban(row):
    return {"user_id": row.user_id, "until": timestamp(row.until), "reason": row.reason}


def active_ban(user_id):
    """The ban in force of a person, or None."""
    with unit_of_work() as session:
        row = session.scalar(
            select(Ban).where(Ban.user_id == user_id, Ban.until > datetime.now(UTC))
        )
        return None if row is None else _ban(row)


def active_bans():
    """`{user_id: ban}` of every ban in force."""
    with unit_of_work() as session:
        rows = session.scalars(select(Ban).where(Ban.until > datetime.now(UTC)))
        return {row.user_id: _ban(row) for row in rows}


def keep_slow_mode(channel, seconds, actor):
    """Store a channel's slow mode (creating the channel if need be)."""
    now = datetime.now(UTC)
    with unit_of_work() as session:
        updated = session.execute(
            update(Channel).where(Channel.name == channel).values(slow_mode=seconds)
        ).rowcount
        if not updated:
            session.add(Channel(name=channel, slow_mode=seconds))
        session.add(
            AuditEntry(
                at=now,
                actor=actor,
                action="slow_mode",
                channel=channel,
                detail=f"{seconds} s",
            )
        )


def slow_channels():
    """`{channel: seconds}` of the channels in slow mode."""
    with unit_of_work() as session:
        rows = session.execute(
            select(Channel.name, Channel.slow_mode).where(Channel.slow_mode > 0)
        )
        return dict(rows.all())
