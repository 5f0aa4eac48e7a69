"""Edits and deletes (app.chat.moderation) through the test client: who may,
what members get, and what history serves afterwards."""

import time

import jwt
import pytest

from app.extensions import socketio

SECRET = "s" * 40
API_KEY = "k" * 40


def token(sub, **claims):
    claims = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def app_settings():
    return {"CHAT_TOKEN_SECRET": SECRET, "CHAT_API_KEY": API_KEY}


@pytest.fixture
def person(connect):
    """A verified member of `lobby`: `person(sub, **claims)`."""

    def join(sub, **claims):
        member = connect(auth={"token": token(sub, **claims)})
        member.join("lobby")
        return member

    return join


@pytest.fixture
def ann(person):
    return person("ann", name="Ann")


@pytest.fixture
def bob(person):
    return person("bob", name="Bob")


def history(client):
    return client.get("/api/channels/lobby/messages").get_json()["messages"]


# Edits.


def test_an_author_edits_and_every_member_is_told(ann, bob, client):
    seq = ann.send("lobby", "helo")["seq"]
    bob.received("message")

    ack = ann.call("edit_message", {"channel": "lobby", "seq": seq, "message": "hello"})

    (edited,) = bob.received("message_edited")
    assert ack["ok"] is True
    assert edited == {
        "channel": "lobby",
        "seq": seq,
        "message": "hello",
        "edited_at": ack["edited_at"],
    }
    (stored,) = history(client)
    assert (stored["message"], stored["edited_at"]) == ("hello", ack["edited_at"])


def test_nobody_edits_another_persons_message(ann, bob):
    seq = ann.send("lobby", "mine")["seq"]

    ack = bob.call("edit_message", {"channel": "lobby", "seq": seq, "message": "x"})

    assert ack["code"] == "forbidden"


def test_a_guest_cannot_edit(connect):
    guest = connect(auth={"name": "Ann"})
    guest.join("lobby")
    seq = guest.send("lobby", "hi")["seq"]

    ack = guest.call("edit_message", {"channel": "lobby", "seq": seq, "message": "x"})

    assert ack["code"] == "forbidden"


@pytest.mark.parametrize(
    "app_settings",
    [{"CHAT_TOKEN_SECRET": SECRET, "CHAT_API_KEY": API_KEY, "CHAT_EDIT_WINDOW": 0}],
)
def test_an_edit_after_the_window_is_refused(ann, client):
    seq = ann.send("lobby", "too late")["seq"]

    ack = ann.call("edit_message", {"channel": "lobby", "seq": seq, "message": "x"})

    assert ack["code"] == "forbidden"
    assert history(client)[0]["message"] == "too late"


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"seq": 99, "message": "x"}, "unknown_message"),
        ({"seq": 0, "message": "x"}, "invalid_seq"),
        ({"seq": "1", "message": "x"}, "invalid_seq"),
        ({"seq": True, "message": "x"}, "invalid_seq"),
        ({"seq": 1, "message": "  "}, "invalid_message"),
        ({"seq": 1, "message": "x" * 2001}, "message_too_long"),
        ({"seq": 1}, "invalid_message"),
    ],
)
def test_a_bad_edit_is_refused_and_changes_nothing(ann, bob, client, fields, code):
    ann.send("lobby", "original")
    bob.received("message")

    ack = ann.call("edit_message", {"channel": "lobby", **fields})

    assert ack["code"] == code
    assert ann.received("chat_error")[0]["code"] == code
    assert bob.received("message_edited") == []
    assert history(client)[0]["message"] == "original"


@pytest.mark.parametrize(
    "app_settings",
    [{"CHAT_TOKEN_SECRET": SECRET, "CHAT_API_KEY": API_KEY, "CHAT_RATE_LIMITS": True}],
)
def test_edits_count_against_the_send_rate_limit(ann):
    seq = ann.send("lobby", "typo")["seq"]

    acks = [
        ann.call("edit_message", {"channel": "lobby", "seq": seq, "message": f"v{n}"})
        for n in range(15)
    ]

    assert "rate_limited" in [ack.get("code") for ack in acks]


# Deletes.


def test_an_author_deletes_and_history_keeps_a_tombstone(ann, bob, client):
    ann.send("lobby", "first")
    seq = ann.send("lobby", "oops")["seq"]
    bob.received("message")

    ack = ann.call("delete_message", {"channel": "lobby", "seq": seq})

    assert ack == {"ok": True, "seq": seq}
    assert bob.received("message_deleted") == [{"channel": "lobby", "seq": seq}]
    tombstone = history(client)[1]
    assert tombstone["seq"] == seq
    assert tombstone["deleted"] is True
    assert (tombstone["message"], tombstone["author"]) == ("", None)


def test_a_joiner_catches_up_with_the_current_state(ann, person):
    ann.send("lobby", "keep")
    gone = ann.send("lobby", "secret")["seq"]
    fixed = ann.send("lobby", "tpyo")["seq"]
    ann.call("delete_message", {"channel": "lobby", "seq": gone})
    ann.call("edit_message", {"channel": "lobby", "seq": fixed, "message": "typo"})

    later = person("cy")

    texts = [(m["message"], m.get("deleted", False)) for m in later.received("message")]
    assert texts == [("keep", False), ("", True), ("typo", False)]
    assert later.received("message_edited") == []


def test_a_moderator_deletes_anyones_message(ann, person):
    seq = ann.send("lobby", "spam")["seq"]
    moderator = person("mod", role="moderator")

    ack = moderator.call("delete_message", {"channel": "lobby", "seq": seq})

    assert ack["ok"] is True


def test_nobody_else_deletes_another_persons_message(ann, bob, client):
    seq = ann.send("lobby", "mine")["seq"]

    ack = bob.call("delete_message", {"channel": "lobby", "seq": seq})

    assert ack["code"] == "forbidden"
    assert history(client)[0]["message"] == "mine"


def test_a_deleted_message_cannot_be_deleted_or_edited_again(ann):
    seq = ann.send("lobby", "once")["seq"]
    ann.call("delete_message", {"channel": "lobby", "seq": seq})

    again = ann.call("delete_message", {"channel": "lobby", "seq": seq})
    edit = ann.call("edit_message", {"channel": "lobby", "seq": seq, "message": "x"})

    assert (again["code"], edit["code"]) == ("unknown_message", "unknown_message")


def test_changes_go_only_to_members_of_the_channel(ann, person):
    outsider = person("dan")
    outsider.call("leave", {"channel": "lobby"})
    seq = ann.send("lobby", "x")["seq"]

    ann.call("delete_message", {"channel": "lobby", "seq": seq})

    assert outsider.received("message_deleted") == []


# The operator API.


def operator(**headers):
    return {"X-API-Key": API_KEY, **headers}


def test_an_operator_deletes_over_http_and_the_audit_says_who(ann, bob, client):
    seq = ann.send("lobby", "spam")["seq"]

    response = client.delete(f"/api/channels/lobby/messages/{seq}", headers=operator())
    audit = client.get("/api/audit", headers=operator()).get_json()["entries"]

    assert response.status_code == 200
    assert bob.received("message_deleted") == [{"channel": "lobby", "seq": seq}]
    assert [(e["action"], e["actor"], e["seq"]) for e in audit] == [
        ("delete_message", "api-key", seq)
    ]


def test_a_moderators_token_opens_the_operator_api(ann, client):
    seq = ann.send("lobby", "spam")["seq"]
    headers = {"Authorization": f"Bearer {token('mod', role='moderator')}"}

    response = client.delete(f"/api/channels/lobby/messages/{seq}", headers=headers)
    audit = client.get("/api/audit", headers=headers).get_json()["entries"]

    assert response.status_code == 200
    assert audit[0]["actor"] == "user:mod"


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({}, 403, "forbidden"),
        ({"X-API-Key": "wrong"}, 401, "invalid_api_key"),
        ({"X-API-Key": API_KEY[:-1]}, 401, "invalid_api_key"),
        ({"Authorization": f"Bearer {token('ann')}"}, 403, "forbidden"),
    ],
)
def test_the_operator_api_refuses_everyone_else(ann, client, headers, status, code):
    seq = ann.send("lobby", "stays")["seq"]

    response = client.delete(f"/api/channels/lobby/messages/{seq}", headers=headers)

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert history(client)[0]["message"] == "stays"


@pytest.mark.parametrize(
    "app_settings",
    [{"CHAT_TOKEN_SECRET": SECRET, "CHAT_API_KEY": API_KEY, "CHAT_RATE_LIMITS": True}],
)
def test_wrong_api_keys_are_counted_and_then_refused(client):
    answers = [
        client.get("/api/audit", headers={"X-API-Key": f"guess-{n}"}).status_code
        for n in range(12)
    ]

    assert answers[:10] == [401] * 10
    assert answers[10:] == [429, 429]


@pytest.mark.parametrize("app_settings", [{"CHAT_TOKEN_SECRET": SECRET}])
def test_without_an_api_key_the_operator_api_is_off(client):
    headers = {"Authorization": f"Bearer {token('mod', role='moderator')}"}

    response = client.get("/api/audit", headers=headers)

    assert response.status_code == 404


def test_deleting_what_does_not_exist_is_404(client):
    response = client.delete("/api/channels/lobby/messages/7", headers=operator())

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_message"


# Order: a change never overtakes its message, and none is lost.


def test_a_change_waits_for_its_message_on_a_process_behind(app, ann, bob, services):
    """The message reaches this process late (Redis lost it, the repair is
    under way) while its delete arrives: the delete follows the message."""
    posting = services.messages
    publish, posting.publish = posting.publish, lambda message: None
    seq = ann.send("lobby", "late")["seq"]
    posting.publish = publish
    ann.call("delete_message", {"channel": "lobby", "seq": seq})
    assert bob.received("message_deleted") == []

    socketio.server.manager.check()  # the repair reads it from the database

    # Read then, the message is already a tombstone; the delete follows it.
    (message,) = bob.received("message")
    assert message["deleted"] is True
    assert bob.received("message_deleted") == [{"channel": "lobby", "seq": seq}]


def test_a_change_lost_on_the_way_is_repaired_from_the_database(ann, bob, services):
    seq = ann.send("lobby", "tpyo")["seq"]
    bob.received("message")
    moderation = services.moderation
    publish, moderation.publish_change = moderation.publish_change, lambda c: None
    ann.call("edit_message", {"channel": "lobby", "seq": seq, "message": "typo"})
    moderation.publish_change = publish

    socketio.server.manager.check()

    (edited,) = bob.received("message_edited")
    assert (edited["seq"], edited["message"]) == (seq, "typo")
