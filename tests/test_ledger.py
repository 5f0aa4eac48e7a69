"""Delivery's ordering (app.realtime.ledger), without sockets: who is sent
which message, once, in seq order."""

from app.realtime.ledger import Ledger


def message(seq):
    return {"seq": seq, "message": f"m{seq}"}


class Wire:
    """Records what a delivery sends, and how often it encodes."""

    def __init__(self):
        self.sent, self.resyncs, self.encoded = [], [], []

    def encode(self, message):
        self.encoded.append(message["seq"])
        return f"frame {message['seq']}"

    def send(self, eio_sid, frame):
        self.sent.append((eio_sid, frame))

    def resync(self, eio_sid, last_seq):
        self.resyncs.append((eio_sid, last_seq))

    def deliver(self, ledger, room, seqs):
        ledger.deliver(
            room, [message(seq) for seq in seqs], self.encode, self.send, self.resync
        )


def settled(*members, room="lobby", position=0):
    ledger = Ledger()
    for sid in members:
        ledger.hold(sid, f"eio-{sid}", room)
        ledger.settle(sid, room, position)
    return ledger


def test_settled_members_get_each_message_once_in_order():
    ledger, wire = settled("a", "b"), Wire()

    wire.deliver(ledger, "lobby", [1, 2])
    wire.deliver(ledger, "lobby", [2])  # again, as a repair might

    assert wire.sent == [
        ("eio-a", "frame 1"),
        ("eio-b", "frame 1"),
        ("eio-a", "frame 2"),
        ("eio-b", "frame 2"),
    ]
    assert ledger.cursor("lobby") == 2


def test_each_message_is_encoded_once_for_every_member():
    ledger, wire = settled("a", "b", "c"), Wire()

    wire.deliver(ledger, "lobby", [1])

    assert wire.encoded == [1]


def test_nothing_is_encoded_for_a_room_without_members_here():
    ledger, wire = Ledger(), Wire()

    wire.deliver(ledger, "lobby", [1])

    assert wire.encoded == wire.sent == []


def test_a_held_member_keeps_live_messages_for_after_its_history():
    ledger, wire = settled("a"), Wire()
    ledger.hold("b", "eio-b", "lobby")

    wire.deliver(ledger, "lobby", [1])

    assert wire.sent == [("eio-a", "frame 1")]
    assert ledger.member("b", "lobby").held == [message(1)]


def test_a_member_whose_next_seq_skips_is_told_to_resync_first():
    ledger, wire = settled("a", position=3), Wire()

    wire.deliver(ledger, "lobby", [6, 7])

    assert wire.resyncs == [("eio-a", 7)]
    assert wire.sent == [("eio-a", "frame 6"), ("eio-a", "frame 7")]


def test_the_first_member_to_settle_sets_the_cursor():
    ledger = Ledger()
    ledger.hold("a", "eio-a", "lobby")
    assert ledger.cursor("lobby") is None

    ledger.settle("a", "lobby", 4)
    ledger.hold("b", "eio-b", "lobby")
    ledger.settle("b", "lobby", 9)

    assert ledger.cursor("lobby") == 4
    assert ledger.cursors() == {"lobby": 4}


def test_a_member_that_leaves_during_a_delivery_is_sent_nothing_more():
    ledger, wire = settled("a", "b"), Wire()

    def send(eio_sid, frame):
        wire.send(eio_sid, frame)
        ledger.leave("b", "lobby")  # a send can run a disconnect's handlers

    ledger.deliver("lobby", [message(1)], wire.encode, send, wire.resync)

    assert wire.sent == [("eio-a", "frame 1")]


def test_a_room_goes_with_its_last_member():
    ledger = settled("a", "b")

    ledger.leave("a", "lobby")
    ledger.leave("b", "lobby")

    assert ledger.member("a", "lobby") is None
    assert ledger.cursor("lobby") is None
    assert ledger.rooms == {}


def test_a_rewind_numbers_again_and_resyncs_those_sent_more():
    ledger, wire = settled("a", "b", position=8), Wire()
    ledger.member("b", "lobby").position = 2

    ledger.rewind("lobby", 5, wire.resync)

    assert ledger.cursor("lobby") == 5
    assert wire.resyncs == [("eio-a", 5)]
    assert ledger.member("a", "lobby").position == 5
