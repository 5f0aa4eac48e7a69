"""The WebSocket frame parser (app.wire.frames), byte by byte from RFC 6455,
without a socket: the examples of section 5.7, masked as clients must send
them, and each way a client's frames can break the protocol."""

import os

import pytest

from app.wire import frames
from app.wire.frames import BINARY, CLOSE, PING, TEXT, Event, FrameParser, Refused

LIMIT = 1024


def masked(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", first=None):
    """A client frame (5.2): masked, with the shortest length encoding."""
    size = len(payload)
    head = first if first is not None else (0x80 if fin else 0) | opcode
    if size < 126:
        header = bytes((head, 0x80 | size))
    elif size < 0x10000:
        header = bytes((head, 0x80 | 126)) + size.to_bytes(2)
    else:
        header = bytes((head, 0x80 | 127)) + size.to_bytes(8)
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + body


def events_of(*chunks, limit=LIMIT):
    """Every event the parser hands back, fed `chunks` one after another."""
    parser, events = FrameParser(limit), []
    for chunk in chunks:
        parser.feed(chunk)
        while (event := parser.next_event()) is not None:
            events.append(event)
    return events


def refusal_of(*chunks, limit=LIMIT):
    with pytest.raises(Refused) as refused:
        events_of(*chunks, limit=limit)
    return refused.value.code


# 5.7's examples

HELLO = bytes.fromhex("818537fa213d7f9f4d5158")  # "Hello", masked (5.7)


def test_a_single_frame_masked_text_message():
    assert events_of(HELLO) == [Event(TEXT, "Hello")]


def test_a_frame_fed_one_byte_at_a_time():
    assert events_of(*(HELLO[n : n + 1] for n in range(len(HELLO)))) == [
        Event(TEXT, "Hello")
    ]


def test_a_fragmented_text_message_is_one_message():
    first = masked(TEXT, b"Hel", fin=False)
    last = masked(frames.CONTINUATION, b"lo")

    assert events_of(first + last) == [Event(TEXT, "Hello")]


def test_a_ping_between_fragments_comes_first():
    chunks = (
        masked(TEXT, b"Hel", fin=False),
        masked(PING, b"Hello"),
        masked(frames.CONTINUATION, b"lo"),
    )

    assert events_of(*chunks) == [Event(PING, b"Hello"), Event(TEXT, "Hello")]


@pytest.mark.parametrize("size", [125, 126, 256, 65535, 65536])
def test_binary_messages_with_each_length_encoding(size):
    payload = os.urandom(size)

    assert events_of(masked(BINARY, payload), limit=size) == [Event(BINARY, payload)]


def test_two_frames_in_one_read_are_two_messages():
    assert events_of(HELLO + masked(TEXT, "안녕".encode())) == [
        Event(TEXT, "Hello"),
        Event(TEXT, "안녕"),
    ]


def test_half_a_frame_waits_for_the_rest():
    parser = FrameParser(LIMIT)
    parser.feed(HELLO[:7])

    assert parser.next_event() is None
    assert parser.buffered == 7
    parser.feed(HELLO[7:])
    assert parser.next_event() == Event(TEXT, "Hello")
    assert parser.buffered == 0


def test_a_close_frame_keeps_its_code_and_reason():
    payload = (1001).to_bytes(2) + b"going away"

    assert events_of(masked(CLOSE, payload)) == [Event(CLOSE, payload)]


# Frames that break the protocol (5.1, 5.2, 5.4, 5.5, 5.6, 10.4)


def test_an_unmasked_client_frame_is_refused():
    assert refusal_of(bytes.fromhex("810548656c6c6f")) == frames.PROTOCOL_ERROR


def test_reserved_bits_without_an_extension_are_refused():
    assert refusal_of(masked(TEXT, b"x", first=0x80 | 0x40 | TEXT)) == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_an_unknown_opcode_is_refused(opcode):
    assert refusal_of(masked(opcode, b"x")) == frames.PROTOCOL_ERROR


def test_a_fragmented_control_frame_is_refused():
    assert refusal_of(masked(PING, b"x", fin=False)) == frames.PROTOCOL_ERROR


def test_a_control_frame_over_125_bytes_is_refused():
    assert refusal_of(masked(PING, b"x" * 126)) == frames.PROTOCOL_ERROR


def test_a_continuation_without_a_message_is_refused():
    assert refusal_of(masked(frames.CONTINUATION, b"x")) == frames.PROTOCOL_ERROR


def test_a_new_message_inside_a_fragmented_one_is_refused():
    chunks = masked(TEXT, b"a", fin=False) + masked(TEXT, b"b")

    assert refusal_of(chunks) == frames.PROTOCOL_ERROR


def test_text_that_is_not_utf8_is_refused():
    assert refusal_of(masked(TEXT, b"\xff\xfe")) == frames.INVALID_DATA


def test_a_message_over_the_limit_is_refused_from_its_header_alone():
    header = masked(BINARY, b"x" * (LIMIT + 1))[:4]  # no mask, no payload yet

    assert refusal_of(header) == frames.TOO_BIG


def test_fragments_together_over_the_limit_are_refused():
    half = b"x" * (LIMIT // 2 + 1)
    chunks = masked(TEXT, half, fin=False) + masked(frames.CONTINUATION, half)

    assert refusal_of(chunks) == frames.TOO_BIG


# The server's frames (5.2, 5.7: unmasked)


def test_a_server_text_frame_is_unmasked():
    assert frames.text_frame("Hello") == bytes.fromhex("810548656c6c6f")


@pytest.mark.parametrize(
    "size, header",
    [(256, "827e0100"), (65536, "827f0000000000010000")],
)
def test_server_frames_use_the_rfc_length_encodings(size, header):
    assert frames.frame(BINARY, b"\0" * size)[: len(header) // 2] == bytes.fromhex(
        header
    )


def test_a_close_frame_carries_its_code_and_a_short_reason():
    frame = frames.close_frame(1008, "over its budget" + "!" * 200)

    assert frame[:2] == bytes((0x88, 125))
    assert frame[2:4] == (1008).to_bytes(2)
    assert frame[4:19] == b"over its budget"
