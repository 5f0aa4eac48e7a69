"""Real servers for end-to-end tests: the chat server (in a process of its
own, or on gevent in a thread of the test's), its clients, nginx."""

import io
from contextlib import contextmanager
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from app import create_app
from app.extensions import db
from app.wire.http import ChatHandler

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eventually(check, what, timeout=10):
    """check()'s first true result, polled until `timeout` seconds (a bound
    for a slow machine, not a target); fails saying `what` did not come."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} did not come"
        time.sleep(0.05)
    return result


def wait_until_serving(url, process, describe, timeout=20):
    """Poll `url` until it answers; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early:\n{describe()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"did not answer in time:\n{describe()}")


class ServerProcess:
    """The chat server in a child process: `python wsgi.py` (as `make run`)
    or, with production=True, gunicorn as `make serve` runs it."""

    def __init__(self, workdir, env, production=False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.production = production
        self.env = {
            **os.environ,
            "CHAT_ENV": "production" if production else "development",
            "SECRET_KEY": "test-secret-key-of-a-real-length",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
            "PYTHONUNBUFFERED": "1",
            # Tests drive many clients from one address as fast as they can;
            # the tests of the limits turn them on.
            "CHAT_RATE_LIMITS": "off",
            **env,
        }
        self.process = None

    @property
    def command(self):
        if self.production:
            gunicorn = Path(sys.executable).with_name("gunicorn")
            return [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"]
        return [sys.executable, "wsgi.py"]

    def flask(self, *args, **kwargs):
        """Run a `flask` command against this server's settings."""
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def migrate(self):
        """Bring the server's database up to date, as `make run` does."""
        self.flask("db", "upgrade", check=True)

    def start(self):
        """Start serving and wait until /healthz answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        wait_until_serving(f"{self.url}/healthz", self.process, self.log)
        return self

    def stop(self):
        """Stop the server (SIGTERM) and wait for it to exit."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        """Everything the server printed."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving(workdir, env, production=False):
    """A migrated ServerProcess, serving for the block, stopped after it."""
    server = ServerProcess(workdir, env, production)
    server.migrate()
    try:
        yield server.start()
    finally:
        server.stop()


class ThreadServer:
    """The chat app served on gevent, as `python wsgi.py` serves it (the
    chat's Engine.IO sockets, WebSocket frames and connection limits), but
    in a thread of the test process: it starts in milliseconds, and its code
    counts towards the coverage of the fast tests.

    The thread runs its own gevent hub. Clients in the test's thread talk to
    it over real sockets, as to any server.
    """

    def __init__(self, config):
        self.app = create_app(config)
        with self.app.app_context():
            db.create_all()
        self.port = None
        self.url = None
        self.records = []  # the server thread's log lines, tracebacks included
        self.errors = io.StringIO()  # what its gevent hub printed
        self.handler = None  # the class serving its connections (ChatHandler's)
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = None
        self._loop = None

    def start(self):
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the server thread did not start")
        return self

    def _serve(self):
        gevent.get_hub().exception_stream = self.errors
        self.handler = handler = ChatHandler.configured(self.app.config)
        server = WSGIServer(("127.0.0.1", 0), self.app, handler_class=handler, log=None)
        server.start()
        self._loop = gevent.get_hub().loop
        self.port = server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        stopped = gevent.event.Event()
        self._stop = gevent.get_hub().loop.async_()  # other threads may send it
        self._stop.start(stopped.set)
        capture = _ThreadLog(self.records, threading.get_ident())
        logging.getLogger().addHandler(capture)
        self._started.set()
        try:
            stopped.wait()
            server.stop(timeout=1)
        finally:
            logging.getLogger().removeHandler(capture)

    def inspect(self, look, timeout=10):
        """look(), run in the server's thread between two of its events, so
        that nothing it reads changes meanwhile; its result."""
        done, outcome = threading.Event(), {}

        def run():
            try:
                outcome["value"] = look()
            except Exception as error:  # raised again in the caller's thread
                outcome["error"] = error
            done.set()

        self._loop.run_callback_threadsafe(run)
        if not done.wait(timeout):
            raise RuntimeError("the server thread did not run the inspection")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def stop(self):
        if self._stop is not None:
            self._stop.send()
        self._thread.join(10)
        with self.app.app_context():
            db.engine.dispose()

    def log(self):
        """Everything the server logged, and its hub printed."""
        return "\n".join(self.records) + self.errors.getvalue()


class _ThreadLog(logging.Handler):
    """Keeps the formatted records (with tracebacks) logged by one thread."""

    def __init__(self, records, thread):
        super().__init__(logging.INFO)
        self.records, self.thread = records, thread
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record):
        if record.thread == self.thread:
            self.records.append(self.format(record))


class Nginx:
    """nginx with deploy/nginx.conf in front of the given chat processes."""

    def __init__(self, workdir, backends):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir / f"nginx-{self.port}"
        self.dir.mkdir()
        self.site = self.dir / "chat.conf"
        self.site.write_text(self._site(backends))
        (self.dir / "nginx.conf").write_text(self._main())
        self.process = None

    def _site(self, backends):
        """deploy/nginx.conf, listening here and proxying to `backends`."""
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        options = re.search(r"    server 127\.0\.0\.1:\d+([^;]*);", site).group(1)
        servers = "".join(
            f"    server 127.0.0.1:{server.port}{options};\n" for server in backends
        )
        site = re.sub(r"(    server 127\.0\.0\.1:\d+[^;]*;\n)+", servers, site)
        return site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")

    def _main(self):
        temp = self.dir
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
{user}
worker_processes 1;
daemon off;
pid {temp}/nginx.pid;
error_log {temp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {temp}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.site};
}}
"""

    def start(self, binary):
        """Start nginx and wait until it proxies /healthz."""
        self.process = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_until_serving(f"{self.url}/healthz", self.process, self.log)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def log(self):
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""
