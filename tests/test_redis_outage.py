"""A process whose Redis does not answer keeps chatting (in-process).

The real-process fault tests (test_faults.py) stop, restart and freeze a
Redis server mid-traffic; these check the same promises in one process,
through the test clients, with Redis at an address where nothing listens.
"""

import logging

import pytest
from servers import free_port

from app.extensions import socketio


@pytest.fixture
def app_settings():
    return {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_TIMEOUT": 0.2}


@pytest.fixture(autouse=True)
def logs(caplog):
    caplog.set_level(logging.INFO)
    return caplog


def test_healthz_reports_redis_degraded_and_stays_200(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {
        "status": "degraded",
        "database": "ok",
        "redis": "unavailable",
    }


@pytest.fixture
def server(start_server):
    """`python wsgi.py` whose Redis does not answer (python-socketio's test
    client refuses to run with a message queue, so sockets need a process)."""
    return start_server(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.server
def test_join_send_typing_and_leave_are_acked(server, open_tab):
    alice, bob = open_tab(server.url), open_tab(server.url)

    joined = alice.join("lobby")
    bob.join("lobby")
    sent = alice.send("lobby", "stored while Redis is away")
    typing = alice.call("typing", {"channel": "lobby"})
    left = bob.call("leave", {"channel": "lobby"})

    assert joined["count"] == 1  # only this process's members are known
    assert sent == {"ok": True, "id": sent["id"], "seq": 1}
    assert typing == left == {"ok": True}


@pytest.mark.server
def test_this_process_delivers_its_messages_at_once(server, open_tab):
    alice, bob = open_tab(server.url), open_tab(server.url)
    alice.join("lobby")
    bob.join("lobby")

    alice.send("lobby", "one")
    alice.send("lobby", "two")

    assert bob.texts(2, timeout=1) == ["one", "two"]


@pytest.mark.server
def test_the_outage_is_logged_once_without_a_traceback(server, open_tab):
    tab = open_tab(server.url)
    tab.join("lobby")
    for number in range(5):
        tab.send("lobby", f"message {number}")
        tab.call("typing", {"channel": "lobby"})
    tab.close()
    open_tab(server.url).join("lobby")  # after the disconnect was handled

    log = server.log()
    assert log.count("Redis unavailable") == 1
    assert "Traceback" not in log


def test_the_repairer_asks_whether_redis_is_back(app):
    link = app.extensions["chat_redis"]
    link.failed("test", ConnectionError("refused"))

    socketio.server.manager.check()

    assert link.up is False
