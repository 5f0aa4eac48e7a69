"""No client stalls the others: each connection's inbound budget and the
turns of the read loops (app.wire.budget), through real `make serve`
processes and raw clients that flood without waiting for any answer.

The bound docs/security.md documents: beside any single flooding client,
every other client's ack arrives within FAIR_ACK_SECONDS (under the flood,
before the budget, acks took 2 to 6 s; `make bench`'s scenario (e) measures
the p99, about 20 ms).
"""

import json
import threading
import time

import pytest
import requests
import websocket

from app.wire.budget import InboundBudget, Settings

FAIR_ACK_SECONDS = 1.0
JOIN_SPAM = '42["join",{"channel":"spam"}]'


# The budget itself, on a clock of the test's


def test_a_burst_within_the_budget_is_read_at_once():
    budget = InboundBudget(Settings(rate=10, burst=5, close_after=3), now=0.0)

    waits = [budget.spend(0.0) for _ in range(5)]

    assert waits == [0.0] * 5
    assert budget.over_for(0.0) == 0.0


def test_past_the_burst_events_are_read_at_the_rate():
    budget = InboundBudget(Settings(rate=10, burst=5, close_after=3), now=0.0)
    for _ in range(5):
        budget.spend(0.0)

    assert budget.spend(0.0) == pytest.approx(0.1)  # one event's worth of refill
    assert budget.spend(0.1) == pytest.approx(0.1)
    assert budget.over_for(0.1) == pytest.approx(0.1)


def test_a_pause_that_refills_half_the_burst_ends_being_over():
    budget = InboundBudget(Settings(rate=10, burst=6, close_after=3), now=0.0)
    for _ in range(7):
        budget.spend(0.0)
    assert budget.over_for(0.0) == 0.0  # over since now

    assert budget.spend(0.2) == pytest.approx(0.0)  # 0.2 s: one event refilled
    assert budget.spend(2.0) == 0.0  # 2 s: the bucket is full again

    assert budget.over_for(2.0) == 0.0


def test_a_connection_over_its_budget_without_a_pause_is_over_for_longer():
    budget = InboundBudget(Settings(rate=10, burst=2, close_after=3), now=0.0)
    now = 0.0
    for _ in range(50):
        now += budget.spend(now) or 0.01

    assert budget.over_for(now) > 3


# Real servers and raw flooding clients


def raw_socket(server, protocol):
    """A raw WebSocket connected to Socket.IO's namespace `/`."""
    url = server.url.replace("http", "ws") + f"/socket.io/?EIO={protocol}"
    raw = websocket.create_connection(f"{url}&transport=websocket", timeout=10)
    raw.recv()  # the open packet
    if protocol == 4:
        raw.send("40")
    raw.recv()  # the namespace's CONNECT
    return raw


def flood(raw, events, packet=JOIN_SPAM):
    """Send `events` packets as fast as the socket takes them, reading
    nothing; in a thread, which ends when the server closes the socket."""

    def send_all():
        try:
            for _ in range(events):
                raw.send(packet)
        except (OSError, websocket.WebSocketException):
            pass  # closed by the server

    sending = threading.Thread(target=send_all, daemon=True)
    sending.start()
    return sending


def acks_beside(tabs, messages):
    """Each tab sends `messages` messages, one after the other; the seconds
    each ack took."""
    took = []
    for number in range(messages):
        for tab in tabs:
            started = time.monotonic()
            ack = tab.send("lobby", f"hello {number}")
            took.append(time.monotonic() - started)
            assert ack["ok"] is True
        time.sleep(0.02)
    return took


@pytest.mark.parametrize("protocol", [4, 3], ids=["eio4", "eio3"])
def test_a_websocket_flood_leaves_the_others_answered(start_server, open_tab, protocol):
    server = start_server(production=True, INBOUND_CLOSE_AFTER="60")
    tabs = [open_tab(server.url) for _ in range(3)]
    for tab in tabs:
        tab.join("lobby")
    flooder = raw_socket(server, protocol)
    sending = flood(flooder, 200_000)
    time.sleep(0.5)  # the flood is under way

    took = acks_beside(tabs, 15)

    assert sending.is_alive()  # still flooding: the server reads it slowly
    assert max(took) < FAIR_ACK_SECONDS, sorted(took)[-5:]
    assert tabs[0].texts(45)[-1] == "hello 14"
    flooder.close()
    assert "Traceback" not in server.log()


def test_a_websocket_over_its_budget_for_too_long_is_closed(start_server):
    server = start_server(
        production=True, INBOUND_RATE="20", INBOUND_BURST="20", INBOUND_CLOSE_AFTER="1"
    )
    flooder = raw_socket(server, 4)
    flood(flooder, 100_000)

    flooder.settimeout(10)
    frame = flooder.recv_frame()
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:  # past the acks
        frame = flooder.recv_frame()

    assert int.from_bytes(frame.data[:2], "big") == 1008  # policy violation
    assert frame.data[2:].decode() == "over its budget of 20 events/s for 1 s"
    log = server.log()
    assert "over its budget of 20 events/s for 1 s, closing" in log
    assert "Traceback" not in log


def polling_session(server):
    """A long-polling session connected to namespace `/`: its URL."""
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    opened = json.loads(requests.get(base, timeout=10).text[1:])
    url = f"{base}&sid={opened['sid']}"
    requests.post(url, data="40", timeout=10)
    requests.get(url, timeout=10)  # the namespace's CONNECT
    return url


def test_a_long_polling_flood_is_answered_at_the_budget(start_server, open_tab):
    server = start_server(
        production=True,
        INBOUND_RATE="100",
        INBOUND_BURST="50",
        INBOUND_CLOSE_AFTER="60",
    )
    talker = open_tab(server.url)
    talker.join("lobby")
    url = polling_session(server)
    posted = {}

    def post_flood():
        started = time.monotonic()
        body = "\x1e".join([JOIN_SPAM] * 250)  # 200 beyond the burst: 2 s
        posted["status"] = requests.post(url, data=body, timeout=30).status_code
        posted["took"] = time.monotonic() - started

    posting = threading.Thread(target=post_flood)
    posting.start()
    time.sleep(0.3)
    took = acks_beside([talker], 10)
    posting.join(30)

    assert posted["status"] == 200
    assert posted["took"] >= 1.5  # read at the budget, not at once
    assert max(took) < FAIR_ACK_SECONDS


def test_a_long_polling_session_over_its_budget_for_too_long_is_closed(start_server):
    server = start_server(
        production=True, INBOUND_RATE="50", INBOUND_BURST="10", INBOUND_CLOSE_AFTER="1"
    )
    url = polling_session(server)

    answer = requests.post(url, data="\x1e".join([JOIN_SPAM] * 500), timeout=30)

    assert answer.status_code == 400
    assert requests.get(url, timeout=10).status_code == 400  # the session is gone
    log = server.log()
    assert "over its budget of 50 events/s for 1 s, closing" in log
    assert "Traceback" not in log
