"""An ack means stored, and every member gets every stored message once, in
seq order, through Redis outages and freezes and crashed workers.

Real `make serve` processes on one PostgreSQL database and a Redis of the
test's own, which the tests stop, freeze and restart (the shared Redis is
never touched). Pages behave like the real one: they re-join with `since` on
every reconnect and retry unacked sends with the same client_id.
"""

import threading
import time
import uuid

import pytest
import requests
from faults import (
    Traffic,
    channel_locked,
    health,
    kill_worker,
    stored_seqs,
    tracebacks,
    wait_for_new_worker,
)

pytestmark = pytest.mark.server

HEALTHY = {"status": "ok", "database": "ok", "redis": "ok"}
DEGRADED = {"status": "degraded", "database": "ok", "redis": "unavailable"}
PRESENCE_TTL = 3


@pytest.fixture
def cluster(redis_server, start_server, postgres_url):
    """Start `make serve` processes on one fresh PostgreSQL database and the
    test's own Redis, keeping every message (nothing is pruned)."""

    def start(count=2, **env):
        settings = {
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_server.url,
            "REDIS_CHANNEL": f"chat-faults-{uuid.uuid4().hex[:12]}",
            "CHAT_HISTORY_LIMIT": "100000",
            **env,
        }
        return [start_server(production=True, **settings) for _ in range(count)]

    return start


@pytest.fixture
def traffic(postgres_url):
    """Open Traffic over some servers (`traffic(servers, **options)`); every
    page closes after the test."""
    opened = []

    def open_traffic(servers, **options):
        opened.append(Traffic([s.url for s in servers], postgres_url, **options))
        return opened[-1].open()

    yield open_traffic
    for pages in opened:
        pages.close()


def through_a_fault(servers, traffic, begin, end, seconds):
    """Run traffic over `servers` while a fault lasts `seconds`: begin(),
    then end(). Returns the pages, their report, and when the fault began
    and ended."""
    pages = traffic(servers, members=18, channels=3, senders=6).start()
    time.sleep(2)
    begin()
    began = time.monotonic()
    time.sleep(seconds)
    end()
    ended = time.monotonic()
    time.sleep(2)
    pages.stop()
    report = pages.settle(timeout=10, recovered_at=ended)
    print(report)
    return pages, report, began, ended


def test_a_redis_outage_loses_no_message(cluster, redis_server, traffic):
    servers = cluster(2)

    # Restarted empty, as after a real restart.
    pages, report, stopped, back = through_a_fault(
        servers, traffic, redis_server.stop, redis_server.start, 5
    )

    assert report.problems() == []
    assert pages.acked_between(stopped + 1, back) > 0  # sending went on
    assert report.outcomes["unanswered"] == 0
    assert report.latest_delivery <= 2, report.latest
    assert tracebacks(servers) == []


def test_a_frozen_redis_neither_delays_acks_nor_loses_messages(
    cluster, redis_server, traffic
):
    servers = cluster(2)

    pages, report, frozen, back = through_a_fault(
        servers, traffic, redis_server.freeze, redis_server.thaw, 6
    )

    assert report.problems() == []
    assert pages.acked_between(frozen + 1, back) > 0
    assert report.max_ack_latency < 3
    assert report.outcomes["unanswered"] == 0
    assert report.latest_delivery <= 2, report.latest
    assert tracebacks(servers) == []


def test_a_killed_worker_loses_and_duplicates_no_message(
    cluster, traffic, postgres_url
):
    servers = cluster(2)
    pages = traffic(servers, members=18, channels=3, senders=6).start()
    time.sleep(2)

    # Sends to room-1 wait in PostgreSQL meanwhile, so the worker dies with
    # some of them in flight: their pages must retry them elsewhere in time.
    with channel_locked(postgres_url, "room-1"):
        time.sleep(0.5)
        killed = kill_worker(servers[1])
    wait_for_new_worker(servers[1], killed)
    back = time.monotonic()
    time.sleep(3)
    pages.stop()

    # Its pages reconnect to the new worker, catch up with `since`, and
    # retry what was in flight with the same client_id.
    report = pages.settle(timeout=10, recovered_at=back)
    print(report)
    assert report.problems() == []
    assert report.outcomes["interrupted"] > 0
    assert all(len(page.join_acks) > 1 for page in pages.pages_on(servers[1]))
    assert tracebacks(servers) == []


def test_a_message_committed_but_never_published_reaches_every_member(cluster, traffic):
    servers = cluster(2)
    # room-0 and room-1 are busy; room-2 has members on both processes but
    # nobody sending, so only the servers' own repair can bring it the message.
    pages = traffic(servers, members=12, channels=3, senders=2).start()
    time.sleep(1)

    pages.commit_without_publishing("room-2")
    pages.commit_without_publishing("room-0")
    time.sleep(2.5)
    pages.stop()

    # Members of room-0 get newer messages only after the unpublished one.
    report = pages.settle(timeout=10)
    print(report)
    assert report.problems() == []
    assert report.latest_delivery <= 2, report.latest


def test_joins_leaves_typing_and_disconnects_work_while_redis_is_down(
    cluster, redis_server, open_tab
):
    first, second = cluster(2)
    ann, bob = open_tab(first.url, name="ann"), open_tab(second.url, name="bob")
    cat = open_tab(first.url, name="cat")
    for tab in (ann, bob, cat):
        tab.join("lobby")
    assert health(first) == (200, HEALTHY)

    redis_server.stop()

    dan = open_tab(second.url, name="dan")
    assert dan.call("join", {"channel": "lobby"}, timeout=5)["ok"] is True
    assert ann.call("typing", {"channel": "lobby"}, timeout=5) == {"ok": True}
    assert bob.call("leave", {"channel": "lobby"}, timeout=5) == {"ok": True}
    cat.close()
    assert health(first) == (200, DEGRADED)
    assert health(second) == (200, DEGRADED)
    time.sleep(1)  # the disconnect's handlers run after the client is gone
    assert tracebacks([first, second]) == []


def test_presence_is_right_again_within_its_ttl_after_redis_restarts_empty(
    cluster, redis_server, open_tab
):
    first, second = cluster(2, CHAT_PRESENCE_TTL=str(PRESENCE_TTL))
    ann, bob = open_tab(first.url, name="ann"), open_tab(second.url, name="bob")
    cat = open_tab(first.url, name="cat")
    for tab in (ann, bob, cat):
        tab.join("lobby")
    redis_server.stop()
    dan = open_tab(second.url, name="dan")
    dan.join("lobby")
    bob.call("leave", {"channel": "lobby"}, timeout=5)
    cat.close()

    redis_server.start()  # empty: every process must list its members again
    back = time.monotonic()

    # A newcomer joins (and leaves) until its ack is right: within the TTL,
    # give or take its own round trips. The other process must agree.
    zoe = open_tab(first.url, name="zoe")
    expected = ["ann", "dan", "zoe"]
    while True:
        ack = zoe.call("join", {"channel": "lobby"}, timeout=5)
        if (ack.get("count"), ack.get("members")) == (3, expected):
            break
        assert time.monotonic() - back < PRESENCE_TTL + 0.5, ack
        zoe.call("leave", {"channel": "lobby"}, timeout=5)
        time.sleep(0.2)
    print(f"presence right {time.monotonic() - back:.2f} s after Redis restarted")
    seen = dan.wait_event("presence", lambda event: event["members"] == expected, 3)
    assert seen == {"channel": "lobby", "count": 3, "members": expected}


def test_a_retried_client_id_stores_and_delivers_one_message(
    cluster, open_tab, postgres_url
):
    first, second = cluster(2)
    ann, bob = open_tab(first.url, name="ann"), open_tab(second.url, name="bob")
    ann.join("dup")
    bob.join("dup")
    sent = {"channel": "dup", "message": "only once", "client_id": uuid.uuid4().hex}

    original = ann.call("send_message", sent)
    retried = ann.call("send_message", sent)
    over_http = requests.post(
        f"{second.url}/api/channels/dup/messages",
        json={"message": sent["message"], "client_id": sent["client_id"]},
        timeout=10,
    )

    assert original["ok"] is True, original
    stored = (original["id"], original["seq"])
    assert (retried.get("id"), retried.get("seq")) == stored
    assert over_http.ok, over_http.text
    assert (over_http.json().get("id"), over_http.json().get("seq")) == stored
    _assert_each_member_got_it_once([ann, bob], sent["client_id"])
    assert stored_seqs(postgres_url, ["dup"]) == {"dup": [1, 2]}


def test_concurrent_retries_on_two_processes_store_one_message(
    cluster, open_tab, postgres_url
):
    first, second = cluster(2)
    ann, bob = open_tab(first.url, name="ann"), open_tab(second.url, name="bob")
    ann.join("dup")
    bob.join("dup")
    sent = {"channel": "dup", "message": "only once", "client_id": uuid.uuid4().hex}
    acks = {}

    # A page whose connection dropped mid-send retries on the other process
    # while the first attempt may still be running.
    def send(tab):
        acks[tab] = tab.call("send_message", sent)

    threads = [threading.Thread(target=send, args=(tab,)) for tab in (ann, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert acks[ann]["ok"] is True, acks
    assert (acks[bob].get("id"), acks[bob].get("seq")) == (
        acks[ann]["id"],
        acks[ann]["seq"],
    )
    _assert_each_member_got_it_once([ann, bob], sent["client_id"])
    assert stored_seqs(postgres_url, ["dup"]) == {"dup": [1, 2]}


def _assert_each_member_got_it_once(tabs, client_id):
    """Each tab got the message of `client_id` once, as seq 1.

    A newer message follows it; by the time that one arrives, so would have
    any duplicate.
    """
    after = tabs[0].call(
        "send_message",
        {"channel": "dup", "message": "after", "client_id": uuid.uuid4().hex},
    )
    assert after["ok"] is True, after
    for tab in tabs:
        tab.wait_until(lambda got: any(m["seq"] == after["seq"] for m in got))
        time.sleep(0.2)  # python-socketio hands each message to its own thread
        received = tab.wait_for(0)
        assert sorted(m["seq"] for m in received) == [1, 2]
        assert [m.get("client_id") for m in received if m["seq"] == 1] == [client_id]
