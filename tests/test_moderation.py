"""Moderation (app.chat.moderation) through the test client and the
operator API: edits and deletes (who may, what members get, what history
serves afterwards), bans, disconnects, slow mode, presence, the CLI."""

import time

import pytest
import requests
import socketio as socketio_client
from tokens import SECRET, bearer, token

from app.extensions import socketio

API_KEY = "k" * 40


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
        ("a person's token", 403, "forbidden"),
    ],
)
def test_the_operator_api_refuses_everyone_else(ann, client, headers, status, code):
    if headers == "a person's token":  # made now: one made at collection expires
        headers = bearer("ann")
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
    # Then even the right key waits: a guess that hits is not told so.
    assert client.get("/api/audit", headers={"X-API-Key": API_KEY}).status_code == 429


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


# Bans and disconnects.


def test_a_ban_closes_the_persons_connections_and_keeps_them_out(
    ann, person, connect, client
):
    other_tab = person("ann", name="Ann")

    response = client.post(
        "/api/users/ann/ban", json={"seconds": 60, "reason": "spam"}, headers=operator()
    )
    again = connect(auth={"token": token("ann")})
    posted = client.post(
        "/api/channels/lobby/messages",
        json={"message": "let me back"},
        headers={"Authorization": f"Bearer {token('ann')}"},
    )

    assert response.status_code == 200
    assert response.get_json()["reason"] == "spam"
    assert not ann.client.is_connected()
    assert not other_tab.client.is_connected()
    assert not again.client.is_connected()
    assert posted.status_code == 403
    assert posted.get_json()["error"]["code"] == "banned"
    assert "spam" in posted.get_json()["error"]["message"]


def test_a_ban_leaves_everyone_else_be(ann, bob, client):
    client.post("/api/users/ann/ban", json={}, headers=operator())

    assert bob.client.is_connected()
    assert bob.send("lobby", "still here")["ok"] is True


def test_an_unbanned_person_comes_back(ann, client, connect):
    client.post("/api/users/ann/ban", json={"seconds": 60}, headers=operator())

    response = client.delete("/api/users/ann/ban", headers=operator())
    back = connect(auth={"token": token("ann")})

    assert response.status_code == 200
    assert back.client.is_connected()


def test_a_ban_that_did_not_reach_a_process_is_found_in_the_database(
    app, ann, services, client
):
    bans = services.bans
    command, bans.command = bans.command, lambda command: None  # Redis lost it
    client.post("/api/users/ann/ban", json={"seconds": 60}, headers=operator())
    bans.command = command
    assert ann.client.is_connected()

    with app.app_context():
        services.membership.sweep()

    assert not ann.client.is_connected()


def test_an_ended_ban_lets_the_person_in(app, ann, services, connect):
    with app.app_context():
        services.bans.ban("test", "ann", seconds=1)
    time.sleep(1.1)

    assert connect(auth={"token": token("ann")}).client.is_connected()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"seconds": 10**12}, "invalid_seconds"),
        ({"seconds": 0}, "invalid_seconds"),
        ({"seconds": "60"}, "invalid_seconds"),
        ({"reason": "x" * 501}, "invalid_reason"),
        ({"reason": 42}, "invalid_reason"),
    ],
)
def test_a_bad_ban_is_refused_and_bans_nobody(ann, client, body, code):
    response = client.post("/api/users/ann/ban", json=body, headers=operator())

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert ann.client.is_connected()


def test_unbanning_nobody_is_404(client):
    response = client.delete("/api/users/nobody/ban", headers=operator())

    assert response.status_code == 404


def test_disconnect_closes_a_persons_connections_who_may_come_back(
    ann, bob, client, connect
):
    response = client.post("/api/users/ann/disconnect", headers=operator())

    assert response.status_code == 200
    assert not ann.client.is_connected()
    assert bob.client.is_connected()
    assert connect(auth={"token": token("ann")}).client.is_connected()


def test_the_audit_log_says_who_banned_whom(ann, client):
    client.post("/api/users/ann/ban", json={"reason": "spam"}, headers=operator())
    client.delete("/api/users/ann/ban", headers=operator())

    entries = client.get("/api/audit", headers=operator()).get_json()["entries"]

    assert [(e["action"], e["actor"], e["user_id"]) for e in entries] == [
        ("unban", "api-key", "ann"),
        ("ban", "api-key", "ann"),
    ]


# Slow mode.


def slow_mode(client, seconds, channel="lobby"):
    return client.put(
        f"/api/channels/{channel}/settings",
        json={"slow_mode": seconds},
        headers=operator(),
    )


def test_slow_mode_lets_one_message_through_per_interval(ann, bob, client):
    assert slow_mode(client, 30).get_json() == {"channel": "lobby", "slow_mode": 30}

    first = ann.send("lobby", "one")
    second = ann.send("lobby", "two")
    other = bob.send("lobby", "mine")

    assert first["ok"] is True
    assert second["code"] == "slow_mode"
    assert 1 <= second["retry_after"] <= 30
    assert other["ok"] is True
    assert [m["message"] for m in history(client)] == ["one", "mine"]


def test_moderators_are_not_slowed(person, client):
    moderator = person("mod", role="moderator")
    slow_mode(client, 30)

    acks = [moderator.send("lobby", f"m{n}") for n in range(3)]

    assert all(ack["ok"] for ack in acks)


def test_slow_mode_off_again(ann, client):
    slow_mode(client, 30)
    ann.send("lobby", "one")

    slow_mode(client, 0)

    assert ann.send("lobby", "two")["ok"] is True


def test_the_join_ack_carries_the_slow_mode(client, connect):
    slow_mode(client, 15)
    member = connect(auth={"token": token("cy")})

    assert member.join("lobby")["slow_mode"] == 15


@pytest.mark.parametrize("seconds", [-1, 10**9, "5", None, 1.5])
def test_a_bad_slow_mode_is_refused(client, seconds):
    response = slow_mode(client, seconds)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_slow_mode"


def test_slow_mode_applies_to_http_posts_too(client):
    slow_mode(client, 30)
    headers = {"Authorization": f"Bearer {token('ann')}"}

    first = client.post(
        "/api/channels/lobby/messages", json={"message": "a"}, headers=headers
    )
    second = client.post(
        "/api/channels/lobby/messages", json={"message": "b"}, headers=headers
    )

    assert first.status_code == 201
    assert second.status_code == 429
    assert second.headers["Retry-After"]


# Who is here.


def test_presence_lists_names_and_user_ids(ann, person, connect, client):
    person("ann", name="Ann")  # a second tab: one person
    guest = connect(auth={"name": "Ann"})
    guest.join("lobby")

    roster = client.get("/api/channels/lobby/presence", headers=operator()).get_json()

    assert roster == {
        "channel": "lobby",
        "count": 2,
        "members": [
            {"name": "Ann", "user_id": None},
            {"name": "Ann", "user_id": "ann"},
        ],
    }


# The CLI, for an operator at a shell.


def run(app, *args):
    return app.test_cli_runner().invoke(args=["chat", *args])


def test_flask_chat_ban_and_unban(app, ann, connect):
    banned = run(app, "ban", "ann", "--seconds", "60", "--reason", "spam")
    refused = connect(auth={"token": token("ann")})
    unbanned = run(app, "unban", "ann")

    assert banned.exit_code == 0, banned.output
    assert "banned ann until" in banned.output
    assert not ann.client.is_connected()
    assert not refused.client.is_connected()
    assert unbanned.exit_code == 0
    assert connect(auth={"token": token("ann")}).client.is_connected()


def test_flask_chat_delete(app, ann, bob):
    seq = ann.send("lobby", "spam")["seq"]

    result = run(app, "delete", "lobby", str(seq))

    assert result.exit_code == 0, result.output
    assert bob.received("message_deleted") == [{"channel": "lobby", "seq": seq}]


def test_flask_chat_slow_mode(app, ann):
    result = run(app, "slow-mode", "lobby", "30")

    assert result.exit_code == 0, result.output
    ann.send("lobby", "one")
    assert ann.send("lobby", "two")["code"] == "slow_mode"


@pytest.mark.parametrize(
    "args, says",
    [
        (("ban", "ann", "--seconds", str(10**12)), "invalid_seconds"),
        (("slow-mode", "lobby", "--", "-1"), "invalid_slow_mode"),
        (("delete", "lobby", "99"), "unknown_message"),
        (("unban", "nobody"), "not banned"),
    ],
)
def test_the_cli_refuses_bad_input_without_a_traceback(app, args, says):
    result = run(app, *args)

    assert result.exit_code != 0
    assert says in result.output
    assert "Traceback" not in result.output


def test_a_retry_of_a_deleted_message_is_answered_with_its_tombstone(ann, client):
    headers = {"Authorization": f"Bearer {token('ann')}"}
    body = {"message": "oops", "client_id": "c-1"}
    seq = client.post("/api/channels/lobby/messages", json=body, headers=headers)
    ann.call("delete_message", {"channel": "lobby", "seq": seq.get_json()["seq"]})

    retry = client.post("/api/channels/lobby/messages", json=body, headers=headers)

    assert retry.get_json()["deleted"] is True
    assert retry.get_json()["message"] == ""


def test_a_banned_persons_connect_error_says_until_when_and_why(start_thread_server):
    server = start_thread_server(CHAT_TOKEN_SECRET=SECRET, CHAT_API_KEY=API_KEY)
    ban = requests.post(
        f"{server.url}/api/users/ann/ban",
        json={"seconds": 60, "reason": "spam"},
        headers=operator(),
        timeout=10,
    ).json()
    client = socketio_client.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append)

    with pytest.raises(socketio_client.exceptions.ConnectionError):
        client.connect(
            server.url, auth={"token": token("ann")}, transports=["websocket"]
        )

    refusal = refusals[0]["data"]
    assert (refusal["code"], refusal["reason"]) == ("banned", "spam")
    assert refusal["until"] == ban["until"]


def test_a_rejoin_gets_the_changes_it_missed_while_away(ann, person):
    bob = person("bob")
    first = ann.send("lobby", "tpyo")["seq"]
    second = ann.send("lobby", "oops")["seq"]
    before = bob.call("join", {"channel": "lobby"})  # as at its last connect
    bob.call("leave", {"channel": "lobby"})
    ann.call("edit_message", {"channel": "lobby", "seq": first, "message": "typo"})
    ann.call("delete_message", {"channel": "lobby", "seq": second})
    bob.drain()

    again = bob.join("lobby", since=second, changes_since=before["last_change"])

    assert again["last_change"] == before["last_change"] + 2
    assert bob.received("message") == []
    assert [e["seq"] for e in bob.received("message_edited")] == [first]
    assert bob.received("message_deleted") == [{"channel": "lobby", "seq": second}]


def test_a_bad_changes_since_is_refused(ann):
    ack = ann.call("join", {"channel": "lobby", "since": 0, "changes_since": -1})

    assert ack["code"] == "invalid_changes_since"
