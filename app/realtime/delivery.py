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
from engineio import packet as eio_packet
from redis.backoff import NoBackoff
from redis.retry import Retry
from socketio import Manager, RedisManager
from socketio.packet import EVENT

from app.realtime.broadcaster import channel_of, queue_notice
from app.chat.errors import ChatError
from app.wire.websocket import SharedFrame

log = logging.getLogger(__name__)

MESSAGE_EVENT = "message"
_GONE = object()  # the position of a member no longer in the room
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
        # (sid, room) -> highest seq sent, or the list of live messages held
        # back while that member's history is read.
        self.positions = {}
        # (namespace, sid) -> the rooms it is in, so that a disconnect does
        # not scan every room of the namespace (10,000 connections leaving
        # would otherwise cost 10,000 scans of 10,000 rooms).
        self.rooms_of = {}
        # room -> highest seq delivered to this process's settled members.
        self.cursors = {}
        # Where missed messages are read from (app.realtime.archive.Archive).
        self.archive = None
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
            cursor = self.cursors.get(room)
            if cursor is not None and message["seq"] > cursor + 1:
                self.repair_soon(room)
                return
            self._deliver([message], room, namespace)

    def _deliver(self, messages, room, namespace):
        """Send messages (ascending seq) to the room's members, each once.

        Members connected by WebSocket get the same wire frame, built once
        for each Engine.IO protocol version among them, written straight to
        their socket; others go through Engine.IO.
        """
        members = list(self.get_participants(namespace, room))
        if not members:
            # Nothing to encode; and a room without members here has no
            # cursor (as basic_leave_room keeps it).
            self.cursors.pop(room, None)
            return
        cursor = self.cursors.get(room)
        for message in messages:
            seq = message["seq"]
            if cursor is not None and seq <= cursor:
                continue
            frame = SharedFrame(self._frame(MESSAGE_EVENT, message, namespace))
            for sid, eio_sid in members:
                # A member has a position from its join on; one without has
                # left meanwhile (a send can run a disconnect's handlers).
                position = self.positions.get((sid, room), _GONE)
                if isinstance(position, list):
                    position.append(message)
                elif position is not _GONE and seq > position:
                    if seq > position + 1:
                        self._resync(eio_sid, room, messages[-1]["seq"], namespace)
                    self.positions[(sid, room)] = seq
                    self._send(eio_sid, frame)
            if cursor is not None and room in self.cursors:
                cursor = self.cursors[room] = seq

    def _resync(self, eio_sid, room, last_seq, namespace):
        """Tell a member that messages it should have got were pruned."""
        notice = {"channel": channel_of(room), "recovered": False, "last_seq": last_seq}
        self._send(eio_sid, SharedFrame(self._frame(RESYNC_EVENT, notice, namespace)))

    def hold(self, sid, room, namespace="/"):
        """Hold live messages for a member whose history is about to be read
        (nothing, for a connection closed meanwhile)."""
        if self.is_connected(sid, namespace):
            self.positions[(sid, room)] = []

    def replay(self, sid, room, history, last_seq, namespace="/"):
        """Send a joiner its history, then the live messages held meanwhile.

        What neither brought (Redis lost it, or the room's other members are
        further on) is read from the database before the joiner is settled.
        Raises ChatError when that read fails.
        """
        first = True  # the join's own read: its ack tells of pruned messages
        for _ in range(CATCH_UP_READS):
            position = self._replay_step(
                sid, room, history, last_seq, namespace, first=first
            )
            if position is None:
                return
            history, last_seq = self.archive.after(room, position), position
            first = False
        self._replay_step(sid, room, history, last_seq, namespace, settle=True)

    def _replay_step(
        self, sid, room, history, last_seq, namespace, first=False, settle=False
    ):
        """Send what is in order; settle the joiner and return None, or
        return its position when more must be read first. A gap found after
        the join's own read (pruned meanwhile) is announced with `resync`."""
        key = (sid, room)
        with self._delivering:
            held = self.positions.get(key)
            if held is None:
                return None  # the member left, or disconnected, meanwhile
            eio_sid = self.eio_sid_from_sid(sid, namespace)
            if eio_sid is None or not self.is_connected(sid, namespace):
                self.positions.pop(key, None)  # it is disconnecting
                return None
            held = held if isinstance(held, list) else []
            position = last_seq
            for message in history:
                if not first and message["seq"] > position + 1:
                    self._resync(eio_sid, room, history[-1]["seq"], namespace)
                self._send(
                    eio_sid, SharedFrame(self._frame(MESSAGE_EVENT, message, namespace))
                )
                position = max(position, message["seq"])
            waiting = []
            for message in sorted(held, key=lambda message: message["seq"]):
                if message["seq"] == position + 1 or (
                    settle and message["seq"] > position
                ):
                    if message["seq"] > position + 1:
                        self._resync(eio_sid, room, held[-1]["seq"], namespace)
                    frame = SharedFrame(self._frame(MESSAGE_EVENT, message, namespace))
                    self._send(eio_sid, frame)
                    position = message["seq"]
                elif message["seq"] > position:
                    waiting.append(message)
            cursor = self.cursors.get(room)
            if not settle and (waiting or (cursor is not None and cursor > position)):
                self.positions[key] = waiting
                return position
            self.positions[key] = position
            if cursor is None:
                self.cursors[room] = position
            return None

    def _send(self, eio_sid, frame):
        """Write a message to a member's WebSocket (whether it connected
        on one or upgraded from long-polling), or hand it to Engine.IO.

        Every message to a member takes the same path, so they stay in order.
        """
        socket = self.server.eio.sockets.get(eio_sid)
        frames = socket.frames if socket is not None else None
        if frames is None:
            self.server._send_eio_packet(eio_sid, frame.packet)
        else:
            frames.write_shared(frame)

    def _frame(self, event, data, namespace):
        """The Engine.IO frame of an event, encoded once for everyone."""
        encoded = self.server.packet_class(
            EVENT, data=[event, data], namespace=namespace, binary=False
        ).encode()
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)

    # Repair: what Redis did not bring is read from the database.

    def repair_soon(self, room):
        """Have the repairer bring a room up to date with the database."""
        self._due.add(room)
        self._wake.set()

    def repair_everything(self):
        """Have the repairer check every room with members here (after
        Redis, or the listener's connection to it, comes back)."""
        self._due.update(self.cursors)
        self._wake.set()

    def repair(self, room, namespace="/"):
        """Deliver every message of the room after its cursor, from the
        database; False when the database cannot be read now."""
        while True:
            cursor = self.cursors.get(room)
            if cursor is None:
                return True
            try:
                missed = self.archive.after(room, cursor)
            except ChatError:
                return False
            with self._delivering:
                self._deliver(missed, room, namespace)
            if missed and self.cursors.get(room, cursor) > cursor:
                log.info(
                    "repaired %s: delivered up to seq %d from the database",
                    channel_of(room),
                    self.cursors[room],
                )
            if len(missed) < self.archive.READ_AT_ONCE:
                return True

    def check(self):
        """Repair the rooms that are due, and every room whose channel's
        `last_seq` in the database is ahead of its cursor (one query)."""
        due, self._due = self._due, set()
        # Cursors as they were before the read: seqs only grow, so a channel
        # found behind one of these was reset, not merely read too early.
        cursors = dict(self.cursors)
        try:
            newest = self.archive.newest(list(cursors))
        except ChatError:
            newest = {}
        for room, last_seq in newest.items():
            if last_seq > self.cursors.get(room, last_seq):
                due.add(room)
            elif last_seq < cursors[room]:
                self._rewind(room, last_seq)
        for room in due:
            if not self.repair(room):
                self._due.add(room)

    def _rewind(self, room, last_seq, namespace="/"):
        """The channel's database was reset behind what was delivered: start
        its numbering again from `last_seq`, and tell the members."""
        with self._delivering:
            if room not in self.cursors:
                return
            self.cursors[room] = last_seq
            for sid, eio_sid in list(self.get_participants(namespace, room)):
                position = self.positions.get((sid, room))
                if isinstance(position, int) and position > last_seq:
                    self.positions[(sid, room)] = last_seq
                    self._resync(eio_sid, room, last_seq, namespace)

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

    def basic_leave_room(self, sid, namespace, room):
        """Leave a room; forget the member's position in it, and the room's
        cursor once no member is left here."""
        self.positions.pop((sid, room), None)
        rooms = self.rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
        super().basic_leave_room(sid, namespace, room)
        if room not in self.rooms.get(namespace, {}):
            self.cursors.pop(room, None)

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
        if (
            message.get("event") == MESSAGE_EVENT
            and message.get("room")
            and isinstance(data, list)
            and len(data) == 1
            and isinstance(data[0], dict)
            and isinstance(data[0].get("seq"), int)
        ):
            return self.deliver_message(
                data[0], message["room"], message.get("namespace") or "/"
            )
        return super()._handle_emit(message)
