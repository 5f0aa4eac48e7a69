"""The message service: post a message to a channel, read its history.

Reading needs nothing but the database: history() and its kin are plain
functions. Posting is the Messages service, built with what it works with.
Both take plain values (as they arrived from a socket or a request),
return plain values, and raise ChatError. Each write is one transaction
(app.chat.storage), and a message is published only after it commits.
"""

from dataclasses import dataclass

from sqlalchemy import select

from app.chat import rules, storage
from app.chat.errors import ChatError
from app.chat.group_commit import BatcherPool
from app.chat.models import Channel, Message, change_of
from app.chat.storage import Draft, unit_of_work


@dataclass(frozen=True)
class History:
    """What a joiner is sent: retained messages after `since`, oldest first."""

    channel: str
    messages: list
    last_seq: int
    recovered: bool
    # The channel's last edit or delete the messages reflect (at least).
    last_change: int = 0


class Messages:
    """Posting and reading messages.

    `publish` is called with each message once it is committed (the rooms'
    message(), or a queue's outside the servers); `rates` counts the
    channels a sender opens. With `per_channel`, each channel's messages are
    batched into transactions of their own (app.chat.group_commit).
    """

    def __init__(self, publish, rates, config, per_channel=False, metrics=None):
        self.publish = publish
        self.rates = rates
        self.metrics = metrics  # counts committed messages (app.metrics)
        self.max_length = config["CHAT_MAX_MESSAGE_LENGTH"]
        self.history_limit = config["CHAT_HISTORY_LIMIT"]
        self.retry_hours = config["CHAT_RETRY_HOURS"]
        self.known = KnownChannels()
        self.writer = BatcherPool(self._write, keyed=per_channel)
        self.connections = storage.WriteConnections(config["CHAT_SQLITE_SYNC_INTERVAL"])

    def post(
        self, channel, message, author=None, client_id=None, sender=None, user_id=None
    ):
        """Store a message, prune its channel to the newest N, then publish it.

        Returns the message as every member receives it, once it is
        committed. A retry of a `client_id` already stored in the channel
        stores nothing and returns the original message (its text as
        retried, if it was pruned). A message that opens a new channel
        counts against the `sender`'s new-channel limit. A verified author's
        `user_id` goes with the message. Messages posted at the same moment
        share a transaction.
        """
        draft = Draft(
            rules.channel_name(channel),
            rules.message_text(message, self.max_length),
            rules.display_name(author),
            rules.client_id(client_id),
            user_id,
        )
        if sender is not None:
            self._count_if_new(draft.channel, sender)
        writer = self.writer
        return writer.submit(draft.channel if writer.keyed else None, draft)

    def _write(self, drafts):
        published = []
        publish = self.publish

        def count_and_publish(message):
            published.append(None)
            publish(message)

        answers = storage.write_messages(
            drafts, self.history_limit, count_and_publish, self.connections
        )
        if self.metrics is not None:
            self.metrics.stored += len(published)
        return answers

    def start_checkpoints(self):
        """Checkpoint a SQLite database from now on, rather than from the
        first message (app.chat.storage.Checkpoints)."""
        self.connections.start_checkpoints()

    def _count_if_new(self, channel, sender):
        """Count a new channel against the sender's limit before it is opened.

        Channels known to exist are remembered, so a message to one costs no
        query; only the first message to a channel this process has not seen
        looks it up.
        """
        if channel in self.known:
            return
        with unit_of_work() as session:
            exists = session.scalar(select(Channel.id).where(Channel.name == channel))
        if exists is None:
            self.rates.check("new_channel", sender)
        else:
            self.known.add(channel)

    def forget_receipts(self):
        """Drop receipts past CHAT_RETRY_HOURS; returns how many."""
        return storage.forget_receipts(self.retry_hours)


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


def history(channel, since=None, limit=None):
    """The retained messages of a channel with seq > since, oldest first
    (the oldest `limit` of them, if given).

    ``recovered`` is false when messages after `since` were already pruned
    (or `since` is ahead of the channel): the client should reload.
    """
    channel = rules.channel_name(channel)
    since = rules.since_seq(since)
    with unit_of_work() as session:
        counters = session.execute(
            select(Channel.last_seq, Channel.last_change).where(Channel.name == channel)
        ).first()
        last_seq, last_change = counters or (0, 0)
        rows = session.execute(
            select(Message)
            .where(Message.channel == channel, Message.seq > (since or 0))
            .order_by(Message.seq)
            .limit(limit)
        ).scalars()
        messages = [row.event() for row in rows]
    # The messages may be newer than the counter read just before them.
    last_seq = max([last_seq or 0] + [message["seq"] for message in messages[-1:]])
    recovered = since is None or (
        since <= last_seq and (not messages or messages[0]["seq"] == since + 1)
    )
    return History(channel, messages, last_seq, recovered, last_change)


def known_history(channel, since=None):
    """Like history(), but a channel nobody ever posted to is ``unknown_channel``."""
    found = history(channel, since)
    if found.last_seq == 0:
        raise ChatError(
            "unknown_channel", f"no channel named {found.channel!r}", status=404
        )
    return found


def newest(channels):
    """`{channel: (last_seq, last_change)}` of the given channels that
    exist, in one query."""
    with unit_of_work() as session:
        rows = session.execute(
            select(Channel.name, Channel.last_seq, Channel.last_change).where(
                Channel.name.in_(channels)
            )
        ).all()
    return {name: (last_seq, last_change) for name, last_seq, last_change in rows}


def changes_after(channel, change, limit=None):
    """The changes of a channel after its `change`, as each changed message
    stands now, in the order of their last change."""
    with unit_of_work() as session:
        rows = session.scalars(
            select(Message)
            .where(Message.channel == channel, Message.change > change)
            .order_by(Message.change)
            .limit(limit)
        ).all()
        return [change_of(row) for row in rows]
