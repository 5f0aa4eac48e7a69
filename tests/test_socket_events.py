"""The Socket.IO contract on namespace `/`, through the Flask-SocketIO test client."""

import logging

import pytest


def test_join_acks_with_channel_state(member):
    ack = member.join("lobby")

    assert ack["ok"] is True
    assert (ack["channel"], ack["last_seq"], ack["recovered"]) == ("lobby", 0, True)
    assert (ack["count"], ack["members"]) == (1, [ack["name"]])


def test_join_replays_history_to_the_joiner_oldest_first(connect):
    sender = connect()
    sender.join("lobby")
    for text in ["one", "two", "three"]:
        sender.send("lobby", text)

    newcomer = connect()
    ack = newcomer.join("lobby")

    history = newcomer.received("message")
    assert [m["message"] for m in history] == ["one", "two", "three"]
    assert [m["seq"] for m in history] == [1, 2, 3]
    assert ack["last_seq"] == 3


def test_join_with_since_replays_only_newer_messages(connect):
    sender = connect()
    sender.join("lobby")
    for text in ["one", "two", "three"]:
        sender.send("lobby", text)

    returning = connect()
    ack = returning.join("lobby", since=1)

    assert [m["message"] for m in returning.received("message")] == ["two", "three"]
    assert ack["recovered"] is True


def test_join_with_since_before_pruned_messages_is_not_recovered(connect):
    sender = connect()
    sender.join("lobby")
    for number in range(15):
        sender.send("lobby", f"message {number}")

    returning = connect()
    ack = returning.join("lobby", since=2)

    assert ack["recovered"] is False
    assert [m["seq"] for m in returning.received("message")] == list(range(6, 16))


def test_join_with_since_ahead_of_the_channel_is_not_recovered(member):
    ack = member.join("lobby", since=7)

    assert ack["recovered"] is False
    assert member.received("message") == []


def test_history_goes_to_the_joiner_alone(connect):
    sender = connect()
    sender.join("lobby")
    sender.send("lobby", "hello")
    sender.drain()

    connect().join("lobby")

    assert sender.received("message") == []


def test_send_message_acks_with_id_and_seq(member):
    member.join("lobby")

    first = member.send("lobby", "hello")
    second = member.send("lobby", "again")

    assert first["ok"] is True and second["ok"] is True
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["id"] != first["id"]


def test_sent_message_reaches_the_sender_with_every_field(member):
    member.join("lobby")
    ack = member.send("lobby", "hello")

    (message,) = member.received("message")
    assert message["id"] == ack["id"]
    assert message["seq"] == 1
    assert message["channel"] == "lobby"
    assert message["message"] == "hello"
    assert message["author"] == member.join("lobby")["name"]
    assert message["created_at"].endswith("Z")


def test_message_fans_out_to_every_member_and_nobody_else(connect):
    members = [connect() for _ in range(3)]
    for each in members:
        each.join("lobby")
    outsider = connect()
    outsider.join("elsewhere")
    for each in members:
        each.drain()

    members[0].send("lobby", "hello all")

    for each in members:
        assert [m["message"] for m in each.received("message")] == ["hello all"]
    assert outsider.received("message") == []


@pytest.mark.parametrize(
    "app_settings, sent, kept",
    [({}, 25, range(16, 26)), ({"CHAT_HISTORY_LIMIT": 3}, 5, range(3, 6))],
    ids=["the default of 10", "a configured 3"],
    indirect=["app_settings"],
)
def test_a_channel_keeps_only_its_newest_messages(connect, sent, kept):
    sender = connect()
    sender.join("lobby")
    for number in range(1, sent + 1):
        sender.send("lobby", f"message {number}")

    newcomer = connect()
    newcomer.join("lobby")

    assert [m["seq"] for m in newcomer.received("message")] == list(kept)


def test_page_flow_without_acks_works(connect):
    # The document's page emits without asking for acks.
    page, other = connect(), connect()
    page.emit("join", {"channel": "lobby"})
    other.emit("join", {"channel": "lobby"})

    page.emit("send_message", {"channel": "lobby", "message": "hi"})

    assert [m["message"] for m in page.received("message")] == ["hi"]
    assert [m["message"] for m in other.received("message")] == ["hi"]


def test_leave_stops_delivery(connect):
    leaver, sender = connect(), connect()
    leaver.join("lobby")
    sender.join("lobby")

    assert leaver.call("leave", {"channel": "lobby"}) == {"ok": True}
    sender.send("lobby", "after you left")

    leaver.drain()
    assert leaver.received("message") == []


def test_sending_after_leaving_is_not_joined(member):
    member.join("lobby")
    member.call("leave", {"channel": "lobby"})

    ack = member.send("lobby", "hello?")

    assert ack["code"] == "not_joined"


def test_korean_channel_and_text_round_trip(connect):
    sender = connect()
    sender.join("한국어")
    sender.send("한국어", "안녕하세요 👋")

    newcomer = connect()
    ack = newcomer.join("한국어")

    assert ack["channel"] == "한국어"
    assert newcomer.received("message")[0]["message"] == "안녕하세요 👋"


def test_channel_names_are_nfc_normalised(connect):
    decomposed = "\u1100\u1161"  # 가 as two jamo
    sender = connect()
    ack = sender.join(decomposed)
    sender.send(decomposed, "hello")

    assert ack["channel"] == "가"
    newcomer = connect()
    newcomer.join("가")
    assert [m["message"] for m in newcomer.received("message")] == ["hello"]


def test_markup_is_stored_and_sent_as_plain_text(member):
    member.join("lobby")
    markup = "<img src=x onerror=alert(1)>"

    member.send("lobby", markup)

    assert member.received("message")[0]["message"] == markup


# Bad input: each class gets a clear error to the sender and stores nothing.

BAD_EVENTS = [
    ("join", "lobby", "invalid_payload"),
    ("join", ["lobby"], "invalid_payload"),
    ("join", None, "invalid_payload"),
    ("join", {}, "invalid_channel"),
    ("join", {"channel": 42}, "invalid_channel"),
    ("join", {"channel": ""}, "invalid_channel"),
    ("join", {"channel": "x" * 65}, "invalid_channel"),
    ("join", {"channel": "two words"}, "invalid_channel"),
    ("join", {"channel": "<script>"}, "invalid_channel"),
    ("join", {"channel": "lobby", "since": "3"}, "invalid_since"),
    ("join", {"channel": "lobby", "since": -1}, "invalid_since"),
    ("join", {"channel": "lobby", "since": 1.5}, "invalid_since"),
    ("join", {"channel": "lobby", "since": True}, "invalid_since"),
    ("send_message", "hello", "invalid_payload"),
    ("send_message", {"message": "hi"}, "invalid_channel"),
    ("send_message", {"channel": "lobby"}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": 5}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": ["hi"]}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": ""}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": " \n\t "}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": "a\x00b"}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": "\ud800"}, "invalid_message"),
    ("send_message", {"channel": "lobby", "message": "x" * 2001}, "message_too_long"),
    ("send_message", {"channel": "elsewhere", "message": "hi"}, "not_joined"),
    ("leave", 7, "invalid_payload"),
    ("leave", {"channel": "a/b"}, "invalid_channel"),
]


@pytest.mark.parametrize("event, payload, code", BAD_EVENTS)
def test_bad_input_is_refused_with_a_clear_error(member, caplog, event, payload, code):
    member.join("lobby")
    member.drain()

    with caplog.at_level(logging.WARNING):
        ack = member.call(event, payload)

    assert ack["ok"] is False
    assert ack["code"] == code
    assert ack["message"]
    (error,) = member.received("chat_error")
    assert error == {"event": event, "code": code, "message": ack["message"]}
    assert member.received("message") == []
    assert caplog.records == []


def test_refused_message_stores_nothing(connect):
    sender = connect()
    sender.join("lobby")
    sender.send("lobby", "x" * 2001)
    sender.send("lobby", "")

    newcomer = connect()
    ack = newcomer.join("lobby")

    assert ack["last_seq"] == 0
    assert newcomer.received("message") == []


def test_error_reaches_a_client_without_acks(member):
    member.join("lobby")

    member.emit("send_message", {"channel": "lobby", "message": ""})

    (error,) = member.received("chat_error")
    assert error["code"] == "invalid_message"


def test_events_with_no_payload_or_extra_arguments_are_answered(member):
    assert member.call("join")["code"] == "invalid_payload"
    ack = member.call("join", {"channel": "lobby"}, "extra", 3)
    assert ack["ok"] is True


def test_longest_allowed_message_is_accepted(member):
    member.join("lobby")

    ack = member.send("lobby", "가" * 2000)

    assert ack["ok"] is True
