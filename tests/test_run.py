"""`make run` and `make serve` as a newcomer and an operator see them."""

import urllib.request

import pytest


@pytest.mark.parametrize("production", [False, True], ids=["make run", "make serve"])
def test_the_server_logs_one_line_per_request(start_server, production):
    server = start_server(production=production)

    with urllib.request.urlopen(f"{server.url}/chat?channel=lobby") as response:
        assert response.status == 200

    assert '"GET /chat?channel=lobby HTTP/1.1" 200' in server.log()


def test_make_run_prints_the_channel_page_to_open(start_server):
    server = start_server()

    assert f"open {server.url}/chat?channel=lobby" in server.log()
