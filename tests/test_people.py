"""Names, presence and typing, through the Flask-SocketIO test client."""

import pytest


def test_name_given_at_connect_is_the_author(connect):
    kim = connect(auth={"name": "  김민수 "})
    ack = kim.join("lobby")

    kim.send("lobby", "안녕")

    assert ack["name"] == "김민수"
    assert kim.received("message")[0]["author"] == "김민수"


def test_without_a_name_a_readable_guest_name_is_given(connect):
    ack = connect().join("lobby")

    adjective, animal, number = ack["name"].split(" ")
    assert adjective.isalpha() and animal.isalpha() and number.isdigit()


def test_name_in_join_replaces_the_connect_name(connect):
    member = connect(auth={"name": "old"})

    ack = member.join("lobby", name="new")
    member.send("lobby", "hi")

    assert ack["name"] == "new"
    assert member.received("message")[0]["author"] == "new"


@pytest.mark.parametrize("name", ["", " ", "x" * 33, 42, "tab\tname", "\x00"])
def test_invalid_name_at_connect_refuses_the_connection(connect, name):
    member = connect(auth={"name": name})

    assert not member.client.is_connected()


def test_invalid_name_in_join_is_refused(member):
    ack = member.call("join", {"channel": "lobby", "name": "x" * 33})

    assert ack["code"] == "invalid_name"
    assert member.received("chat_error")[0]["code"] == "invalid_name"


# Presence.


def test_join_tells_the_room_who_is_there(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    ann.drain()

    ack = bob.join("lobby")

    expected = {"channel": "lobby", "count": 2, "members": ["ann", "bob"]}
    assert ann.received("presence") == [expected]
    assert bob.received("presence") == [expected]
    assert (ack["count"], ack["members"]) == (2, ["ann", "bob"])


def test_leave_tells_the_room(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")
    ann.drain()

    bob.call("leave", {"channel": "lobby"})

    assert ann.received("presence") == [
        {"channel": "lobby", "count": 1, "members": ["ann"]}
    ]


def test_disconnect_tells_the_room(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")
    ann.drain()

    bob.client.disconnect()

    assert ann.received("presence") == [
        {"channel": "lobby", "count": 1, "members": ["ann"]}
    ]


def test_presence_counts_people_not_tabs(connect):
    ann = {"name": "ann", "person": "browser-of-ann"}
    first_tab, second_tab = connect(auth=ann), connect(auth=ann)
    first_tab.join("lobby")

    ack = second_tab.join("lobby")

    assert (ack["count"], ack["members"]) == (1, ["ann"])


def test_presence_counts_people_not_names(connect):
    one_sam = connect(auth={"name": "Sam", "person": "first-browser"})
    other_sam = connect(auth={"name": "Sam", "person": "second-browser"})
    one_sam.join("lobby")

    ack = other_sam.join("lobby")

    assert (ack["count"], ack["members"]) == (2, ["Sam", "Sam"])


def test_a_connection_without_a_person_counts_as_one(connect):
    connect(auth={"name": "Sam"}).join("lobby")

    ack = connect(auth={"name": "Sam"}).join("lobby")

    assert (ack["count"], ack["members"]) == (2, ["Sam", "Sam"])


def test_a_person_stays_one_when_a_tab_leaves(connect):
    ann = {"name": "ann", "person": "browser-of-ann"}
    first_tab, second_tab = connect(auth=ann), connect(auth=ann)
    first_tab.join("lobby")
    second_tab.join("lobby")
    first_tab.drain()

    second_tab.client.disconnect()

    assert first_tab.received("presence") == [
        {"channel": "lobby", "count": 1, "members": ["ann"]}
    ]


@pytest.mark.parametrize("person", ["", "x" * 65, 42, "a b", "한국", "a\x00"])
def test_invalid_person_at_connect_refuses_the_connection(connect, person):
    member = connect(auth={"name": "ann", "person": person})

    assert not member.client.is_connected()


def test_presence_of_one_channel_stays_in_it(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    ann.drain()

    bob.join("elsewhere")

    assert ann.received("presence") == []


@pytest.mark.parametrize("app_settings", [{"CHAT_PRESENCE_INTERVAL": 3600}])
def test_presence_bursts_are_coalesced(app, services, connect):
    ann = connect(auth={"name": "ann"})
    ann.join("lobby")
    for name in ["bob", "cy", "di"]:
        connect(auth={"name": name}).join("lobby")

    held_back = ann.received("presence")
    with app.app_context():
        services.presence.refresh()

    assert [event["count"] for event in held_back] == [1]
    assert ann.received("presence") == [
        {"channel": "lobby", "count": 4, "members": ["ann", "bob", "cy", "di"]}
    ]


# Typing.


def test_typing_reaches_the_others_with_the_author(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")

    assert ann.call("typing", {"channel": "lobby"}) == {"ok": True}

    assert bob.received("typing") == [{"channel": "lobby", "author": "ann"}]
    assert ann.received("typing") == []


def test_typing_is_throttled(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")

    for _ in range(5):
        ann.call("typing", {"channel": "lobby"})

    assert len(bob.received("typing")) == 1


def test_typing_right_after_a_message_is_news(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")
    ann.call("typing", {"channel": "lobby"})

    ann.send("lobby", "hi")
    ann.call("typing", {"channel": "lobby"})

    assert len(bob.received("typing")) == 2


@pytest.mark.parametrize("app_settings", [{"CHAT_TYPING_INTERVAL": 0}])
def test_typing_throttle_is_per_interval(connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    bob.join("lobby")

    ann.call("typing", {"channel": "lobby"})
    ann.call("typing", {"channel": "lobby"})

    assert len(bob.received("typing")) == 2


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"channel": "elsewhere"}, "not_joined"),
        ({"channel": "a b"}, "invalid_channel"),
        ("lobby", "invalid_payload"),
    ],
)
def test_bad_typing_is_refused(member, payload, code):
    member.join("lobby")

    ack = member.call("typing", payload)

    assert ack["code"] == code
    assert member.received("chat_error")[0]["code"] == code


# Connections that end while a join is under way, and what presence keeps.


def test_a_join_that_outlives_its_connection_leaves_no_member(app, services, connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    ann.join("lobby")
    ann.received("presence")
    real = services.membership.rooms

    class ClosingWhileReading:
        """The joiner's connection closes while its history is read."""

        def __getattr__(self, name):
            return getattr(real, name)

        def hold(self, sid, channel):
            real.hold(sid, channel)
            real.socketio.server.disconnect(sid)

    services.membership.rooms = ClosingWhileReading()
    bob.call("join", {"channel": "lobby"})
    services.membership.rooms = real

    with app.app_context():
        assert services.presence.current("lobby")["members"] == ["ann"]
    assert not any(event["count"] > 1 for event in ann.received("presence"))


def test_presence_keeps_nothing_of_a_channel_once_everyone_left(services, connect):
    ann, bob = connect(auth={"name": "ann"}), connect(auth={"name": "bob"})
    for member in (ann, bob):
        member.join("lobby")
        member.join("kitchen")
        member.call("typing", {"channel": "lobby"})
    ann.call("leave", {"channel": "lobby"})
    bob.call("leave", {"channel": "lobby"})
    ann.client.disconnect()
    bob.client.disconnect()

    store = services.presence.store
    assert (store.members, store.joined, store.announced, store.typed) == (
        {},
        {},
        {},
        {},
    )


def test_presence_ignores_a_connection_that_has_ended(app, services):
    presence = services.presence
    with app.app_context():
        present = presence.enter("lobby", "an-ended-sid")
        presence.rename("an-ended-sid", "ghost")

        assert present == {"channel": "lobby", "count": 0, "members": []}
        assert presence.name_of("an-ended-sid") is None
        assert not presence.may_type("lobby", "an-ended-sid")
        assert presence.current("lobby")["count"] == 0
