"""Long-polling bodies of Engine.IO protocols 4 and 3, encoded and decoded.

Protocol 4 separates the packets of a body with the record separator and
sends binary packets as `b` and base64. Protocol 3 (socket.io-client 1.x and
2.x) prefixes each packet with its length, counted as the JavaScript client
counts it, in UTF-16 code units of the string; a client that supports binary
may send, and be sent, the binary framing instead:
`<0 string | 1 binary><length, one byte per decimal digit><255><bytes>`,
whose lengths count bytes (strings as UTF-8, as utf8.js writes them). A
client that asks `b64=1` gets binary packets as `b4` and base64 inside the
text framing. (engine.io-protocol, and engine.io's lib/parser-v3.)
socket.io-client 1.x writes the packets of a text body in UTF-8 first (see
_as_written); the chat's own packets are ASCII (JSON with escapes), which
both read alike.

Anything that does not decode raises ProtocolError: the session is closed.
"""

import base64
import re
from urllib.parse import parse_qs

from engineio import packet

from app.wire.packets import ProtocolError

SEPARATOR = "\x1e"
BINARY_CONTENT = "application/octet-stream"
_TEXT_CONTENT = "text/plain; charset=UTF-8"
# Protocol 3: the marker ending a packet's length in the binary framing,
# and the most digits a length may have (engine.io's parser allows 310).
_LENGTH_END = 255
_MOST_DIGITS = 310
# A surrogate left in a Python string has no partner: a JavaScript string's
# pairs arrive as one character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def decode(body, protocol, content_type=""):
    """The Engine.IO packets of a POST body (bytes)."""
    binary = (content_type or "").split(";")[0].strip() == BINARY_CONTENT
    if protocol == 3 and binary:
        return [decode_packet3(part) for part in _split_binary(body)]
    if binary:
        raise ProtocolError("protocol 4 sends binary data as base64")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a long-polling body that is not UTF-8") from None
    if protocol == 3:
        return [decode_packet3(_as_written(part)) for part in _split_counted(text)]
    if text.startswith("d="):  # a JSONP form post
        text = parse_qs(text).get("d", [""])[0]
    return [decode_packet4(part) for part in text.split(SEPARATOR)]


def encode(packets, protocol, b64=False, jsonp_index=None):
    """A long-polling response: (body bytes, content type)."""
    if protocol == 4:
        text = SEPARATOR.join(pkt.encode(b64=True) for pkt in packets)
        if jsonp_index is not None:
            text = f'___eio[{jsonp_index}]("{_jsonp_escape(text)}");'
        return text.encode("utf-8"), _TEXT_CONTENT
    if not b64 and any(pkt.binary for pkt in packets):
        return b"".join(_binary_part(pkt) for pkt in packets), BINARY_CONTENT
    text = "".join(_counted(_well_formed(encode_text3(pkt))) for pkt in packets)
    return text.encode("utf-8"), _TEXT_CONTENT


def decode_packet4(text):
    """One packet of protocol 4: a type digit and its data, or `b` and base64."""
    if text[:1] == "b":
        return packet.Packet(packet.MESSAGE, _unbase64(text[1:]))
    if text[:1] not in ("1", "2", "3", "4", "5", "6"):
        raise ProtocolError("not an Engine.IO packet")
    return packet.Packet(encoded_packet=text)


def decode_packet3(data):
    """One packet of protocol 3: text as in protocol 4, `b`, a type and
    base64, or bytes whose first byte is the type."""
    if isinstance(data, (bytes, bytearray)):
        if data[:1] != bytes([packet.MESSAGE]):
            raise ProtocolError("binary data in a packet other than a message")
        return packet.Packet(packet.MESSAGE, bytes(data[1:]))
    if data[:1] == "b":
        if data[1:2] != str(packet.MESSAGE):
            raise ProtocolError("binary data in a packet other than a message")
        return packet.Packet(packet.MESSAGE, _unbase64(data[2:]))
    return decode_packet4(data)


def encode_text3(pkt):
    """A packet of protocol 3 as text: binary data as `b4` and base64."""
    if pkt.binary:
        return f"b{packet.MESSAGE}" + base64.b64encode(pkt.data).decode("ascii")
    return pkt.encode()


def js_length(text):
    """The length of `text` as JavaScript counts it: UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _counted(text):
    return f"{js_length(text)}:{text}"


def _split_counted(text):
    """The packets of a protocol 3 text body: `<length>:<packet>...`, each
    length in UTF-16 code units."""
    if not text:
        raise ProtocolError("an empty long-polling body")
    if text.isascii():
        units, width, decode_units = text, 1, str
    else:  # count in UTF-16 code units, two bytes each
        units = text.encode("utf-16-le", "surrogatepass")
        width = 2

        def decode_units(data):
            return data.decode("utf-16-le", "surrogatepass")

    colon = ":" if width == 1 else ":\x00".encode("ascii")
    parts, at = [], 0
    while at < len(units):
        end = units.find(colon, at)
        while end != -1 and (end - at) % width:
            end = units.find(colon, end + 1)
        digits = decode_units(units[at:end]) if end != -1 else ""
        if not (digits.isascii() and digits.isdigit()):
            raise ProtocolError("a packet length that is not a number")
        start = end + width
        stop = start + int(digits) * width
        if stop > len(units):
            raise ProtocolError("a packet longer than the body")
        if stop > start:
            parts.append(decode_units(units[start:stop]))
        at = stop
    return parts


def _as_written(text):
    """A packet of a protocol 3 text body as its client wrote it.

    engine.io-parser 1.x (socket.io-client 1.x) writes each packet of a text
    body as UTF-8 read byte by byte, one character per byte (and counts
    those); 2.x writes the packet as it is. A packet whose characters are
    all below U+0100 and whose bytes read as UTF-8 is taken as the former:
    only text that already looks like mojibake could be misread.
    """
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8", "surrogatepass")
    except UnicodeError:
        return text


def _split_binary(body):
    """The packets of a protocol 3 binary body: str for strings, bytes (the
    type byte first) for binary packets."""
    parts, at = [], 0
    while at < len(body):
        kind = body[at]
        end = body.find(bytes([_LENGTH_END]), at + 1)
        digits = body[at + 1 : end] if end != -1 else b""
        if (
            kind not in (0, 1)
            or not digits
            or len(digits) > _MOST_DIGITS
            or max(digits) > 9
        ):
            raise ProtocolError("an invalid binary long-polling body")
        start = end + 1
        stop = start + int("".join(map(str, digits)))
        if stop > len(body):
            raise ProtocolError("a packet longer than the body")
        data = body[start:stop]
        if kind == 0:
            try:
                data = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise ProtocolError("a string packet that is not UTF-8") from None
        parts.append(data)
        at = stop
    return parts


def _binary_part(pkt):
    """One packet in protocol 3's binary framing."""
    if pkt.binary:
        kind, data = 1, bytes([packet.MESSAGE]) + pkt.data
    else:
        kind, data = 0, _well_formed(pkt.encode()).encode("utf-8")
    digits = bytes(int(digit) for digit in str(len(data)))
    return bytes([kind]) + digits + bytes([_LENGTH_END]) + data


def _well_formed(text):
    """`text` as JavaScript writes it in UTF-8: a lone surrogate becomes
    U+FFFD (one code unit for one, so lengths stay as counted)."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _unbase64(text):
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error too
        raise ProtocolError("invalid base64") from None


def _jsonp_escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')
