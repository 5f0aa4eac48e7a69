"""Exactly-once sends: a retry with the same client_id stores nothing new."""

from datetime import UTC, datetime, timedelta

import pytest

from app.chat import storage
from app.extensions import db
from app.chat.models import Receipt


def send(member, channel, message, client_id):
    return member.call(
        "send_message", {"channel": channel, "message": message, "client_id": client_id}
    )


def stored_texts(client, channel="lobby"):
    response = client.get(f"/api/channels/{channel}/messages")
    if response.status_code == 404:  # nothing was ever stored there
        return []
    return [m["message"] for m in response.get_json()["messages"]]


def test_a_retry_is_acked_with_the_original_id_and_seq(member):
    member.join("lobby")

    first = send(member, "lobby", "hello", "c-1")
    retry = send(member, "lobby", "hello", "c-1")

    assert retry == first == {"ok": True, "id": first["id"], "seq": 1}


def test_a_retry_stores_and_broadcasts_nothing_new(client, connect):
    sender, listener = connect(), connect()
    sender.join("lobby")
    listener.join("lobby")

    for _ in range(3):
        send(sender, "lobby", "hello", "c-1")

    assert stored_texts(client) == ["hello"]
    assert [m["seq"] for m in listener.received("message")] == [1]


def test_messages_carry_their_client_id(connect):
    sender, listener = connect(), connect()
    sender.join("lobby")
    listener.join("lobby")

    send(sender, "lobby", "hello", "c-1")
    sender.send("lobby", "no id")

    received = listener.received("message")
    assert [m["client_id"] for m in received] == ["c-1", None]


def test_history_carries_the_client_id(connect):
    sender = connect()
    sender.join("lobby")
    send(sender, "lobby", "hello", "c-1")

    newcomer = connect()
    newcomer.join("lobby")

    assert [m["client_id"] for m in newcomer.received("message")] == ["c-1"]


def test_the_same_client_id_in_another_channel_is_another_message(member):
    member.join("a")
    member.join("b")

    in_a = send(member, "a", "hello", "c-1")
    in_b = send(member, "b", "hello", "c-1")

    assert in_a["id"] != in_b["id"]
    assert (in_a["seq"], in_b["seq"]) == (1, 1)


def test_a_retry_is_recognised_after_its_message_was_pruned(client, member):
    member.join("lobby")
    first = send(member, "lobby", "first", "c-first")
    for number in range(15):
        member.send("lobby", f"filler {number}")

    retry = send(member, "lobby", "first", "c-first")

    assert retry == first
    assert "first" not in stored_texts(client)


@pytest.mark.parametrize("client_id", ["", "x" * 65, 7, ["c"], "bad\x00id"])
def test_an_invalid_client_id_is_refused(client, member, client_id):
    member.join("lobby")

    ack = send(member, "lobby", "hello", client_id)

    assert ack["ok"] is False
    assert ack["code"] == "invalid_client_id"
    assert stored_texts(client) == []


def test_an_http_retry_answers_with_the_original_message(client):
    body = {"message": "hello", "author": "kim", "client_id": "c-1"}

    first = client.post("/api/channels/lobby/messages", json=body)
    retry = client.post("/api/channels/lobby/messages", json=body)

    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert first.get_json()["client_id"] == "c-1"
    assert stored_texts(client) == ["hello"]


def test_retries_in_one_batch_store_one_message(app, broadcasts):
    drafts = [storage.Draft("lobby", "hello", None, "c-1") for _ in range(3)]

    with app.app_context():
        answers = storage.write_messages(drafts, 10, broadcasts.append)

    assert [answer["seq"] for answer in answers] == [1, 1, 1]
    assert len(broadcasts) == 1


def test_receipts_are_forgotten_after_the_retry_window(app, member):
    member.join("lobby")
    send(member, "lobby", "old", "c-old")
    send(member, "lobby", "new", "c-new")
    with app.app_context():
        old = db.session.scalars(
            db.select(Receipt).where(Receipt.client_id == "c-old")
        ).one()
        old.created_at = datetime.now(UTC) - timedelta(hours=25)
        db.session.commit()

        forgotten = app.extensions["chat"].messages.forget_receipts()

    assert forgotten == 1
    assert send(member, "lobby", "old", "c-old")["seq"] == 3
    assert send(member, "lobby", "new", "c-new")["seq"] == 2


def test_receipts_are_forgotten_in_batches(app, member):
    member.join("lobby")
    for number in range(5):
        send(member, "lobby", f"message {number}", f"c-{number}")
    with app.app_context():
        for receipt in db.session.scalars(db.select(Receipt)):
            receipt.created_at = datetime.now(UTC) - timedelta(hours=25)
        db.session.commit()

        forgotten = storage.forget_receipts(24, batch=2)

        assert forgotten == 5
        assert db.session.scalars(db.select(Receipt)).all() == []
