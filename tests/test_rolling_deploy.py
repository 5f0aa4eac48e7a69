"""A rolling deploy through deploy/nginx.conf loses nothing: two `make
serve` processes on PostgreSQL and Redis, each stopped (SIGTERM) and
started again in turn while pages like the real one chat through nginx."""

import time
import uuid

import pytest
from faults import Traffic, tracebacks
from servers import Nginx

pytestmark = pytest.mark.server

# The real page starts on long-polling and moves to a WebSocket; some
# clients open a WebSocket at once.
TRANSPORTS = (("polling", "websocket"), ("websocket",))


@pytest.fixture
def deployment(start_server, postgres_url, redis_env, nginx_binary, tmp_path):
    """Two production processes behind nginx, configured as
    docs/operations.md says."""
    env = {
        "DATABASE_URL": postgres_url,
        **redis_env,
        "REDIS_CHANNEL": f"chat-deploy-{uuid.uuid4().hex[:12]}",
        "PROXY_COUNT": "1",
        "MAX_CONNECTIONS_PER_ADDRESS": "0",
        "CHAT_HISTORY_LIMIT": "100000",
    }
    backends = [start_server(production=True, **env) for _ in range(2)]
    proxy = Nginx(tmp_path, backends).start(nginx_binary)
    yield proxy, backends
    proxy.stop()


def test_a_rolling_deploy_through_nginx_loses_nothing(deployment, postgres_url):
    proxy, backends = deployment
    traffic = Traffic([proxy.url], postgres_url, transports=TRANSPORTS)
    traffic.open().start()
    try:
        time.sleep(2)
        stops = []
        for server in backends:
            started = time.monotonic()
            server.stop()
            stops.append(time.monotonic() - started)
            server.start()
            time.sleep(2)
        traffic.stop()
        report = traffic.settle(timeout=20)
    finally:
        traffic.close()

    assert report.attempted > 100
    assert report.problems() == []
    longest = max(page.longest_outage for page in traffic.pages)
    assert longest <= 5, f"a page was without a connection for {longest:.1f} s"
    assert max(stops) < 5, stops
    assert tracebacks(backends) == []
