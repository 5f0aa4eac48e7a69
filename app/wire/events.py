"""Socket.IO events of the default namespace, dispatched without
python-socketio's layers.

Every event a client sends passes, in python-socketio, through a packet
object decoded by a general parser, four methods that look the sid, the
connection and the handler up again, and an ack packet object, encoded and
handed to Engine.IO's send, which makes an Engine.IO packet object of it in
turn. The events of the chat's clients take one shape:
`2<ack id>[name, payload]`. EventDispatch reads that shape itself, checks it
as CheckedPacket does (app.wire.packets), calls the namespace's handler and
writes the ack straight onto the socket; every other packet (CONNECT,
DISCONNECT, acks, binary events, other namespaces, and anything unusual) goes
to python-socketio as before, which refuses what breaks the protocol.
"""

from time import perf_counter

from socketio import packet

from app.wire.packets import ProtocolError, payload_fits

_NAMESPACE = "/"


class EventDispatch:
    """Hands the Engine.IO messages of a Socket.IO `server` to it, its
    common events by the short way."""

    def __init__(self, server):
        self.server = server
        # Event name -> observe(seconds) of the time from its dispatch to
        # its ack written (app.metrics: chat_send_seconds).
        self.timed = {}
        self.manager = server.manager
        self.json = server.packet_class.json
        self.library = server._handle_eio_message  # python-socketio's way

    def __call__(self, socket, data):
        """Act on a message from `socket` (a ChatSocket)."""
        event = self._event(socket.sid, data)
        if event is None:
            return self.library(socket.sid, data)
        ack_id, payload = event
        observe = self.timed.get(payload[0])
        started = perf_counter() if observe is not None else 0.0
        server, manager = self.server, self.manager
        sid = manager.sid_from_eio_sid(socket.sid, _NAMESPACE)
        if not manager.is_connected(sid, _NAMESPACE):
            return None  # as python-socketio: not connected to `/` (yet)
        handler = server.namespace_handlers[_NAMESPACE]
        answer = handler.trigger_event(payload[0], sid, *payload[1:])
        if ack_id is None or answer is server.not_handled:
            return None
        if answer is None:
            values = []
        elif isinstance(answer, tuple):
            values = list(answer)
        else:
            values = [answer]
        socket.send_text(f"{packet.ACK}{ack_id}{self.json.dumps(values)}")
        if observe is not None:
            observe(perf_counter() - started)
        return None

    def _event(self, eio_sid, data):
        """(ack id or None, payload) of an event of the common shape, or
        None for python-socketio to decode; ProtocolError for one that
        breaks the protocol."""
        if type(data) is not str or data[:1] != "2":
            return None
        server = self.server
        if eio_sid in server._binary_packet or server.handlers.get(_NAMESPACE):
            return None  # attachments awaited, or handlers by event name
        bracket = data.find("[", 1)
        digits = data[1:bracket]
        if bracket == -1 or (digits and not (digits.isascii() and digits.isdigit())):
            return None
        if len(digits) > 99 or _NAMESPACE not in server.namespace_handlers:
            return None
        try:
            payload = self.json.loads(data[bracket:])
        except (ValueError, TypeError) as error:
            raise ProtocolError(f"invalid Socket.IO packet: {error}") from None
        ack_id = int(digits) if digits else None
        if not payload_fits(packet.EVENT, payload, ack_id):
            raise ProtocolError("invalid Socket.IO payload")
        return ack_id, payload
