"""What one client may hold on the wire, through real server processes and
raw sockets: request time, idle time, body size, connections per address,
and Engine.IO sessions that never become Socket.IO members."""

import json
import resource
import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import websocket
from servers import serving

pytestmark = pytest.mark.server

LIMIT = 64 * 1024  # MAX_CONTENT_LENGTH
REQUEST_TIMEOUT, KEEPALIVE_TIMEOUT, CONNECT_TIMEOUT = 2, 1, 2
PING_INTERVAL = PING_TIMEOUT = 1
CLOSE_GRACE = 5  # app.wire.websocket: seconds a client has to answer a close frame
SHORT = {
    "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    "KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
    "CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    "PING_INTERVAL": str(PING_INTERVAL),
    "PING_TIMEOUT": str(PING_TIMEOUT),
}


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory):
    """`make serve` with short timeouts and no cap per address (every test
    client connects from 127.0.0.1), shared by the tests of this module."""
    yield from _module_server(tmp_path_factory, production=True)


@pytest.fixture(scope="module")
def run_process(tmp_path_factory):
    """`make run` (python wsgi.py) with the same settings."""
    yield from _module_server(tmp_path_factory, production=False)


def _module_server(tmp_path_factory, production):
    env = {**SHORT, "MAX_CONNECTIONS_PER_ADDRESS": "0"}
    with serving(tmp_path_factory.mktemp("wire"), env, production) as server:
        yield server


@pytest.fixture
def server(serve_process):
    return serve_process


@pytest.fixture(params=["make serve", "make run"])
def either_server(request):
    """Each of the two servers in turn: both serve through ChatHandler."""
    name = {"make serve": "serve_process", "make run": "run_process"}[request.param]
    return request.getfixturevalue(name)


def connect(server):
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock, timeout):
    """Everything the server sends until it closes the connection, and
    whether it closed it within `timeout` seconds."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except OSError:  # reset: closed with our bytes unread
        pass
    return received, True


def wait_closed(sockets, deadline):
    """Read and drop what the server sends on each socket until it closes
    them; the sockets still open at `deadline` (time.monotonic())."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    still_open = set(sockets)
    while still_open and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                still_open.discard(key.fileobj)
    selector.close()
    return still_open


def close_all(sockets):
    for sock in sockets:
        sock.close()


def allow_open_files(count):
    """Raise this process's limit on open files to `count`, or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"ulimit -n is {hard}; this test needs {count}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def polling_session(server, chunked=False):
    """An Engine.IO long-polling session connected to namespace `/`."""
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=10).text[1:])["sid"]
    url = f"{base}&sid={sid}"
    body = iter([b"4", b"0"]) if chunked else b"40"  # an iterator goes chunked
    assert requests.post(url, data=body, timeout=10).text == "ok"
    assert requests.get(url, timeout=10).text.startswith("40")
    return url


def get_healthz(sock):
    """GET /healthz on a kept-alive connection; the whole response."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    head = response.split(b"\r\n\r\n")[0].lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(response) < len(head) + 4 + length:
        response += sock.recv(4096)
    return response


def post_head(server, url, *headers):
    path = url.removeprefix(server.url)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def worker_rss_kb(server):
    """VmRSS of the process that serves connections: gunicorn's worker, or
    `python wsgi.py` itself."""
    pid = server.process.pid
    if server.production:
        pid = next(child for child in _pids() if _field(child, "PPid") == pid)
    return _field(pid, "VmRSS")


def _pids():
    return [
        int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
    ]


def _field(pid, name):
    """A number from /proc/<pid>/status (kB for sizes), or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile
        return None
    for line in status.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return None


# Request bodies


@pytest.mark.parametrize("length", [LIMIT + 1, 200 * 1024 * 1024])
def test_a_body_announced_over_the_limit_is_refused_unread(either_server, length):
    server = either_server
    url = polling_session(server)
    sock = connect(server)
    started = time.monotonic()

    # The head alone: the answer comes without a byte of the body sent.
    sock.sendall(
        post_head(
            server,
            url,
            "Content-Type: text/plain;charset=UTF-8",
            f"Content-Length: {length}",
            "Expect: 100-continue",
        )
    )
    answer, closed = read_until_closed(sock, 5)
    elapsed = time.monotonic() - started
    sock.close()

    assert answer.startswith(b"HTTP/1.1 413 ")  # and no 100 Continue first
    assert closed and elapsed < 1
    assert requests.get(url, timeout=10).status_code == 200  # the session lives
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_streamed_body_is_cut_off_at_the_limit_and_memory_stays_flat(server, framing):
    url = polling_session(server)
    block = b"4" * (1024 * 1024)
    if framing == "chunked":
        head = post_head(server, url, "Transfer-Encoding: chunked")
        block = b"%x\r\n%s\r\n" % (len(block), block)
    else:
        head = post_head(server, url, f"Content-Length: {200 * len(block)}")
    sock = connect(server)
    sock.sendall(head + block)  # one refusal first, so both sides are warm
    read_until_closed(sock, 5)
    sock.close()
    before = worker_rss_kb(server)

    sock = connect(server)
    sock.settimeout(5)
    sent = 0
    try:
        sock.sendall(head)
        while sent < 200 * 1024 * 1024:
            sock.sendall(block)
            sent += len(block)
    except OSError:
        pass  # the server has closed the connection (or stopped reading)
    answer, closed = read_until_closed(sock, 5)
    sock.close()
    grown = worker_rss_kb(server) - before

    # Only socket buffers took more than the limit before the server shut.
    assert sent < 32 * 1024 * 1024
    assert closed
    # The 413 when it could be read before the reset of the unread body.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 ")
    assert grown < 5 * 1024, f"the worker grew by {grown} KB"
    print(f"\n{framing}: {sent / 2**20:.0f} MiB sent before the cut, RSS +{grown} KB")


def test_a_body_at_the_limit_reaches_engineio(server):
    url = polling_session(server)

    # An event of no handler, exactly LIMIT bytes long.
    event = b'42["unheard","' + b"x" * (LIMIT - 16) + b'"]'
    answer = requests.post(url, data=event, timeout=10)

    assert len(event) == LIMIT
    assert answer.status_code == 200 and answer.text == "ok"


def test_a_chunked_body_within_the_limit_is_served(server):
    polling_session(server, chunked=True)  # "40" in two chunks connects


# Time to send a request, and idle time between requests


def test_a_request_that_stalls_is_closed_after_the_request_timeout(either_server):
    server = either_server
    url = polling_session(server)
    stalls = [
        b"",  # connected, and nothing sent
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # headers never end
        b"GET / HT",  # the request line never ends
        post_head(server, url, "Content-Length: 100") + b"4",  # body short
    ]
    sockets = [connect(server) for _ in stalls]
    started = time.monotonic()
    for sock, data in zip(sockets, stalls):
        sock.sendall(data)

    open_until_timeout = wait_closed(sockets, started + REQUEST_TIMEOUT - 0.5)
    still_open = wait_closed(open_until_timeout, started + REQUEST_TIMEOUT + 1.5)
    close_all(sockets)

    assert len(open_until_timeout) == len(stalls)
    assert not still_open
    assert "Traceback" not in server.log()


def test_too_many_headers_are_a_bad_request_without_a_traceback(server):
    sock = connect(server)
    headers = "".join(f"X-{number}: {number}\r\n" for number in range(101))
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())

    answer, closed = read_until_closed(sock, 5)
    sock.close()

    assert answer.startswith(b"HTTP/1.1 400 ") and closed
    assert "Traceback" not in server.log()


def test_an_idle_kept_alive_connection_is_closed(either_server):
    server = either_server
    sock = connect(server)
    response = get_healthz(sock)
    idle_from = time.monotonic()

    _, closed = read_until_closed(sock, KEEPALIVE_TIMEOUT + 2)
    idle = time.monotonic() - idle_from
    sock.close()

    assert response.startswith(b"HTTP/1.1 200 ")
    assert closed and KEEPALIVE_TIMEOUT - 0.2 < idle < KEEPALIVE_TIMEOUT + 1


def test_a_thousand_half_open_connections_neither_slow_the_server_nor_stay(server):
    allow_open_files(2500)
    started = time.monotonic()
    half_open = []
    try:
        for _ in range(1000):
            half_open.append(connect(server))
            half_open[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        asked = time.monotonic()
        health = requests.get(f"{server.url}/healthz", timeout=10)
        latency = time.monotonic() - asked

        still_open = wait_closed(half_open, started + REQUEST_TIMEOUT + 3)
        closed_after = time.monotonic() - started
    finally:
        close_all(half_open)

    assert health.status_code == 200
    assert latency < 2.5, f"/healthz took {latency:.2f} s"
    assert not still_open, f"{len(still_open)} of 1000 still open"
    print(f"\n/healthz beside 1,000 half-open: {latency * 1000:.0f} ms; all closed")
    print(f"{closed_after:.1f} s after the first opened")


# Connections per address


@pytest.mark.parametrize("production", [True, False], ids=["make serve", "make run"])
def test_connections_over_the_cap_per_address_are_refused_at_once(
    start_server, production
):
    server = start_server(
        production=production, MAX_CONNECTIONS_PER_ADDRESS="5", REQUEST_TIMEOUT="30"
    )
    held = [connect(server) for _ in range(4)]
    kept = connect(server)  # answered, so the server has taken all five
    assert get_healthz(kept).startswith(b"HTTP/1.1 200 ")
    held.append(kept)

    sixth = connect(server)
    started = time.monotonic()
    answer, closed = read_until_closed(sixth, 5)
    refused_in = time.monotonic() - started
    sixth.close()
    held.pop(0).close()  # one fewer: room for another
    deadline = time.monotonic() + 3
    while True:
        try:
            again = requests.get(f"{server.url}/healthz", timeout=5).status_code
        except requests.ConnectionError:
            again = None
        if again == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    close_all(held)

    assert answer.startswith(b"HTTP/1.1 503 ")
    assert closed and refused_in < 1
    assert again == 200
    assert "Traceback" not in server.log()


# Engine.IO sessions


def test_a_polling_session_whose_client_stops_polling_expires(server):
    url = polling_session(server)

    # Not a request meanwhile: a poll would be the client still polling.
    time.sleep(PING_INTERVAL + PING_TIMEOUT + 2)

    assert requests.get(url, timeout=10).status_code == 400  # unknown session


def websocket_handshake(server):
    """A raw WebSocket to Engine.IO, upgraded and then silent."""
    sock = connect(server)
    sock.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % server.port
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    return sock


def test_silent_websockets_are_dropped_after_the_ping_timeout(server):
    allow_open_files(500)
    started = time.monotonic()
    silent = [websocket_handshake(server) for _ in range(100)]

    # Pinged after the interval, unanswered for the timeout, then closed; a
    # client that ignores the close frame too is shut after CLOSE_GRACE.
    deadline = started + PING_INTERVAL + PING_TIMEOUT + CLOSE_GRACE + 3
    still_open = wait_closed(silent, deadline)
    close_all(silent)

    assert not still_open, f"{len(still_open)} of 100 still open"
    assert "Traceback" not in server.log()


def answer_pings(raw, seconds):
    """Answer pings for `seconds`; the frames received, and how long the
    connection lasted if the server closed it."""
    frames, started = [], time.monotonic()
    while (left := started + seconds - time.monotonic()) > 0:
        raw.settimeout(left)
        try:
            frame = raw.recv()
        except websocket.WebSocketTimeoutException:
            break
        except (websocket.WebSocketConnectionClosedException, OSError):
            return frames, time.monotonic() - started
        frames.append(frame)
        if frame == "2":
            raw.send("3")
    return frames, None


def test_an_engineio_session_that_never_connects_to_socketio_is_closed(server):
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    stray = websocket.create_connection(url, timeout=10)
    member = websocket.create_connection(url, timeout=10)
    assert stray.recv().startswith("0") and member.recv().startswith("0")
    member.send("40")
    watch = CONNECT_TIMEOUT + PING_INTERVAL + 2

    with ThreadPoolExecutor(2) as pool:
        stray_seen = pool.submit(answer_pings, stray, watch)
        member_seen = pool.submit(answer_pings, member, watch)
        stray_frames, stray_lasted = stray_seen.result()
        member_frames, member_lasted = member_seen.result()
    stray.close()
    member.close()

    assert stray_lasted is not None and stray_lasted < watch  # closed, in time
    assert "1" in stray_frames  # by Engine.IO's close packet
    assert member_lasted is None  # a member answering pings stays
    assert "Traceback" not in server.log()
