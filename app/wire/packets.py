"""Socket.IO packets checked against the protocol as they are decoded.

python-socketio raises (and Engine.IO logs a traceback) when a client sends
broken JSON, an unknown packet type or an event that is not a list starting
with a name, and it lets some of those through. CheckedPacket raises
ProtocolError for every packet that breaks the Socket.IO protocol (types,
namespace, ack id, payload shapes and reserved event names as
socket.io-parser checks them, more than MAX_ATTACHMENTS binary attachments,
or attachments together longer than a message), and the connection that sent
it is closed, as the specification says (app.wire.connections). A well-formed
event with a bad payload (a `join` without a channel) is not a protocol
error: the chat answers it with `chat_error`.
"""

import json

import orjson
from flask.json.provider import DefaultJSONProvider
from socketio import packet

_FROM_CLIENTS = {
    packet.CONNECT,
    packet.DISCONNECT,
    packet.EVENT,
    packet.ACK,
    packet.BINARY_EVENT,
    packet.BINARY_ACK,
}
# Event names socket.io-parser refuses from clients: they would run the
# server's own handlers (a client's `disconnect` ran on_disconnect while it
# stayed connected).
RESERVED_EVENTS = frozenset(
    (
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    )
)
# Most binary attachments one packet may announce; python-socketio keeps
# every binary message that follows until the count is reached.
MAX_ATTACHMENTS = 10


class ProtocolError(ValueError):
    """Input that breaks the Engine.IO or Socket.IO protocol: the connection
    that sent it is closed."""


class TolerantJSON:
    """Socket.IO's JSON: orjson, ten times faster than the json module at
    encoding a chat message (0.4 against 5.7 µs) and four times at decoding
    an event; the json module for what orjson refuses, so that what is
    accepted stays exactly what JSON allows.

    What it writes is what the json module wrote: compact and ASCII, every
    other character escaped (socket.io-client 1.x decodes long-polling
    bodies from UTF-8 a second time, and reads only ASCII as sent). orjson
    refuses integers beyond 64 bits, NaN and lone surrogates, which the
    json module then reads and writes as before. Nesting too deep for
    either is a ValueError, which Engine.IO and Socket.IO catch, rather
    than the RecursionError the json module raises.
    """

    @staticmethod
    def dumps(data, **kwargs):
        try:
            text = orjson.dumps(data).decode()
            if text.isascii():
                return text
        except TypeError:  # keys that are not strings, integers over 64 bits
            pass
        # The json module escapes faster than Python code could.
        return json.dumps(data, separators=(",", ":"))

    @staticmethod
    def loads(text, **kwargs):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class TolerantJSONProvider(DefaultJSONProvider):
    """Flask's JSON, failing on deeply nested request bodies with ValueError,
    which `request.get_json` answers as bad JSON rather than with a 500."""

    ensure_ascii = False  # Korean and emoji stay readable in JSON

    def loads(self, s, **kwargs):
        return TolerantJSON.loads(s, **kwargs)


class CheckedPacket(packet.Packet):
    """A Socket.IO packet (protocol 5) that refuses to decode what breaks the
    protocol, raising ProtocolError."""

    # The chat sends no binary data: skip searching every outgoing payload.
    uses_binary_events = False
    # Most bytes of one packet's attachments together (see limited()).
    max_attachment_bytes = 1024 * 1024

    @classmethod
    def limited(cls, max_attachment_bytes):
        """This class, its attachments limited to `max_attachment_bytes`
        together (the server's limit on one message)."""
        return type(
            cls.__name__, (cls,), {"max_attachment_bytes": max_attachment_bytes}
        )

    def __init__(self, *args, encoded_packet=None, **kwargs):
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)
        if encoded_packet is not None and not encoded_packet:
            raise ProtocolError("empty Socket.IO packet")  # the base skips it

    def encode(self):
        """Encode as usual; a refusal of an unknown namespace carries an
        object with a message, as protocol 5 says (python-socketio sends a
        bare string)."""
        if self.packet_type == packet.CONNECT_ERROR and isinstance(self.data, str):
            self.data = {"message": "Invalid namespace"}
        return super().encode()

    def decode(self, encoded_packet):
        """Decode, raising ProtocolError for anything the protocol forbids."""
        if not isinstance(encoded_packet, str):
            raise ProtocolError("binary data where a Socket.IO packet was expected")
        if not encoded_packet[:1].isdigit():
            raise ProtocolError("invalid Socket.IO packet type")
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, TypeError, RecursionError) as error:
            raise ProtocolError(f"invalid Socket.IO packet: {error}") from None
        if self.packet_type not in _FROM_CLIENTS:
            raise ProtocolError(
                f"Socket.IO packet type {self.packet_type} from a client"
            )
        if not payload_fits(self.packet_type, self.data, self.id):
            raise ProtocolError("invalid Socket.IO payload")
        if attachments > MAX_ATTACHMENTS:
            raise ProtocolError(f"{attachments} binary attachments announced")
        return attachments

    def add_attachment(self, attachment):
        """Add a binary attachment; ProtocolError once the attachments
        together are longer than a message may be."""
        size = len(attachment) + sum(len(each) for each in self.attachments)
        if size > self.max_attachment_bytes:
            raise ProtocolError("binary attachments over the limit")
        return super().add_attachment(attachment)


def payload_fits(kind, data, ack_id):
    """Whether a packet's payload has the shape its type requires, and an
    event a name clients may send (as socket.io-parser's isPayloadValid
    decides)."""
    if kind == packet.CONNECT:
        return data is None or isinstance(data, dict)
    if kind == packet.DISCONNECT:
        return data is None
    if kind in (packet.EVENT, packet.BINARY_EVENT):
        return (
            isinstance(data, list)
            and bool(data)
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
    return isinstance(data, list) and ack_id is not None  # ACK, BINARY_ACK
