"""Delivery of chat messages to channel members: each once, in seq order.

Socket.IO's client managers fan events out to rooms. The chat's managers
deliver `message` events to a channel's room with two more guarantees:

* With Redis, every process (the sender's too) delivers a message only when it
  comes back from Redis, so all processes deliver in Redis's order. The
  service publishes while it holds the channel's lock, which makes Redis's
  order the seq order.
* The manager keeps each member's position in each channel (the highest seq it
  was sent). A live message that a joiner also got in its history is not sent
  twice, and live messages that arrive while the history is being read wait
  for it, so the joiner sees history and live messages in one seq order.
"""

from engineio import packet as eio_packet
from socketio import Manager, RedisManager
from socketio.packet import EVENT

from app.transport import text_frame, websocket_of

MESSAGE_EVENT = "message"


class OrderedMessages:
    """Manager mixin: per-member positions and ordered delivery of messages."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (sid, room) -> highest seq sent, or the list of live messages held
        # back while that member's history is read.
        self.positions = {}
        # (namespace, sid) -> the rooms it is in, so that a disconnect does
        # not scan every room of the namespace (10,000 connections leaving
        # would otherwise cost 10,000 scans of 10,000 rooms).
        self.rooms_of = {}

    def publish_message(self, message, room, namespace="/"):
        """Send a stored message to a room's members on every process."""
        self.deliver_message(message, room, namespace)

    def deliver_message(self, message, room, namespace="/"):
        """Send a message to this process's members of the room, each once.

        Members connected by WebSocket get the same wire frame, built once,
        written straight to their socket; others go through Engine.IO.
        """
        frame = _Frame(self._frame(message, namespace))
        seq = message["seq"]
        for sid, eio_sid in self.get_participants(namespace, room):
            position = self.positions.get((sid, room))
            if isinstance(position, list):
                position.append(message)
            elif position is None or seq > position:
                self.positions[(sid, room)] = seq
                self._send(eio_sid, frame)

    def hold(self, sid, room):
        """Hold live messages for a member whose history is about to be read."""
        self.positions[(sid, room)] = []

    def replay(self, sid, room, history, last_seq, namespace="/"):
        """Send a joiner its history, then the live messages held meanwhile."""
        held = self.positions.get((sid, room))
        if held is None:
            return  # the member left, or disconnected, while history was read
        held = held if isinstance(held, list) else []
        eio_sid = self.eio_sid_from_sid(sid, namespace)
        position = last_seq
        for message in history:
            self._send(eio_sid, _Frame(self._frame(message, namespace)))
            position = max(position, message["seq"])
        for message in sorted(held, key=lambda message: message["seq"]):
            if message["seq"] > position:
                self._send(eio_sid, _Frame(self._frame(message, namespace)))
                position = message["seq"]
        self.positions[(sid, room)] = position

    def _send(self, eio_sid, frame):
        """Write a message to a member's WebSocket, or hand it to Engine.IO.

        Every message to a member takes the same path, so they stay in order.
        """
        websocket = websocket_of(self.server.environ.get(eio_sid))
        if websocket is None:
            self.server._send_eio_packet(eio_sid, frame.packet)
        else:
            websocket.write_frame(frame.wire())

    def _frame(self, message, namespace):
        """The Engine.IO frame of a `message` event, encoded once for everyone."""
        encoded = self.server.packet_class(
            EVENT, data=[MESSAGE_EVENT, message], namespace=namespace, binary=False
        ).encode()
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        """Enter a room, remembering it among the sid's rooms."""
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault((namespace, sid), set()).add(room)

    def get_rooms(self, sid, namespace):
        """The rooms a sid is in, from the index rather than a scan of all."""
        rooms = self.rooms_of.get((namespace, sid), ())
        return [room for room in rooms if room is not None]

    def basic_leave_room(self, sid, namespace, room):
        """Leave a room; forget the member's position in it."""
        self.positions.pop((sid, room), None)
        rooms = self.rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
        return super().basic_leave_room(sid, namespace, room)

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


class _Frame:
    """A message's Engine.IO packet, and its WebSocket frame once needed."""

    __slots__ = ("packet", "_wire")

    def __init__(self, packet):
        self.packet = packet
        self._wire = None

    def wire(self):
        if self._wire is None:
            self._wire = text_frame(self.packet.encode())
        return self._wire


class ChatManager(OrderedMessages, Manager):
    """One process: messages are delivered as soon as they are published."""


class ChatRedisManager(OrderedMessages, RedisManager):
    """Several processes joined by Redis: messages are delivered from Redis."""

    def publish_message(self, message, room, namespace="/"):
        # No host_id: the listener of every process, this one included,
        # delivers it, so every process delivers in Redis's order.
        self._publish(
            {
                "method": "emit",
                "event": MESSAGE_EVENT,
                "data": [message],
                "binary": False,
                "namespace": namespace,
                "room": room,
                "skip_sid": None,
                "callback": None,
                "host_id": None,
            }
        )

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
