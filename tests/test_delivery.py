"""Ordered, exactly-once delivery while a member joins (app.realtime.delivery).

A join reads the history while live messages keep coming. These tests play
both orders of "history read" and "live message" that a busy server sees.
"""

import pytest

from app.chat import messages
from app.extensions import db, socketio
from app.realtime.rooms import Rooms, room_of


@pytest.fixture
def joining(app, connect):
    """A member in the room of `lobby` whose live messages are held, as
    a join leaves it before reading the history; and the rooms."""
    return hold_joiner(app, connect())


def hold_joiner(app, member):
    """Put a member in the room of `lobby` with its live messages held."""
    manager = socketio.server.manager
    sid = manager.sid_from_eio_sid(member.client.eio_sid, "/")
    manager.enter_room(sid, "/", room_of("lobby"))
    members = Rooms(socketio)
    members.hold(sid, "lobby")
    return member, sid, members


def seqs(member):
    return [message["seq"] for message in member.received("message")]


def post(app, text):
    with app.app_context():
        app.extensions["chat"].messages.post("lobby", text)


def read_history(app):
    with app.app_context():
        return messages.history("lobby")


def test_nothing_reaches_a_joiner_before_its_history(app, joining):
    member, _, _ = joining

    post(app, "live")

    assert seqs(member) == []


def test_live_message_after_the_read_follows_the_history(app, joining):
    member, sid, members = joining
    post(app, "m1")
    history = read_history(app)
    post(app, "m2")

    members.replay(sid, "lobby", history.messages, history.last_seq)

    assert seqs(member) == [1, 2]


def test_live_message_also_in_the_history_arrives_once(app, joining):
    member, sid, members = joining
    post(app, "m1")
    post(app, "m2")
    history = read_history(app)

    members.replay(sid, "lobby", history.messages, history.last_seq)

    assert seqs(member) == [1, 2]


def test_after_the_replay_live_messages_flow_and_repeats_are_dropped(app, joining):
    member, sid, members = joining
    history = read_history(app)
    members.replay(sid, "lobby", history.messages, history.last_seq)
    post(app, "m1")
    with app.app_context():
        (again,) = messages.history("lobby").messages

    members.message(again)  # delivered a second time, as a retry would

    assert seqs(member) == [1]


def test_leaving_forgets_the_position(app, joining):
    member, sid, _ = joining

    socketio.server.manager.leave_room(sid, "/", room_of("lobby"))

    assert socketio.server.manager.ledger.member(sid, room_of("lobby")) is None


def test_disconnect_leaves_every_room_and_forgets_the_member(app, connect):
    member = connect()
    member.join("lobby")
    member.join("elsewhere")
    manager = socketio.server.manager
    sid = manager.sid_from_eio_sid(member.client.eio_sid, "/")

    member.client.disconnect()

    assert (("/", sid)) not in manager.rooms_of
    assert all(sid not in room for room in manager.rooms.get("/", {}).values())
    assert not manager.is_connected(sid, "/")


# Repair: messages that were committed but never reached this process.


@pytest.fixture
def store_silently(app):
    """Store messages in `lobby` without broadcasting them."""

    def store(*texts):
        # Dropped, as a Redis outage or a process dying between commit and
        # publish would drop them.
        posting = app.extensions["chat"].messages
        publish, posting.publish = posting.publish, lambda message: None
        try:
            for text in texts:
                post(app, text)
        finally:
            posting.publish = publish

    return store


def test_the_check_delivers_a_message_that_was_never_broadcast(
    app, connect, store_silently
):
    member = connect()
    member.join("lobby")
    store_silently("lost in transit")

    socketio.server.manager.check()

    assert [m["message"] for m in member.received("message")] == ["lost in transit"]


def test_a_message_after_a_gap_waits_for_the_ones_before_it(
    app, connect, store_silently
):
    member = connect()
    member.join("lobby")
    store_silently("m1")

    post(app, "m2")
    waited = seqs(member)
    socketio.server.manager.check()

    assert waited == []
    assert seqs(member) == [1, 2]


def test_repairs_deliver_each_message_once(app, connect, store_silently):
    member = connect()
    member.join("lobby")
    store_silently("m1", "m2")

    socketio.server.manager.check()
    socketio.server.manager.check()
    post(app, "m3")

    assert seqs(member) == [1, 2, 3]


def test_a_gap_already_pruned_is_announced_with_resync(app, connect, store_silently):
    member = connect()
    member.join("lobby")
    store_silently(*(f"m{number}" for number in range(1, 16)))

    socketio.server.manager.check()

    assert member.received("resync") == [
        {"channel": "lobby", "recovered": False, "last_seq": 15}
    ]
    assert seqs(member) == list(range(6, 16))


def test_a_joiner_gets_what_the_room_has_beyond_its_history(
    app, connect, store_silently
):
    other = connect()
    other.join("lobby")
    history = read_history(app)  # read before m1 is stored
    store_silently("m1")
    socketio.server.manager.check()  # the room's cursor moves past the history
    member, sid, members = hold_joiner(app, connect())

    members.replay(sid, "lobby", history.messages, history.last_seq)

    assert seqs(member) == [1]
    assert seqs(other) == [1]


def test_a_joiner_told_of_a_gap_pruned_while_it_caught_up(app, connect, store_silently):
    other = connect()
    other.join("lobby")
    member, sid, members = hold_joiner(app, connect())
    history = read_history(app)  # empty: read before anything was stored
    store_silently(*(f"m{number}" for number in range(1, 16)))
    socketio.server.manager.check()  # the room moves on to 15; 1-5 are pruned

    members.replay(sid, "lobby", history.messages, history.last_seq)

    assert [notice["recovered"] for notice in member.received("resync")] == [False]
    assert seqs(member) == list(range(6, 16))


def test_a_database_reset_behind_the_members_starts_over_with_resync(app, member):
    member.join("lobby")
    post(app, "m1")
    post(app, "m2")
    member.drain()
    with app.app_context():
        db.session.execute(db.text("DELETE FROM messages"))
        db.session.execute(db.text("DELETE FROM channels"))
        db.session.commit()
    post(app, "first after the reset")  # seq 1 again: not a new message yet

    socketio.server.manager.check()
    post(app, "second after the reset")

    assert member.received("resync") == [
        {"channel": "lobby", "recovered": False, "last_seq": 1}
    ]
    assert [m["message"] for m in member.received("message")] == [
        "second after the reset"
    ]


def test_a_member_upgraded_from_polling_gets_every_message_in_order(
    start_thread_server, open_tab
):
    server = start_thread_server()
    sender = open_tab(server.url)
    reader = open_tab(server.url, transports=("polling", "websocket"))
    assert reader.client.eio.current_transport == "websocket"  # upgraded
    for tab in (sender, reader):
        tab.join("lobby")
    texts = [f"message {number}" for number in range(20)]

    for text in texts:
        assert sender.send("lobby", text)["ok"] is True

    assert reader.texts(len(texts)) == texts
    # It gets the frame shared with the room, as members on a WebSocket do.
    assert socketio.server.eio.sockets[reader.client.eio.sid].websocket is not None


def test_no_frame_is_built_for_a_room_without_members_here(app, connect, monkeypatch):
    manager = socketio.server.manager
    built = []
    encode = manager._broadcast
    monkeypatch.setattr(
        manager, "_broadcast", lambda *args: built.append(args) or encode(*args)
    )
    connect().join("elsewhere")

    post(app, "nobody reads lobby here")

    assert built == []
    assert manager.ledger.cursor(room_of("lobby")) is None


def test_a_join_of_a_connection_closed_meanwhile_leaves_nothing(app, connect):
    member = connect()
    manager = socketio.server.manager
    sid = manager.sid_from_eio_sid(member.client.eio_sid, "/")
    members = Rooms(socketio)
    post(app, "before")
    history = read_history(app)

    member.client.disconnect()  # while the join waited
    members.hold(sid, "lobby")
    members.replay(sid, "lobby", history.messages, history.last_seq)

    assert manager.ledger.member(sid, room_of("lobby")) is None
    assert manager.ledger.cursor(room_of("lobby")) is None
