"""`make run` and `make serve` as a newcomer and an operator see them."""

import time
import urllib.request

import pytest


def logged(server, line, timeout=5):
    """The server's log once it holds `line` (a request is logged just after
    its answer is sent), or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while line not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


@pytest.mark.parametrize("production", [False, True], ids=["make run", "make serve"])
def test_the_server_logs_one_line_per_request(start_server, production):
    server = start_server(production=production)

    with urllib.request.urlopen(f"{server.url}/chat?channel=lobby") as response:
        assert response.status == 200

    line = '"GET /chat?channel=lobby HTTP/1.1" 200'
    assert line in logged(server, line)


def test_make_run_prints_the_channel_page_to_open(start_server):
    server = start_server()

    assert f"open {server.url}/chat?channel=lobby" in server.log()


def test_a_message_posted_from_the_shell_reaches_members_without_redis(
    start_server, open_tab
):
    server = start_server()
    tab = open_tab(server.url)
    tab.join("lobby")

    result = server.flask("chat", "post", "lobby", "from the shell")

    assert result.returncode == 0, result.stderr
    assert "within CHAT_REPAIR_INTERVAL" in result.stdout
    (message,) = tab.wait_for(1)
    assert message["message"] == "from the shell"
