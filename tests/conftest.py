"""Fixtures: an app on an in-memory database, its HTTP and Socket.IO clients."""

import itertools
import os
import random
import re
import shutil
import uuid

import psycopg
import pytest
import redis
from clients import Member, Tab
from faults import RedisServer
from servers import ServerProcess, ThreadServer
from tokens import token

from app import create_app
from app.extensions import db, socketio
from config import TestingConfig

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# What a test needs, from the fixtures it uses: the marker that lets each
# group run alone (`pytest -m postgres`) or be left out (`-m "not browser"`).
NEEDS = {
    "postgres": {"postgres_url"},
    "redis": {"redis_env", "redis_server"},
    "browser": {"browser"},
    "nginx": {"nginx_binary"},
    "server": {"start_server", "run_process", "serve_process"},
}


def pytest_collection_modifyitems(items):
    """Mark each test with what it needs (see NEEDS)."""
    for item in items:
        for marker, fixtures in NEEDS.items():
            if fixtures & set(item.fixturenames):
                item.add_marker(marker)


def settings(**overrides):
    """A TestingConfig with some settings changed."""
    return type("CustomTestingConfig", (TestingConfig,), overrides)


@pytest.fixture
def make_app():
    """Build an app with some settings changed, creating no tables."""
    return lambda **overrides: create_app(settings(**overrides))


@pytest.fixture
def app_settings(request):
    """Settings the `app` fixture uses: override this fixture, or parametrize
    it indirectly, to change them."""
    return getattr(request, "param", {})


@pytest.fixture
def app(app_settings):
    """The chat app on a fresh in-memory database."""
    app = create_app(settings(**app_settings))
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    """The Flask test client: a browser or curl speaking HTTP."""
    return app.test_client()


@pytest.fixture
def connect(app, client):
    """Open members: each call connects one more browser tab."""
    opened = []

    def open_member(**kwargs):
        opened.append(socketio.test_client(app, flask_test_client=client, **kwargs))
        return Member(opened[-1])

    yield open_member
    for test_client in opened:
        if test_client.is_connected():
            test_client.disconnect()


@pytest.fixture
def verified(connect):
    """Connect a tab as the person a token vouches for (the app needs
    CHAT_TOKEN_SECRET=tokens.SECRET): `verified(sub, **claims)`."""
    return lambda sub="ann", **claims: connect(auth={"token": token(sub, **claims)})


@pytest.fixture
def member(connect):
    """One connected member."""
    return connect()


class FakeBroadcaster:
    """Records the messages the service hands over for broadcasting."""

    def __init__(self):
        self.sent = []

    def message(self, message):
        self.sent.append(message)


@pytest.fixture
def services(app):
    """The app's services (app.chat.services.Chat)."""
    return app.extensions["chat"]


@pytest.fixture
def posting(services):
    """The message service (app.chat.messages.Messages)."""
    return services.messages


@pytest.fixture
def broadcasts(services):
    """Publish posted messages to a fake; the list of what it was given."""
    fake = FakeBroadcaster()
    services.messages.publish = fake.message
    return fake.sent


_channels = itertools.count(1)  # for the channel fixture


@pytest.fixture
def channel(request):
    """A channel of this test's own."""
    words = re.sub(r"[^\w-]", "-", request.node.name.removeprefix("test_"))
    return f"t{next(_channels)}-{words[:40]}"


@pytest.fixture
def start_server(tmp_path):
    """Start real server processes (migrated first); all stop after the test.

    `start_server(production=True, **env)` runs gunicorn as `make serve` does;
    without it, `python wsgi.py` as `make run` does.
    """
    started = []

    def start(production=False, **env):
        server = ServerProcess(tmp_path, env, production=production)
        server.migrate()
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_thread_server(tmp_path):
    """Start chat servers on gevent in threads of this process (see
    ThreadServer), each on a database of its own; all stop after the test.

    `start_thread_server(**settings)` changes settings of TestingConfig.
    """
    started = []

    def start(**overrides):
        database = tmp_path / f"thread-{len(started)}.db"
        config = settings(
            SOCKETIO_ASYNC_MODE="gevent",
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}",
            **overrides,
        )
        started.append(ThreadServer(config))
        return started[-1].start()

    yield start
    for server in started:
        server.stop()


# Seconds of the ping interval, and of the timeout, of `pinging_server`.
QUICK_PING = 1


@pytest.fixture
def pinging_server(start_thread_server):
    """The chat on gevent pinging every QUICK_PING seconds, with as long to
    answer: for the tests of heartbeats, deadlines and upgrades."""
    return start_thread_server(PING_INTERVAL=QUICK_PING, PING_TIMEOUT=QUICK_PING)


@pytest.fixture
def open_tab():
    """Open python-socketio clients (`open_tab(url)`); all close after the test."""
    tabs = []

    def open_one(url, **kwargs):
        tabs.append(Tab(url, **kwargs))
        return tabs[-1]

    yield open_one
    for tab in tabs:
        tab.close()


def unreachable(service, error):
    """Skip a test whose service is down, except under CI where that fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{service} is unreachable: {error}")
    pytest.skip(f"{service} is unreachable: {error}")


@pytest.fixture
def postgres_url():
    """A new PostgreSQL database for this test, dropped after it."""
    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        unreachable("PostgreSQL", error)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def redis_env():
    """An empty Redis database number and a pub/sub channel of this test's own,
    as the environment a server needs; the database is flushed after it."""
    try:
        sizes = {number: _redis(number).dbsize() for number in range(1, 16)}
    except redis.RedisError as error:
        unreachable("Redis", error)
    number = random.choice([number for number, size in sizes.items() if size == 0])
    yield {
        "REDIS_URL": f"redis://127.0.0.1:6379/{number}",
        "REDIS_CHANNEL": f"chat-test-{uuid.uuid4().hex[:12]}",
    }
    _redis(number).flushdb()


@pytest.fixture
def redis_server(tmp_path):
    """A running redis-server of this test's own; killed after it."""
    if not RedisServer.available():
        unreachable("redis-server", "it is not installed")
    server = RedisServer(tmp_path)
    yield server.start()
    server.cleanup()


@pytest.fixture
def nginx_binary():
    """Debian's nginx, which `make test` installs."""
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if found is None:
        unreachable("nginx", "it is not installed; `make test` installs it")
    return found


def _redis(number):
    return redis.Redis(host="127.0.0.1", port=6379, db=number, socket_timeout=5)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # Without this, this Chromium refuses WebSockets to 127.0.0.1.
    "--disable-features=LocalNetworkAccessChecks",
]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package); skipped outside CI when missing."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; `make test` installs it")
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, server):
    """Open the chat's channel page in a fresh browser context of the
    module's `server`, connected; with a name, as someone who chose that name
    before; `on` another server."""
    from browsing import joined  # Playwright: only for the browser tests

    contexts = []

    def open_channel(channel="lobby", name=None, on=server, **context_options):
        contexts.append(browser.new_context(**context_options))
        if name:
            contexts[-1].add_init_script(f"localStorage.setItem('chat.name', {name!r})")
        page = contexts[-1].new_page()
        page.goto(f"{on.url}/chat?channel={channel}")
        joined(page)
        return page

    yield open_channel
    for context in contexts:
        context.close()
