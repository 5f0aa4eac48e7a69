"""Several `make serve` processes sharing PostgreSQL and Redis."""

import json
import time
import threading

import jwt
import psycopg
import pytest
import requests
import socketio

pytestmark = pytest.mark.server


@pytest.fixture
def cluster(start_server, postgres_url, redis_env):
    """Start production processes on one PostgreSQL database and one Redis."""

    def start(count):
        return [
            start_server(production=True, DATABASE_URL=postgres_url, **redis_env)
            for _ in range(count)
        ]

    return start


def test_socket_messages_cross_processes_in_seq_order(cluster, open_tab):
    first, second = cluster(2)
    alice, bob = open_tab(first.url), open_tab(second.url)
    alice.join("lobby")
    bob.join("lobby")

    alice.send("lobby", "from the first process")
    bob.send("lobby", "from the second process")

    expected = ["from the first process", "from the second process"]
    assert alice.texts(2) == expected
    assert bob.texts(2) == expected
    assert [m["seq"] for m in bob.wait_for(2)] == [1, 2]


def test_http_post_on_one_process_reaches_the_other(cluster, open_tab):
    first, second = cluster(2)
    tab = open_tab(first.url)
    tab.join("lobby")

    response = requests.post(
        f"{second.url}/api/channels/lobby/messages",
        json={"message": "posted over HTTP"},
        timeout=10,
    )

    assert response.status_code == 201
    assert tab.texts(1) == ["posted over HTTP"]


def test_concurrent_senders_on_several_processes(cluster, open_tab):
    servers = cluster(3)
    listeners = [open_tab(server.url) for server in servers for _ in range(2)]
    senders = [open_tab(server.url) for server in servers for _ in range(2)]
    for tab in listeners + senders:
        tab.join("race")
    per_sender = 25
    total = per_sender * len(senders)
    acked = []

    def send_all(index, tab):
        for number in range(per_sender):
            ack = tab.send("race", f"sender {index} message {number}")
            assert ack["ok"] is True, ack
            acked.append(ack["seq"])

    threads = [
        threading.Thread(target=send_all, args=(index, tab))
        for index, tab in enumerate(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(acked) == list(range(1, total + 1))
    for tab in listeners + senders:
        received = tab.wait_for(total)
        # Exactly once each, and in seq order, on every process.
        assert [m["seq"] for m in received] == list(range(1, total + 1))
    history = requests.get(f"{servers[0].url}/api/channels/race/messages").json()
    assert [m["seq"] for m in history["messages"]] == list(range(total - 9, total + 1))


def test_a_slow_database_call_does_not_stall_other_clients(
    cluster, open_tab, postgres_url
):
    (server,) = cluster(1)
    waiting, chatting = open_tab(server.url), open_tab(server.url)
    waiting.join("slow")
    chatting.join("fast")
    waiting.send("slow", "creates the channel")
    slow_acks = []
    slow_acked = threading.Event()

    def record_slow_ack(ack):
        slow_acks.append(ack)
        slow_acked.set()

    # Hold the "slow" channel's row lock, so storing the next message there
    # waits in PostgreSQL until this transaction ends.
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute("SELECT * FROM channels WHERE name = 'slow' FOR UPDATE")
        waiting.client.emit(
            "send_message",
            {"channel": "slow", "message": "stuck"},
            callback=record_slow_ack,
        )
        fast_acks = [chatting.send("fast", f"fast {n}") for n in range(10)]
        still_waiting = not slow_acked.is_set()

    assert slow_acked.wait(timeout=10)

    assert [ack["seq"] for ack in fast_acks] == list(range(1, 11))
    assert still_waiting
    assert slow_acks[0]["ok"] is True


def test_flask_chat_post_reaches_connected_clients(cluster, open_tab):
    first, second = cluster(2)
    tabs = [open_tab(first.url), open_tab(second.url)]
    for tab in tabs:
        tab.join("lobby")

    result = first.flask("chat", "post", "lobby", "from the shell", "--author", "ops")

    assert result.returncode == 0, result.stderr
    assert "posted #1 to lobby" in result.stdout
    for tab in tabs:
        (message,) = tab.wait_for(1)
        assert (message["message"], message["author"]) == ("from the shell", "ops")


def test_flask_chat_post_refuses_bad_input(cluster):
    (server,) = cluster(1)

    result = server.flask("chat", "post", "not a channel", "hi")

    assert result.returncode != 0
    assert "invalid_channel" in result.stderr


def test_stopping_a_process_closes_its_connections(start_server, open_tab):
    server = start_server(production=True, GRACEFUL_TIMEOUT="120")
    open_polling_session(server.url)  # and no poll outstanding
    tab = open_tab(server.url)
    tab.join("lobby")
    closed = threading.Event()
    tab.client.on("disconnect", lambda *reason: closed.set())

    server.process.terminate()

    # Without closing them, the worker would wait out the 120 s graceful
    # timeout for the open WebSocket; waiting for the polling session's
    # queue to drain would stall every socket after it as long.
    assert closed.wait(timeout=30)
    assert server.process.wait(timeout=60) == 0


def open_polling_session(url):
    """Open an Engine.IO long-polling session; return its sid."""
    response = requests.get(
        f"{url}/socket.io/", params={"EIO": 4, "transport": "polling"}, timeout=10
    )
    response.raise_for_status()
    return json.loads(response.text[1:])["sid"]


def test_joining_during_a_burst_sees_each_message_once_in_order(cluster, open_tab):
    first, second = cluster(2)
    sender = open_tab(first.url)
    sender.join("burst")
    total = 200
    sent = threading.Thread(
        target=lambda: [sender.send("burst", f"m{n}") for n in range(total)]
    )
    sent.start()
    sender.wait_for(50)

    joiner = open_tab(second.url)
    ack = joiner.join("burst")
    sent.join(timeout=120)

    received = joiner.wait_until(lambda got: got and got[-1]["seq"] == total)
    seqs = [message["seq"] for message in received]
    assert seqs == list(range(seqs[0], total + 1))
    assert seqs[0] == max(1, ack["last_seq"] - 9)


def test_presence_spans_processes_and_forgets_a_crashed_one(
    start_server, postgres_url, redis_env, open_tab
):
    env = {"DATABASE_URL": postgres_url, "CHAT_PRESENCE_TTL": "2", **redis_env}
    first = start_server(production=True, **env)
    second = start_server(production=True, **env)
    ann = open_tab(first.url, name="ann")
    bob = open_tab(second.url, name="bob")
    ann.join("lobby")

    ack = bob.join("lobby")

    assert (ack["count"], ack["members"]) == (2, ["ann", "bob"])
    both = ann.wait_event("presence", lambda event: event["count"] == 2)
    assert both == {"channel": "lobby", "count": 2, "members": ["ann", "bob"]}

    second.process.kill()  # no disconnect handlers run: bob's entry must expire

    alone = ann.wait_event("presence", lambda event: event["members"] == ["ann"])
    assert alone == {"channel": "lobby", "count": 1, "members": ["ann"]}


def test_presence_counts_people_across_processes(cluster):
    first, second = cluster(2)
    tabs = [
        (first.url, {"name": "ann", "person": "browser-of-ann"}),
        (second.url, {"name": "ann", "person": "browser-of-ann"}),
        (first.url, {"name": "Sam", "person": "browser-of-one-sam"}),
        (second.url, {"name": "Sam", "person": "browser-of-another-sam"}),
    ]
    clients = []
    try:
        for url, auth in tabs:
            clients.append(socketio.Client(reconnection=False))
            clients[-1].connect(
                url, transports=["websocket"], auth=auth, wait_timeout=10
            )
            ack = clients[-1].call("join", {"channel": "lobby"}, timeout=10)
    finally:
        for client in clients:
            client.disconnect()

    assert (ack["count"], ack["members"]) == (3, ["Sam", "Sam", "ann"])


def test_typing_crosses_processes(cluster, open_tab):
    first, second = cluster(2)
    ann, bob = open_tab(first.url, name="ann"), open_tab(second.url, name="bob")
    ann.join("lobby")
    bob.join("lobby")

    ann.call("typing", {"channel": "lobby"})

    notice = bob.wait_event("typing", lambda event: True)
    assert notice == {"channel": "lobby", "author": "ann"}
    assert ann.events["typing"] == []


def test_a_verified_person_counts_once_across_processes(
    start_server, postgres_url, redis_env
):
    secret = "s" * 40
    env = {"DATABASE_URL": postgres_url, "CHAT_TOKEN_SECRET": secret, **redis_env}
    servers = [start_server(production=True, **env) for _ in range(2)]
    ann = jwt.encode(
        {"sub": "u-1", "name": "Ann", "exp": int(time.time()) + 600},
        secret,
        algorithm="HS256",
    )
    clients = []
    try:
        for server in servers:  # Ann's laptop and phone, no shared browser key
            clients.append(socketio.Client(reconnection=False))
            clients[-1].connect(
                server.url, transports=["websocket"], auth={"token": ann}
            )
            clients[-1].call("join", {"channel": "lobby"}, timeout=10)
        clients.append(socketio.Client(reconnection=False))
        clients[-1].connect(
            servers[1].url, transports=["websocket"], auth={"name": "Ann"}
        )
        ack = clients[-1].call("join", {"channel": "lobby"}, timeout=10)
    finally:
        for client in clients:
            client.disconnect()

    assert (ack["count"], ack["members"]) == (2, ["Ann", "Ann"])
