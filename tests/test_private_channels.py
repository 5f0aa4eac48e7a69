"""Private channels (`$` names) and the HTTP API's bearer tokens: only a
token that grants a private channel enters it, reads it or posts to it, and
nobody else learns anything of it."""

import pytest
from tokens import SECRET, bearer, token


@pytest.fixture
def app_settings():
    return {"CHAT_TOKEN_SECRET": SECRET}


@pytest.fixture
def team_history(verified):
    """`$team` with one message in it, posted by a member with access."""
    insider = verified("insider", channels=["$team"])
    insider.join("$team")
    insider.send("$team", "the plan")
    return insider


# Socket.IO.


@pytest.mark.parametrize(
    "grants",
    [["$team"], ["team"], ["$te*"], ["*"]],
    ids=["name", "bare", "prefix", "all"],
)
def test_a_granted_token_joins_and_reads_a_private_channel(
    team_history, verified, grants
):
    member = verified("bob", channels=grants)

    joined = member.join("$team")

    assert joined["last_seq"] == 1
    assert [m["message"] for m in member.received("message")] == ["the plan"]


@pytest.mark.parametrize(
    "grants",
    [None, [], ["$other", "$tea"]],
    ids=["a guest", "no grants", "other grants"],
)
def test_anyone_else_is_forbidden_and_learns_nothing(team_history, connect, grants):
    if grants is None:
        outsider = connect(auth={"name": "guest"})
    else:
        outsider = connect(auth={"token": token("bob", channels=grants)})

    ack = outsider.call("join", {"channel": "$team", "since": 0})

    assert ack == {
        "ok": False,
        "code": "forbidden",
        "message": "$team is a private channel: your token does not grant it",
    }
    assert outsider.received("message") == []
    assert outsider.received("presence") == []


def test_a_private_channel_that_does_not_exist_is_refused_alike(verified):
    ack = verified("bob").call("join", {"channel": "$nobody-here"})

    assert ack["code"] == "forbidden"


def test_an_outsider_cannot_post_to_a_private_channel(team_history, verified):
    outsider = verified("bob")

    ack = outsider.send("$team", "let me in")

    assert ack["code"] == "not_joined"


def test_a_refresh_with_fewer_channels_leaves_them(team_history, verified):
    member = verified("bob", channels=["$team", "$ops"])
    member.join("$team")
    member.join("$ops")
    member.join("lobby")

    ack = member.call("refresh", {"token": token("bob", channels=["$ops"])})
    team_history.send("$team", "after the refresh")

    assert ack["left"] == ["$team"]
    assert [m["message"] for m in member.received("message")] == ["the plan"]
    assert member.send("$team", "still here?")["code"] == "not_joined"
    assert member.send("$ops", "ops is fine")["ok"] is True


# HTTP.


def test_the_api_reads_a_private_channel_with_a_granted_token(team_history, client):
    response = client.get(
        "/api/channels/$team/messages", headers=bearer(channels=["$team"])
    )

    assert response.status_code == 200
    assert [m["message"] for m in response.get_json()["messages"]] == ["the plan"]


@pytest.mark.parametrize("with_token", [False, True], ids=["a guest", "no grants"])
def test_the_api_forbids_a_private_channel_to_anyone_else(
    team_history, client, with_token
):
    headers = bearer() if with_token else {}
    read = client.get("/api/channels/$team/messages", headers=headers)
    unknown = client.get("/api/channels/$nobody/messages", headers=headers)
    posted = client.post(
        "/api/channels/$team/messages", json={"message": "hi"}, headers=headers
    )

    assert [read.status_code, unknown.status_code, posted.status_code] == [403] * 3
    # Nothing tells a channel with messages from one that does not exist.
    refusals = [read.get_json()["error"], unknown.get_json()["error"]]
    assert refusals[0] == {
        "code": "forbidden",
        "message": refusals[1]["message"].replace("$nobody", "$team"),
    }


def test_the_api_posts_as_the_verified_person(client):
    response = client.post(
        "/api/channels/$team/messages",
        json={"message": "from the API"},
        headers=bearer(sub="u-7", name="Ann", channels=["$team"]),
    )

    stored = response.get_json()
    assert response.status_code == 201
    assert (stored["author"], stored["user_id"]) == ("Ann", "u-7")


def test_the_api_refuses_another_author_for_a_verified_person(client):
    response = client.post(
        "/api/channels/lobby/messages",
        json={"message": "hi", "author": "Bob"},
        headers=bearer(name="Ann"),
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "authorization, code",
    [
        ("Bearer not-a-token", "invalid_token"),
        ("Basic YW5uOnB3", "invalid_token"),
        (f"Bearer {token(ttl=-60)}", "token_expired"),
    ],
)
def test_the_api_refuses_a_bad_bearer_token(client, authorization, code):
    response = client.get("/api/channels", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == code


def test_private_channels_are_never_listed(team_history, verified, client):
    public = verified("bob")
    public.join("lobby")
    public.send("lobby", "hello")

    listed = client.get("/api/channels", headers=bearer(channels=["$team"]))
    home = client.get("/")

    assert [c["name"] for c in listed.get_json()["channels"]] == ["lobby"]
    assert "$team" not in home.get_data(as_text=True)


def test_the_documents_action_forbids_a_private_channel(client):
    refused = client.post(
        "/websocket_handler", data={"channel": "$team", "message": "x"}
    )
    granted = client.post(
        "/websocket_handler",
        data={"channel": "$team", "message": "x"},
        headers=bearer(channels=["$team"]),
    )

    assert refused.status_code == 403
    assert granted.get_data(as_text=True) == "Success"


# CHAT_AUTH=required.


@pytest.mark.parametrize(
    "app_settings", [{"CHAT_TOKEN_SECRET": SECRET, "CHAT_AUTH": "required"}]
)
@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/channels"),
        ("get", "/api/channels/lobby/messages"),
        ("post", "/api/channels/lobby/messages"),
        ("post", "/websocket_handler?channel=lobby&message=hi"),
        ("get", "/websocket_handler?channel=lobby"),
    ],
)
def test_required_auth_refuses_every_call_without_a_token(client, method, url):
    anonymous = getattr(client, method)(url, json={"message": "hi"})
    verified = getattr(client, method)(url, json={"message": "hi"}, headers=bearer())

    assert anonymous.status_code == 401
    assert verified.status_code in (200, 201, 404)


@pytest.mark.parametrize(
    "app_settings", [{"CHAT_TOKEN_SECRET": SECRET, "CHAT_AUTH": "required"}]
)
def test_required_auth_leaves_the_health_check_open(client):
    assert client.get("/healthz").status_code == 200
