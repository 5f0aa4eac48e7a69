"""Fixtures: an app on an in-memory database, its HTTP and Socket.IO clients."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app import create_app
from app.extensions import db, socketio
from config import TestingConfig

ROOT = Path(__file__).resolve().parent.parent


def settings(**overrides):
    """A TestingConfig with some settings changed."""
    return type("CustomTestingConfig", (TestingConfig,), overrides)


@pytest.fixture
def make_app():
    """Build an app with some settings changed, creating no tables."""
    return lambda **overrides: create_app(settings(**overrides))


@pytest.fixture
def app_settings():
    """Settings the `app` fixture uses; override this fixture to change them."""
    return {}


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


class Member:
    """One member's browser tab, speaking Socket.IO through the test client."""

    def __init__(self, client):
        self.client = client
        self.inbox = []

    def emit(self, event, *args, ack=True):
        """Emit an event; return the server's ack (None when ack=False)."""
        return self.client.emit(event, *args, callback=ack)

    def join(self, channel, **fields):
        """Join a channel and return the ack, which must be ok."""
        answer = self.emit("join", {"channel": channel, **fields})
        assert answer["ok"] is True, answer
        return answer

    def send(self, channel, message):
        """Send a message and return the ack."""
        return self.emit("send_message", {"channel": channel, "message": message})

    def received(self, event):
        """Payloads of the `event` events received and not yet looked at."""
        self.inbox.extend(self.client.get_received())
        matching = [packet for packet in self.inbox if packet["name"] == event]
        self.inbox = [packet for packet in self.inbox if packet["name"] != event]
        return [_payload(packet) for packet in matching]

    def drain(self):
        """Forget everything received so far."""
        self.client.get_received()
        self.inbox.clear()


def _payload(packet):
    # The test client keeps the payload of `message` events as is, and the
    # arguments of every other event as a list.
    if packet["name"] == "message":
        return packet["args"]
    return packet["args"][0] if packet["args"] else None


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
def broadcasts(app):
    """Replace the app's broadcaster with a fake; the list of what it was given."""
    fake = FakeBroadcaster()
    app.extensions["chat_broadcaster"] = fake
    return fake.sent


class ServerProcess:
    """The real chat server (`python wsgi.py`) in a child process."""

    def __init__(self, workdir, env):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "CHAT_ENV": "development",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process = None

    def migrate(self):
        """Bring the server's database up to date, as `make run` does."""
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def start(self):
        """Start serving and wait until /healthz answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "wsgi.py"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer in time:\n{self.log()}")

    def stop(self):
        """Stop the server and wait for it to exit."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        """Everything the server printed."""
        return self.log_path.read_text(errors="replace")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_server(tmp_path):
    """Start real server processes (migrated first); all stop after the test."""
    started = []

    def start(**env):
        server = ServerProcess(tmp_path, env)
        server.migrate()
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
