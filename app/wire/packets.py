"""Malformed input on the wire becomes a `malformed` event, never a traceback.

python-socketio raises (and logs a traceback) when a client sends broken
JSON, an event that is not a list starting with a name, or an unknown packet
type; Engine.IO does the same for a WebSocket frame that is not Engine.IO at
all (see app.wire.websocket and app.wire.polling). TolerantPacket turns all of those into a
`malformed` event, which the chat namespace answers with a `chat_error` to
the sender alone.
"""

import json
import re

from flask.json.provider import DefaultJSONProvider
from socketio import packet

MALFORMED = "malformed"
# An Engine.IO message: a packet type digit, or 'b' and base64 for binary.
ENGINEIO_MESSAGE = re.compile(r"[0-6b]")
# An Engine.IO message whose Socket.IO packet fails to decode, on purpose.
MALFORMED_MESSAGE = "4" + MALFORMED
_KNOWN_FROM_CLIENTS = {
    packet.CONNECT,
    packet.DISCONNECT,
    packet.EVENT,
    packet.ACK,
    packet.BINARY_EVENT,
    packet.BINARY_ACK,
}


class TolerantJSON:
    """The json module, failing on deeply nested input with ValueError.

    Engine.IO and Socket.IO catch ValueError from a bad payload, but not the
    RecursionError that a few thousand nested brackets raise.
    """

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(*args, **kwargs):
        try:
            return json.loads(*args, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class TolerantJSONProvider(DefaultJSONProvider):
    """Flask's JSON, failing on deeply nested request bodies with ValueError,
    which `request.get_json` answers as bad JSON rather than with a 500."""

    ensure_ascii = False  # Korean and emoji stay readable in JSON

    def loads(self, s, **kwargs):
        return TolerantJSON.loads(s, **kwargs)


class TolerantPacket(packet.Packet):
    """A packet that decodes anything a client sends into something handled."""

    # The chat sends no binary data: skip searching every outgoing payload.
    uses_binary_events = False

    def __init__(self, *args, encoded_packet=None, **kwargs):
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)
        if encoded_packet is not None and not encoded_packet:
            self._malformed()  # the base class skips decoding empty input

    def decode(self, encoded_packet):
        """Decode as usual, but map every kind of malformed input to MALFORMED."""
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, TypeError, RecursionError):
            return self._malformed()
        if self.packet_type not in _KNOWN_FROM_CLIENTS:
            return self._malformed()
        is_event = self.packet_type in (packet.EVENT, packet.BINARY_EVENT)
        if is_event and not _is_event(self.data):
            return self._malformed()
        return attachments

    def _malformed(self):
        self.packet_type = packet.EVENT
        self.data = [MALFORMED]
        return 0


def _is_event(data):
    return isinstance(data, list) and bool(data) and isinstance(data[0], str)
