"""WebSocket frames (RFC 6455): a parser of the client's frames that does no
I/O, and the server's frames, written whole.

FrameParser is fed the bytes a connection received, in pieces of any size,
and hands back what they hold, event by event: each data message (its
fragments joined, text decoded), each ping, pong and close. It keeps no
socket and no clock, so it is tested byte by byte from the RFC (as h11 and
wsproto test theirs). It refuses, with the close code to send, a frame that
breaks the protocol (1002), text that is not UTF-8 (1007) and a message
longer than its limit (1009), the last as soon as a frame's header says so,
before its payload has arrived.
"""

from typing import NamedTuple

# The bits of a frame's first two bytes (5.2), and the opcodes.
_FIN, _RESERVED, _OPCODE, _MASKED, _LENGTH = 0x80, 0x70, 0x0F, 0x80, 0x7F
CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA
# Close codes (7.4.1).
NORMAL, PROTOCOL_ERROR, INVALID_DATA, POLICY, TOO_BIG = 1000, 1002, 1007, 1008, 1009


class Refused(Exception):
    """The client's frames break the protocol: close with this code."""

    def __init__(self, code, why):
        super().__init__(code, why)
        self.code, self.why = code, why

    def __str__(self):
        return self.why


class Event(NamedTuple):
    """What the frames held: a whole message (TEXT, with str data, or
    BINARY, with bytes), or a control frame (CLOSE, PING, PONG) and its
    payload."""

    opcode: int
    data: str | bytes


class FrameParser:
    """The client's frames of one connection, parsed as bytes arrive."""

    __slots__ = ("max_message", "_buffer", "_at", "_opcode", "_fragments", "_size")

    def __init__(self, max_message):
        self.max_message = max_message
        self._buffer, self._at = b"", 0  # bytes received, parsed up to _at
        self._opcode = None  # of the message whose fragments are arriving
        self._fragments = []
        self._size = 0  # of those fragments together

    def feed(self, data):
        """Add bytes received from the client."""
        if self._at == len(self._buffer):
            self._buffer, self._at = data, 0
        else:
            self._buffer = self._buffer[self._at :] + data
            self._at = 0

    @property
    def buffered(self):
        """Bytes received and not yet parsed into an event."""
        return len(self._buffer) - self._at

    def next_event(self):
        """The next whole Event, or None until more bytes arrive; Refused
        for frames that break the protocol."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode >= CLOSE:
                return Event(opcode, payload)
            if (opcode == CONTINUATION) == (self._opcode is None):
                raise Refused(PROTOCOL_ERROR, "a fragment out of place")
            if fin and self._opcode is None:  # a message in one frame
                return Event(opcode, _decoded(opcode, payload))
            self._opcode = self._opcode or opcode
            self._fragments.append(payload)
            self._size += len(payload)
            if fin:
                opcode, fragments = self._opcode, self._fragments
                self._opcode, self._fragments, self._size = None, [], 0
                return Event(opcode, _decoded(opcode, b"".join(fragments)))

    def _next_frame(self):
        """(fin, opcode, unmasked payload) of the next whole frame, or None."""
        buffer, at = self._buffer, self._at
        available = len(buffer) - at
        if available < 2:
            return None
        first, second = buffer[at], buffer[at + 1]
        if first & _RESERVED:
            raise Refused(PROTOCOL_ERROR, "reserved bits without an extension")
        if not second & _MASKED:
            raise Refused(PROTOCOL_ERROR, "an unmasked client frame")
        fin, opcode, length = first & _FIN, first & _OPCODE, second & _LENGTH
        if opcode >= CLOSE:
            if opcode > PONG:
                raise Refused(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not fin or length > 125:
                raise Refused(PROTOCOL_ERROR, "a fragmented or long control frame")
        elif opcode > BINARY:
            raise Refused(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        header = 2
        if length >= 126:
            header = 4 if length == 126 else 10
            if available < header:
                return None
            length = int.from_bytes(buffer[at + 2 : at + header])
        if opcode < CLOSE and self._size + length > self.max_message:
            raise Refused(TOO_BIG, "a message over the limit")
        end = at + header + 4 + length
        if end > len(buffer):
            return None
        mask = buffer[at + header : at + header + 4]
        payload = _unmask(buffer[at + header + 4 : end], mask)
        if end == len(buffer):
            self._buffer, self._at = b"", 0  # hold nothing while idle
        else:
            self._at = end
        return fin, opcode, payload


def _decoded(opcode, payload):
    if opcode != TEXT:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise Refused(INVALID_DATA, "text that is not UTF-8") from None


def _unmask(payload, mask):
    """XOR the payload with the repeated 4-byte mask, as one big integer."""
    if not payload:
        return payload
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return masked.to_bytes(size, "little")


def frame(opcode, payload):
    """A complete, unmasked server frame (5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((_FIN | opcode, size))
    elif size < 0x10000:
        header = bytes((_FIN | opcode, 126)) + size.to_bytes(2)
    else:
        header = bytes((_FIN | opcode, 127)) + size.to_bytes(8)
    return header + payload


def text_frame(message):
    """A complete text frame holding `message` (str)."""
    return frame(TEXT, message.encode())


def close_frame(code, reason=""):
    """A close frame with `code` and a `reason` (cut to fit, 5.5)."""
    reason = reason.encode()[:123].decode(errors="ignore")  # whole characters
    return frame(CLOSE, code.to_bytes(2) + reason.encode())
