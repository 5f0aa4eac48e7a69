"""Delivery of chat messages to channel members: each once, in seq order.

Socket.IO's client managers fan events out to rooms. The chat's managers
deliver `message` events to a channel's room with more guarantees:

* With Redis, every process (the sender's too) delivers a message when it
  comes back from Redis, so all processes deliver in Redis's order. The
  service publishes while it holds the channel's lock, which makes Redis's
  order the seq order.
* The database is the source of truth, and Redis only a fast path. Each
  process keeps, per room with members here, a cursor: the highest seq it
  delivered. A message that arrives with a gap (Redis lost one, or a process
  died between commit and publish) is not delivered out of order: the room is
  repaired by reading every seq after the cursor from the database. Rooms are
  also repaired when the Redis listener (re)connects, when Redis comes back,
  and by a periodic check of every served channel's `last_seq`.
* The manager keeps each member's position in each channel (the highest seq it
  was sent). A live message that a joiner also got in its history is not sent
  twice, and live messages that arrive while the history is being read wait
  for it, so the joiner sees history and live messages in one seq order. A
  member whose next message does not follow its position (what it missed was
  pruned before it could be delivered) first gets `resync`.
"""

import logging
import socket
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from socketio import Manager, RedisManager
from socketio.packet import EVENT

from app.chat.errors import ChatError
from app.realtime.rooms import (
    CHANGE_EVENT,
    COMMAND_EVENT,
    change_event,
    channel_of,
    queue_notice,
)
from app.realtime.ledger import Ledger
from app.wire.connections import Broadcast

log = logging.getLogger(__name__)

MESSAGE_EVENT = "message"
RESYNC_EVENT = "resync"
# Seconds between two attempts of the Redis listener to subscribe again.
LISTEN_RETRY = 0.5
# TCP keepalive of the Redis subscription: idle seconds, probe interval,
# probes lost before the connection counts as dead.
LISTENER_KEEPALIVE = {
    socket.TCP_KEEPIDLE: 10,
    socket.TCP_KEEPINTVL: 5,
    socket.TCP_KEEPCNT: 3,
}
# A joiner that keeps falling behind while it catches up is settled after
# this many reads, rather than read for ever.
CATCH_UP_READS = 5


class OrderedMessages:
    """Manager mixin: per-member positions, per-room cursors, ordered and
    self-repairing delivery of messages."""

    def __init__(self, *args, repair_interval=0, **kwargs):
        super().__init__(*args, **kwargs)
        # Each room's members here: held while their history is read, or
        # the highest seq each was sent; and the room's cursor.
        self.ledger = Ledger()
        # (namespace, sid) -> the rooms it is in, so that a disconnect does
        # not scan every room of the namespace (10,000 connections leaving
        # would otherwise cost 10,000 scans of 10,000 rooms).
        self.rooms_of = {}
        # Where missed messages are read from (app.realtime.archive.Archive).
        self.archive = None
        # Who obeys commands to every process (app.chat.membership's obey).
        self.on_command = None
        self.metrics = None  # app.metrics.Metrics: deliveries and repairs
        self.repair_interval = repair_interval
        self._due = set()  # rooms to repair as soon as possible
        self._wake = threading.Event()
        # Deliveries never wait on I/O while holding this; it keeps the
        # listener, the repairer and the senders from interleaving.
        self._delivering = threading.RLock()

    def initialize(self):
        super().initialize()
        if self.repair_interval > 0:
            self.server.start_background_task(self._repair_forever)

    def publish_message(self, message, room, namespace="/"):
        """Send a stored message to a room's members on every process."""
        self.deliver_message(message, room, namespace)

    def deliver_message(self, message, room, namespace="/"):
        """Send a message to this process's members of the room, each once.

        A message that does not follow the room's cursor waits for a repair,
        which reads it, and whatever came before it, from the database.
        """
        with self._delivering:
            cursor = self.ledger.cursor(room)
            if cursor is not None and message["seq"] > cursor + 1:
                self.repair_soon(room)
                return
            self._deliver([message], room, namespace)

    def _deliver(self, messages, room, namespace):
        """Send messages (ascending seq) to the room's members here, each
        once (app.realtime.ledger): each message is encoded once, and the
        wire writes one frame of it to every member on a WebSocket. Then
        the changes that waited for them."""
        sent = self.ledger.deliver(
            room,
            messages,
            encode=lambda message: self._broadcast(MESSAGE_EVENT, message, namespace),
            send=self.server.eio.deliver,
            resync=lambda eio_sid, last_seq: self._resync(
                eio_sid, room, last_seq, namespace
            ),
        )
        if self.metrics is not None:
            self.metrics.deliveries += sent
        for change in self.ledger.due(room):
            self.ledger.apply_due(
                room, [change], self._change_sender(change, namespace)
            )

    def publish_command(self, command):
        """Have every process obey a command: here, this one alone."""
        self.obey(command)

    def obey(self, command):
        if self.on_command is not None:
            self.on_command(command)

    # Edits and deletes: after their message, once, in their channel's order.

    def publish_change(self, change, room, namespace="/"):
        """Send an edit or a delete to a room's members on every process."""
        self.deliver_change(change, room, namespace)

    def deliver_change(self, change, room, namespace="/"):
        """Send a change to this process's members of the room that were
        sent its message. One that does not follow the room's last change
        waits for a repair, which reads the changes from the database."""
        with self._delivering:
            send = self._change_sender(change, namespace)
            if not self.ledger.change(room, change, send):
                self.repair_soon(room)

    def _change_sender(self, change, namespace):
        """`send(eio_sid)` of a change, encoded once, at its first member."""
        encoded = []

        def send(eio_sid):
            if not encoded:
                encoded.append(self._broadcast(*change_event(change), namespace))
            self._send(eio_sid, encoded[0])

        return send

    def _resync(self, eio_sid, room, last_seq, namespace):
        """Tell a member that messages it should have got were pruned."""
        notice = {"channel": channel_of(room), "recovered": False, "last_seq": last_seq}
        self._send(eio_sid, self._broadcast(RESYNC_EVENT, notice, namespace))

    def hold(self, sid, room, namespace="/"):
        """Hold live messages for a member whose history is about to be read
        (nothing, for a connection closed meanwhile)."""
        if self.is_connected(sid, namespace):
            self.ledger.hold(sid, self.eio_sid_from_sid(sid, namespace), room)

    def replay(self, sid, room, history, last_seq, last_change=None, namespace="/"):
        """Send a joiner its history, then the live messages held meanwhile.

        What neither brought (Redis lost it, or the room's other members are
        further on) is read from the database before the joiner is settled.
        Raises ChatError when that read fails.
        """
        first = True  # the join's own read: its ack tells of pruned messages
        for _ in range(CATCH_UP_READS):
            position = self._replay_step(
                sid, room, history, last_seq, last_change, namespace, first=first
            )
            if position is None:
                return
            history, last_seq = self.archive.after(room, position), position
            last_change, first = None, False
        self._replay_step(
            sid, room, history, last_seq, last_change, namespace, settle=True
        )

    def _replay_step(
        self,
        sid,
        room,
        history,
        last_seq,
        last_change,
        namespace,
        first=False,
        settle=False,
    ):
        """Send what is in order; settle the joiner and return None, or
        return its position when more must be read first. A gap found after
        the join's own read (pruned meanwhile) is announced with `resync`."""
        with self._delivering:
            member = self.ledger.member(sid, room)
            if member is None:
                return None  # the member left, or disconnected, meanwhile
            if not self.is_connected(sid, namespace):
                self.ledger.leave(sid, room)  # it is disconnecting
                return None
            eio_sid = member.eio_sid
            held = member.held if member.held is not None else []
            position = last_seq
            for message in history:
                if not first and message["seq"] > position + 1:
                    self._resync(eio_sid, room, history[-1]["seq"], namespace)
                self._send_message(eio_sid, message, namespace)
                position = max(position, message["seq"])
            waiting = []
            for message in sorted(held, key=lambda message: message["seq"]):
                if message["seq"] == position + 1 or (
                    settle and message["seq"] > position
                ):
                    if message["seq"] > position + 1:
                        self._resync(eio_sid, room, held[-1]["seq"], namespace)
                    self._send_message(eio_sid, message, namespace)
                    position = message["seq"]
                elif message["seq"] > position:
                    waiting.append(message)
            cursor = self.ledger.cursor(room)
            if not settle and (waiting or (cursor is not None and cursor > position)):
                member.held = waiting
                return position
            for change in self.ledger.settle(sid, room, position, last_change):
                self._change_sender(change, namespace)(eio_sid)
            return None

    def _send_message(self, eio_sid, message, namespace):
        """Send a joiner one message of its history, or one held for it."""
        self._send(eio_sid, self._broadcast(MESSAGE_EVENT, message, namespace))
        if self.metrics is not None:
            self.metrics.deliveries += 1

    def _send(self, eio_sid, broadcast):
        """Hand a message to one member's connection (app.wire)."""
        self.server.eio.deliver(eio_sid, broadcast)

    def _broadcast(self, event, data, namespace):
        """An event as the wire sends it to many: encoded once."""
        return Broadcast(
            self.server.packet_class(
                EVENT, data=[event, data], namespace=namespace, binary=False
            ).encode()
        )

    # Repair: what Redis did not bring is read from the database.

    def repair_soon(self, room):
        """Have the repairer bring a room up to date with the database."""
        self._due.add(room)
        self._wake.set()

    def repair_everything(self):
        """Have the repairer check every room with members here (after
        Redis, or the listener's connection to it, comes back)."""
        self._due.update(self.ledger.cursors())
        self._wake.set()

    def repair(self, room, namespace="/"):
        """Deliver every message of the room after its cursor, from the
        database; False when the database cannot be read now."""
        while True:
            cursor = self.ledger.cursor(room)
            if cursor is None:
                return True
            try:
                missed = self.archive.after(room, cursor)
            except ChatError:
                return False
            with self._delivering:
                self._deliver(missed, room, namespace)
            now = self.ledger.cursor(room)
            if missed and now is not None and now > cursor:
                if self.metrics is not None:
                    self.metrics.repairs += 1
                log.info(
                    "repaired %s: delivered up to seq %d from the database",
                    channel_of(room),
                    now,
                )
            if len(missed) < self.archive.READ_AT_ONCE:
                return True

    def check(self):
        """Repair the rooms that are due, and every room whose channel's
        `last_seq` or `last_change` in the database is ahead of what was
        delivered here (one query)."""
        due, self._due = self._due, set()
        # Cursors as they were before the read: seqs only grow, so a channel
        # found behind one of these was reset, not merely read too early.
        cursors = self.ledger.cursors()
        try:
            newest = self.archive.newest(list(cursors))
        except ChatError:
            newest = {}
        changes = self.ledger.changes()
        for room, (last_seq, last_change) in newest.items():
            now = self.ledger.cursor(room)
            if now is not None and last_seq > now:
                due.add(room)
            elif last_seq < cursors[room]:
                self._rewind(room, last_seq)
            if last_change > changes.get(room, last_change):
                due.add(room)
        for room in due:
            if not (self.repair(room) and self.repair_changes(room)):
                self._due.add(room)

    def repair_changes(self, room, namespace="/"):
        """Deliver the room's changes after the last one applied here, from
        the database (each changed message's current state); False when
        the database cannot be read now."""
        known = self.ledger.changes().get(room)
        if known is None:
            return True
        try:
            missed = self.archive.changes_after(room, known)
        except ChatError:
            return False
        with self._delivering:
            for change in missed:
                send = self._change_sender(change, namespace)
                self.ledger.change(room, change, send, repairing=True)
        if missed:
            log.info(
                "repaired %s: changes up to %d from the database",
                channel_of(room),
                missed[-1]["change"],
            )
        return True

    def _rewind(self, room, last_seq, namespace="/"):
        """The channel's database was reset behind what was delivered: start
        its numbering again from `last_seq`, and tell the members."""
        with self._delivering:
            self.ledger.rewind(
                room,
                last_seq,
                lambda eio_sid, seq: self._resync(eio_sid, room, seq, namespace),
            )

    def _repair_forever(self):
        """Check the rooms every `repair_interval` seconds, and at once when
        a repair is asked for."""
        while True:
            self._wake.wait(self.repair_interval)
            self._wake.clear()
            try:
                self.check()
            except Exception:  # the repairer must outlive any one failure
                log.exception("repairing delivery failed")

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        """Enter a room, remembering it among the sid's rooms."""
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault((namespace, sid), set()).add(room)

    def get_rooms(self, sid, namespace):
        """The rooms a sid is in, from the index rather than a scan of all."""
        rooms = self.rooms_of.get((namespace, sid), ())
        return [room for room in rooms if room is not None]

    def is_in_room(self, sid, namespace, room):
        """Whether a sid is in a room, from the same index."""
        return room in self.rooms_of.get((namespace, sid), ())

    def basic_leave_room(self, sid, namespace, room):
        """Leave a room, and the ledger's room (which goes, cursor and all,
        with its last member here)."""
        self.ledger.leave(sid, room)
        rooms = self.rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
        super().basic_leave_room(sid, namespace, room)

    def basic_disconnect(self, sid, namespace, **kwargs):
        """Disconnect: what the base class does, but leaving only the rooms
        the sid is in rather than scanning every room for it."""
        for room in self.rooms_of.pop((namespace, sid), ()):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]


class ChatManager(OrderedMessages, Manager):
    """One process: messages are delivered as soon as they are published."""


class ChatRedisManager(OrderedMessages, RedisManager):
    """Several processes joined by Redis: messages are delivered from Redis,
    and from the database whatever Redis did not bring."""

    def __init__(self, link, channel, repair_interval=0):
        super().__init__(
            link.url,
            channel=channel,
            repair_interval=repair_interval,
            # For the listener: a subscription waits for messages without a
            # timeout, but a connection attempt gives up quickly.
            redis_options={
                "socket_connect_timeout": link.timeout,
                "retry": Retry(NoBackoff(), 0),
                # A Redis host gone without a reset is noticed in about 25 s.
                "socket_keepalive": True,
                "socket_keepalive_options": LISTENER_KEEPALIVE,
            },
        )
        self.link = link
        link.on_back.append(self.repair_everything)

    def publish_message(self, message, room, namespace="/"):
        if not self._publish(queue_notice(message, room, namespace)):
            # Redis did not take it: this process's members get it now, and
            # the other processes' repairers read it from the database.
            self.deliver_message(message, room, namespace)

    def publish_change(self, change, room, namespace="/"):
        notice = queue_notice(change, room, namespace, event=CHANGE_EVENT)
        if not self._publish(notice):
            self.deliver_change(change, room, namespace)

    def publish_command(self, command):
        if not self._publish(queue_notice(command, None, event=COMMAND_EVENT)):
            # This process obeys now; the others find bans in the database.
            self.obey(command)

    def _publish(self, data):
        """Publish through the link: one short attempt, none while Redis is
        down. True when Redis took it."""
        encoded = self.json.dumps(data)
        return self.link.run(
            "publish",
            lambda client: client.publish(self.channel, encoded) is not None,
            fallback=False,
        )

    def _redis_listen_with_retries(self):
        """Subscribe, and subscribe again every LISTEN_RETRY seconds while
        Redis is away; after each subscription, repair every room, since
        what was published meanwhile never arrives."""
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                self.link.answered()
                self.repair_everything()
                yield from self.pubsub.listen()
            except redis.RedisError as error:
                self.link.failed("listen", error)
                if self.pubsub is not None:
                    self.pubsub.close()
                time.sleep(LISTEN_RETRY)

    def check(self):
        """Ask a Redis that is down whether it is back, then repair."""
        self.link.probe()
        super().check()

    def _handle_emit(self, message):
        # Stored messages (ours, another process's, or `flask chat post`'s)
        # go through ordered delivery; every other event as usual.
        data = message.get("data")
        if message.get("event") == COMMAND_EVENT:
            if isinstance(data, list) and data and isinstance(data[0], dict):
                self.obey(data[0])
            return None
        if (
            message.get("event") in (MESSAGE_EVENT, CHANGE_EVENT)
            and message.get("room")
            and isinstance(data, list)
            and len(data) == 1
            and isinstance(data[0], dict)
            and isinstance(data[0].get("seq"), int)
        ):
            deliver = (
                self.deliver_message
                if message["event"] == MESSAGE_EVENT
                else self.deliver_change
            )
            return deliver(data[0], message["room"], message.get("namespace") or "/")
        return super()._handle_emit(message)
