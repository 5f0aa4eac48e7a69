"""deploy/nginx.conf in front of two production processes, with real nginx."""

import pytest
import requests
from servers import Nginx

pytestmark = pytest.mark.server
ADMIN_PASSWORD = "the admin ui's password behind nginx"


@pytest.fixture
def backends(start_server, postgres_url, redis_env):
    return [
        start_server(
            production=True,
            DATABASE_URL=postgres_url,
            CHAT_ADMIN_PASSWORD=ADMIN_PASSWORD,
            **redis_env,
        )
        for _ in range(2)
    ]


@pytest.fixture
def nginx(nginx_binary, backends, tmp_path):
    proxy = Nginx(tmp_path, backends).start(nginx_binary)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_chat_through_nginx(nginx, backends, open_tab, transport):
    proxied = open_tab(nginx.url, transports=[transport])
    direct = [open_tab(server.url) for server in backends]
    for tab in [proxied, *direct]:
        tab.join("lobby")

    proxied.send("lobby", f"through nginx over {transport}")
    direct[0].send("lobby", "straight to the first process")
    direct[1].send("lobby", "straight to the second process")

    expected = [
        f"through nginx over {transport}",
        "straight to the first process",
        "straight to the second process",
    ]
    for tab in [proxied, *direct]:
        assert tab.texts(3) == expected


def test_pages_and_api_through_nginx(nginx):
    page = requests.get(f"{nginx.url}/chat?channel=lobby", timeout=10)
    posted = requests.post(
        f"{nginx.url}/api/channels/lobby/messages", json={"message": "hi"}, timeout=10
    )

    assert page.status_code == 200 and 'class="chat-room"' in page.text
    assert posted.status_code == 201


def test_metrics_are_not_served_through_nginx(nginx, backends):
    assert requests.get(f"{nginx.url}/metrics", timeout=10).status_code == 404
    assert requests.get(f"{backends[0].url}/metrics", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/admin/", "/admin", "/admin/js/app.0d7d7845.js"])
def test_the_admin_ui_is_not_served_through_nginx(nginx, backends, path):
    assert requests.get(f"{nginx.url}{path}", timeout=10).status_code == 404
    assert requests.get(f"{backends[0].url}{path}", timeout=10).status_code == 200
