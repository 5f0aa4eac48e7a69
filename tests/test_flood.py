"""Rate limits through real processes: a flooding client is refused while
others chat, and an address is counted across processes through Redis."""

import threading
import time

import pytest

pytestmark = pytest.mark.server

LIMITS_ON = {
    "CHAT_RATE_LIMITS": "on",
    "CHAT_RATE_SEND": "20/second",
    "CHAT_RATE_SEND_PER_ADDRESS": "off",
    "CHAT_RATE_JOIN": "5/second",
    "CHAT_RATE_JOIN_PER_ADDRESS": "off",
}


def test_a_flooding_client_is_refused_while_another_chats(start_server, open_tab):
    server = start_server(production=True, **LIMITS_ON)
    flooder, talker = open_tab(server.url), open_tab(server.url)
    flooder.join("spam")
    talker.join("lobby")
    answers = []

    def flood():
        for number in range(2000):
            flooder.client.emit(
                "send_message",
                {"channel": "spam", "message": f"spam {number}"},
                callback=answers.append,
            )
            flooder.client.emit("join", {"channel": "spam"}, callback=answers.append)

    flooding = threading.Thread(target=flood)
    flooding.start()
    acks = []
    for number in range(20):
        acks.append(talker.send("lobby", f"hello {number}"))
        time.sleep(0.05)
    flooding.join(timeout=60)

    assert [ack["ok"] for ack in acks] == [True] * 20
    assert talker.texts(20) == [f"hello {number}" for number in range(20)]
    refused = [a for a in answers if not a["ok"]]
    assert refused and {a["code"] for a in refused} == {"rate_limited"}
    assert all(a["retry_after"] >= 1 for a in refused)
    assert "Traceback" not in server.log()


def test_an_address_is_counted_across_processes(
    start_server, open_tab, postgres_url, redis_env
):
    settings = {
        "CHAT_RATE_LIMITS": "on",
        "CHAT_RATE_SEND": "off",
        "CHAT_RATE_SEND_PER_ADDRESS": "10/minute",
        "DATABASE_URL": postgres_url,
        **redis_env,
    }
    first = start_server(production=True, **settings)
    second = start_server(production=True, **settings)
    here, there = open_tab(first.url), open_tab(second.url)
    here.join("lobby")
    there.join("lobby")

    acks = [tab.send("lobby", "hi") for tab in (here, there) for _ in range(8)]

    assert [ack["ok"] for ack in acks] == [True] * 10 + [False] * 6
    assert {ack["code"] for ack in acks[10:]} == {"rate_limited"}
