"""The HTTP API, through the Flask test client."""

import pytest


def post(client, channel, body):
    return client.post(f"/api/channels/{channel}/messages", json=body)


def test_post_stores_a_message_and_answers_201(client):
    response = post(client, "lobby", {"message": "hello", "author": "kim"})

    assert response.status_code == 201
    body = response.get_json()
    assert body["seq"] == 1
    assert body["channel"] == "lobby"
    assert body["message"] == "hello"
    assert body["author"] == "kim"
    assert body["created_at"].endswith("Z")
    assert isinstance(body["id"], int)


def test_post_without_author_is_anonymous(client):
    assert post(client, "lobby", {"message": "hi"}).get_json()["author"] is None


def test_post_is_broadcast_to_socket_members(client, member):
    member.join("lobby")

    post(client, "lobby", {"message": "from curl"})

    assert [m["message"] for m in member.received("message")] == ["from curl"]


def test_read_messages_oldest_first(client):
    for text in ["one", "two", "three"]:
        post(client, "lobby", {"message": text})

    response = client.get("/api/channels/lobby/messages")

    assert response.status_code == 200
    body = response.get_json()
    assert body["channel"] == "lobby"
    assert [m["message"] for m in body["messages"]] == ["one", "two", "three"]


def test_read_messages_since(client):
    for text in ["one", "two", "three"]:
        post(client, "lobby", {"message": text})

    body = client.get("/api/channels/lobby/messages?since=2").get_json()

    assert [m["seq"] for m in body["messages"]] == [3]


def test_read_messages_keeps_only_the_newest(client):
    for number in range(12):
        post(client, "lobby", {"message": f"m{number}"})

    body = client.get("/api/channels/lobby/messages").get_json()

    assert [m["seq"] for m in body["messages"]] == list(range(3, 13))


def test_korean_channel_in_the_url(client):
    post(client, "한국어", {"message": "안녕"})

    body = client.get("/api/channels/한국어/messages").get_json()

    assert body["messages"][0]["message"] == "안녕"


def test_list_channels_with_counts(client):
    for number in range(12):
        post(client, "busy", {"message": f"m{number}"})
    post(client, "quiet", {"message": "hi"})

    body = client.get("/api/channels").get_json()

    by_name = {channel["name"]: channel for channel in body["channels"]}
    assert by_name["busy"]["message_count"] == 10
    assert by_name["busy"]["last_seq"] == 12
    assert by_name["quiet"]["message_count"] == 1
    assert by_name["quiet"]["last_message_at"].endswith("Z")
    assert body["channels"][0]["name"] == "quiet"  # most recently active first


def test_list_channels_when_there_are_none(client):
    assert client.get("/api/channels").get_json() == {
        "channels": [],
        "next_before": None,
    }


def test_json_keeps_korean_readable(client):
    response = post(client, "lobby", {"message": "안녕"})

    assert "안녕" in response.get_data(as_text=True)


# Bad input: a JSON error with a 4xx status, and nothing stored.


@pytest.mark.parametrize(
    "body, code",
    [
        ({}, "invalid_message"),
        ({"message": ""}, "invalid_message"),
        ({"message": 12}, "invalid_message"),
        ({"message": "x" * 2001}, "message_too_long"),
        ({"message": "hi", "author": 3}, "invalid_name"),
        ({"message": "hi", "author": "x" * 33}, "invalid_name"),
        ({"message": "hi", "author": "a\nb"}, "invalid_name"),
        (["hi"], "invalid_payload"),
        ("hi", "invalid_payload"),
    ],
)
def test_bad_post_is_refused_and_stores_nothing(client, body, code):
    response = post(client, "lobby", body)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]
    assert client.get("/api/channels").get_json() == {
        "channels": [],
        "next_before": None,
    }


def test_broken_json_is_refused(client):
    response = client.post(
        "/api/channels/lobby/messages",
        data='{"message": "hi"',
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_oversized_body_is_refused(client):
    response = post(client, "lobby", {"message": "x" * 100_000})

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def test_invalid_channel_name_is_refused(client):
    response = post(client, "not a name", {"message": "hi"})

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_channel"


def test_unknown_channel_is_404(client):
    response = client.get("/api/channels/nobody-here/messages")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_channel"


@pytest.mark.parametrize("since", ["-1", "abc", "1.5", "٣"])
def test_invalid_since_is_refused(client, since):
    post(client, "lobby", {"message": "hi"})

    response = client.get(f"/api/channels/lobby/messages?since={since}")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_since"


def test_unknown_route_is_a_json_404(client):
    response = client.get("/api/nothing")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(client):
    response = client.delete("/api/channels/lobby/messages")

    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


# The document's HTTP action.


def test_websocket_handler_without_channel(client):
    response = client.get("/websocket_handler")

    assert response.status_code == 400
    assert response.get_data(as_text=True) == "Channel not specified"


def test_websocket_handler_stores_and_broadcasts(client, member):
    member.join("lobby")

    response = client.post(
        "/websocket_handler", data={"channel": "lobby", "message": "hello"}
    )

    assert response.get_data(as_text=True) == "Success"
    assert [m["message"] for m in member.received("message")] == ["hello"]


def test_websocket_handler_without_message_stores_nothing(client):
    response = client.get("/websocket_handler?channel=lobby")

    assert response.get_data(as_text=True) == "Success"
    assert client.get("/api/channels").get_json() == {
        "channels": [],
        "next_before": None,
    }


def test_websocket_handler_refuses_bad_channel(client):
    response = client.get("/websocket_handler?channel=a%20b&message=hi")

    assert response.status_code == 400
    assert "channel" in response.get_data(as_text=True)


# Health.


def test_healthz_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "off"}


@pytest.fixture
def offline_client(make_app):
    """An app whose database cannot be opened."""
    app = make_app(SQLALCHEMY_DATABASE_URI="sqlite:////nonexistent/chat.db")
    return app.test_client()


def test_healthz_when_the_database_does_not_answer(offline_client):
    response = offline_client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "database": "unavailable",
        "redis": "off",
    }


def test_posting_without_a_database_is_unavailable(offline_client, caplog):
    response = post(offline_client, "lobby", {"message": "hi"})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert "Traceback" not in caplog.text
