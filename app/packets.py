"""Socket.IO packets that never crash the server on malformed input.

python-socketio raises (and logs a traceback) when a client sends broken
JSON, an event that is not a list starting with a name, or an unknown packet
type. This packet class turns all of those into a `malformed` event, which
the chat namespace answers with a `chat_error` to the sender alone.
"""

from socketio import packet

MALFORMED = "malformed"
_KNOWN_FROM_CLIENTS = {
    packet.CONNECT,
    packet.DISCONNECT,
    packet.EVENT,
    packet.ACK,
    packet.BINARY_EVENT,
    packet.BINARY_ACK,
}


class TolerantPacket(packet.Packet):
    """A packet that decodes anything a client sends into something handled."""

    def decode(self, encoded_packet):
        """Decode as usual, but map every kind of malformed input to MALFORMED."""
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, TypeError, RecursionError):
            return self._malformed()
        if self.packet_type not in _KNOWN_FROM_CLIENTS:
            return self._malformed()
        if self.packet_type == packet.EVENT and not _is_event(self.data):
            return self._malformed()
        return attachments

    def _malformed(self):
        self.packet_type = packet.EVENT
        self.data = [MALFORMED]
        return 0


def _is_event(data):
    return isinstance(data, list) and bool(data) and isinstance(data[0], str)
