"""Nothing a client sends is unbounded: rate limits, caps, numbers, depth,
and a channel list served a page at a time."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.wire.packets import TolerantJSON

NO_LIMITS = {
    f"CHAT_RATE_{action}{scope}": "off"
    for action in ("SEND", "JOIN", "TYPING", "NEW_CHANNEL")
    for scope in ("", "_PER_ADDRESS")
}


def limited(**limits):
    """Settings with rate limits on: only the given ones."""
    return {"CHAT_RATE_LIMITS": True, **NO_LIMITS, **limits}


def post(client, channel, message="hi"):
    return client.post(f"/api/channels/{channel}/messages", json={"message": message})


# Rate limits.


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_SEND="3/minute")], indirect=True
)
def test_a_connection_sending_too_fast_is_refused_with_retry_after(client, member):
    member.join("lobby")

    acks = [member.send("lobby", f"m{number}") for number in range(4)]

    assert [ack["ok"] for ack in acks] == [True, True, True, False]
    assert acks[3]["code"] == "rate_limited"
    assert 1 <= acks[3]["retry_after"] <= 60
    (error,) = member.received("chat_error")
    assert (error["event"], error["code"]) == ("send_message", "rate_limited")
    assert error["retry_after"] == acks[3]["retry_after"]
    stored = client.get("/api/channels/lobby/messages").get_json()["messages"]
    assert len(stored) == 3


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_SEND_PER_ADDRESS="3/minute")], indirect=True
)
def test_the_address_limit_counts_every_connection_of_the_address(connect):
    first, second = connect(), connect()
    first.join("lobby")
    second.join("lobby")

    acks = [tab.send("lobby", "hi") for tab in (first, second, first, second)]

    assert [ack["ok"] for ack in acks] == [True, True, True, False]


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_SEND_PER_ADDRESS="2/minute")], indirect=True
)
def test_http_posts_too_fast_are_answered_429_with_retry_after(client):
    statuses = [post(client, "lobby").status_code for _ in range(3)]
    refused = post(client, "lobby")

    assert statuses == [201, 201, 429]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_JOIN="2/minute")], indirect=True
)
def test_joins_too_fast_are_refused_and_leave_the_socket_outside(member):
    member.join("a")
    member.join("b")

    refused = member.call("join", {"channel": "c"})
    sent = member.send("c", "hello?")

    assert refused["code"] == "rate_limited"
    assert sent["code"] == "not_joined"


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_TYPING="2/minute")], indirect=True
)
def test_typing_too_fast_is_refused(member):
    member.join("lobby")

    acks = [member.call("typing", {"channel": "lobby"}) for _ in range(3)]

    assert [ack["ok"] for ack in acks] == [True, True, False]
    assert acks[2]["code"] == "rate_limited"


@pytest.mark.parametrize(
    "app_settings",
    [limited(CHAT_RATE_NEW_CHANNEL_PER_ADDRESS="2/minute")],
    indirect=True,
)
def test_opening_channels_too_fast_is_refused_but_old_ones_stay_open(client):
    opened = [post(client, name).status_code for name in ("a", "b", "c")]
    again = post(client, "a")

    assert opened == [201, 201, 429]
    assert again.status_code == 201
    assert client.get("/api/channels/c/messages").status_code == 404


def test_limits_are_off_in_tests_unless_turned_on(client, member):
    member.join("lobby")

    acks = [member.send("lobby", f"m{number}") for number in range(30)]

    assert all(ack["ok"] for ack in acks)


# Caps and bounds.


@pytest.mark.parametrize(
    "app_settings", [{"CHAT_MAX_CHANNELS_PER_CONNECTION": 2}], indirect=True
)
def test_a_connection_may_be_in_only_so_many_channels(member):
    member.join("a")
    member.join("b")

    refused = member.call("join", {"channel": "c"})
    member.call("leave", {"channel": "a"})
    after_leaving = member.call("join", {"channel": "c"})

    assert refused["code"] == "too_many_channels"
    assert after_leaving["ok"] is True
    assert member.join("b")["ok"] is True  # joining again is not one more


@pytest.mark.parametrize("since", [10**23, 2**31, -1, 1.5, "7"])
def test_join_since_out_of_range_is_refused_and_leaves_no_room(member, since):
    refused = member.call("join", {"channel": "lobby", "since": since})

    assert refused["code"] == "invalid_since"
    assert member.send("lobby", "hello?")["code"] == "not_joined"


@pytest.mark.parametrize("since", ["100000000000000000000000", "2147483648", "-1"])
def test_http_since_out_of_range_is_400(client, since):
    post(client, "lobby")

    response = client.get(f"/api/channels/lobby/messages?since={since}")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_since"


def test_json_nested_too_deeply_is_bad_json_without_a_traceback(client, caplog):
    caplog.set_level(logging.INFO)
    body = "[" * 20000 + "]" * 20000

    response = client.post(
        "/api/channels/lobby/messages",
        data=body,
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert "Traceback" not in caplog.text


# The channel list, a page at a time.


def add_channels(app, count):
    """`count` channels with one message each, a second apart, straight into
    the database (as if posted over hours)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "name": f"c{number:06d}",
            "last_seq": 1,
            "message_count": 1,
            "last_message_at": start + timedelta(seconds=number),
        }
        for number in range(count)
    ]
    with app.app_context():
        db.session.execute(db.insert(db.metadata.tables["channels"]), rows)
        db.session.commit()


def page(client, query=""):
    response = client.get(f"/api/channels{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_channel_list_comes_a_page_at_a_time(app, client):
    add_channels(app, 120)

    pages = [page(client)]
    while pages[-1]["next_before"]:
        pages.append(page(client, f"?before={pages[-1]['next_before']}"))

    names = [channel["name"] for body in pages for channel in body["channels"]]
    assert [len(body["channels"]) for body in pages] == [50, 50, 20]
    assert names == [f"c{number:06d}" for number in reversed(range(120))]


def test_a_page_holds_at_most_limit_channels(app, client):
    add_channels(app, 10)

    body = page(client, "?limit=3")

    assert [c["name"] for c in body["channels"]] == ["c000009", "c000008", "c000007"]
    assert body["next_before"]


def test_a_hundred_thousand_channels_list_one_page(app, client):
    add_channels(app, 100_000)

    body = page(client)

    assert len(body["channels"]) == 50
    assert body["channels"][0]["name"] == "c099999"


@pytest.mark.parametrize(
    "query, code",
    [
        ("?limit=0", "invalid_limit"),
        ("?limit=201", "invalid_limit"),
        ("?limit=ten", "invalid_limit"),
        ("?before=not-a-page", "invalid_before"),
        ("?before=" + "x" * 300, "invalid_before"),
    ],
)
def test_a_bad_page_request_is_400(client, query, code):
    response = client.get(f"/api/channels{query}")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize(
    "app_settings", [limited(CHAT_RATE_SEND="2/second")], indirect=True
)
def test_a_connection_may_send_again_once_its_window_has_passed(member):
    member.join("lobby")
    sent = [member.send("lobby", "hi")["ok"] for _ in range(3)]

    time.sleep(1.05)

    assert sent == [True, True, False]
    assert member.send("lobby", "hi again")["ok"] is True


# Socket.IO's JSON (app.wire.packets.TolerantJSON): orjson, writing and
# reading exactly what the json module did.

SAMPLES = [
    ["message", {"id": 1, "message": "plain", "author": None, "ok": True}],
    ["message", {"message": "안녕 😀 é", "x": 1.5}],
    {"1": [2**70, -(2**63)]},
    ["line\u2028separator", "\ud800"],
]


@pytest.mark.parametrize("data", SAMPLES)
def test_socketio_json_writes_what_the_json_module_wrote(data):
    assert TolerantJSON.dumps(data) == json.dumps(data, separators=(",", ":"))


@pytest.mark.parametrize(
    "text", ["[1e400, 123456789012345678901234567890]", "[NaN]", '["\\ud800"]']
)
def test_socketio_json_reads_what_the_json_module_read(text):
    assert repr(TolerantJSON.loads(text)) == repr(json.loads(text))


def test_socketio_json_nested_too_deeply_is_a_value_error():
    with pytest.raises(ValueError):
        TolerantJSON.loads("[" * 100_000)
