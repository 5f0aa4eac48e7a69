"""Moderation across a deployment: two `make serve` processes on one
PostgreSQL database and a Redis of the test's own."""

import threading
import time
import uuid

import pytest
import requests
import socketio
from tokens import SECRET, token

pytestmark = pytest.mark.server

API_KEY = "k" * 40
OPERATOR = {"X-API-Key": API_KEY}


@pytest.fixture
def cluster(redis_server, start_server, postgres_url):
    """Two production processes sharing PostgreSQL and the test's Redis."""
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_server.url,
        "REDIS_CHANNEL": f"chat-moderation-{uuid.uuid4().hex[:12]}",
        "CHAT_TOKEN_SECRET": SECRET,
        "CHAT_API_KEY": API_KEY,
    }
    return [start_server(production=True, **env) for _ in range(2)]


class Person:
    """A page of a verified person: every event it gets, in arrival order."""

    def __init__(self, server, sub, **claims):
        self.events = []
        self.arrived = threading.Condition()
        self.refusal = None
        self.client = socketio.Client(reconnection=False)
        for event in ("message", "message_edited", "message_deleted", "chat_error"):
            self.client.on(event, lambda data, event=event: self._record(event, data))
        self.client.on("connect_error", self._refused)
        self.client.connect(
            server.url, auth={"token": token(sub, **claims)}, transports=["websocket"]
        )

    def _record(self, event, data):
        with self.arrived:
            self.events.append((event, data))
            self.arrived.notify_all()

    def _refused(self, data):
        self.refusal = data

    def call(self, event, payload):
        return self.client.call(event, payload, timeout=10)

    def wait_for(self, count, timeout=10):
        """The first `count` events, once they have arrived."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events[:count])

    def wait_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.client.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.client.connected

    def close(self):
        if self.client.connected:
            self.client.disconnect()


@pytest.fixture
def people():
    opened = []

    def open_one(server, sub, **claims):
        opened.append(Person(server, sub, **claims))
        return opened[-1]

    yield open_one
    for person in opened:
        person.close()


def refused_code(server, sub):
    """The connect_error code a person's new connection gets."""
    client = socketio.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append)
    try:
        client.connect(server.url, auth={"token": token(sub)}, transports=["websocket"])
    except socketio.exceptions.ConnectionError:
        return refusals[0]["data"]["code"]
    client.disconnect()
    return None


def test_edits_and_deletes_reach_both_processes_after_their_messages(cluster, people):
    first, second = cluster
    ann, bob = people(first, "ann"), people(second, "bob")
    for person in (ann, bob):
        person.call("join", {"channel": "lobby"})

    for text in ("one", "twoo", "three"):
        ann.call("send_message", {"channel": "lobby", "message": text})
    ann.call("edit_message", {"channel": "lobby", "seq": 2, "message": "two"})
    ann.call("delete_message", {"channel": "lobby", "seq": 3})

    expected = [
        ("message", 1),
        ("message", 2),
        ("message", 3),
        ("message_edited", 2),
        ("message_deleted", 3),
    ]
    for person in (ann, bob):
        seen = [(event, data["seq"]) for event, data in person.wait_for(5)]
        assert seen == expected
    history = requests.get(f"{second.url}/api/channels/lobby/messages", timeout=10)
    texts = [m["message"] for m in history.json()["messages"]]
    assert texts == ["one", "two", ""]


def test_a_ban_closes_a_persons_tabs_on_both_processes_and_outlives_restarts(
    cluster, people
):
    first, second = cluster
    tabs = [people(first, "ann"), people(second, "ann")]
    bob = people(second, "bob")

    started = time.monotonic()
    response = requests.post(
        f"{first.url}/api/users/ann/ban",
        json={"seconds": 600, "reason": "spam"},
        headers=OPERATOR,
        timeout=10,
    )
    assert response.status_code == 200
    assert all(tab.wait_closed() for tab in tabs)
    closed_after = time.monotonic() - started

    assert closed_after < 5  # at once through Redis (about 0.03 s here)
    for tab in tabs:
        ((event, error),) = tab.wait_for(1)
        assert (event, error["code"]) == ("chat_error", "banned")
        assert "spam" in error["message"]
    assert bob.client.connected
    for server in cluster:
        server.stop()
        server.start()
    assert [refused_code(server, "ann") for server in cluster] == ["banned"] * 2
    assert [refused_code(server, "bob") for server in cluster] == [None, None]


def test_a_ban_issued_while_redis_is_down_still_reaches_every_process(
    cluster, people, redis_server
):
    first, second = cluster
    tab = people(second, "ann")
    redis_server.stop()

    response = requests.post(
        f"{first.url}/api/users/ann/ban", json={}, headers=OPERATOR, timeout=10
    )

    assert response.status_code == 200
    assert tab.wait_closed()
    assert tab.wait_for(1)[0][1]["code"] == "banned"


def test_disconnect_by_person_reaches_both_processes(cluster, people):
    first, second = cluster
    tabs = [people(first, "ann"), people(second, "ann")]

    requests.post(
        f"{second.url}/api/users/ann/disconnect", headers=OPERATOR, timeout=10
    )

    assert all(tab.wait_closed() for tab in tabs)
    assert refused_code(first, "ann") is None  # they may come back


def test_slow_mode_holds_across_processes(cluster, people):
    first, second = cluster
    tabs = [people(first, "ann"), people(second, "ann")]
    for tab in tabs:
        tab.call("join", {"channel": "lobby"})
    requests.put(
        f"{first.url}/api/channels/lobby/settings",
        json={"slow_mode": 30},
        headers=OPERATOR,
        timeout=10,
    )

    first_ack = tabs[0].call("send_message", {"channel": "lobby", "message": "a"})
    second_ack = tabs[1].call("send_message", {"channel": "lobby", "message": "b"})

    assert first_ack["ok"] is True
    assert second_ack["code"] == "slow_mode"


def test_presence_lists_people_of_both_processes(cluster, people):
    first, second = cluster
    for server, sub in ((first, "ann"), (second, "bob"), (second, "ann")):
        people(server, sub, name=sub.title()).call("join", {"channel": "lobby"})

    roster = requests.get(
        f"{first.url}/api/channels/lobby/presence", headers=OPERATOR, timeout=10
    ).json()

    assert roster["count"] == 2
    assert roster["members"] == [
        {"name": "Ann", "user_id": "ann"},
        {"name": "Bob", "user_id": "bob"},
    ]
