"""Other origins against the chat, in real Chromium: a hostile page on
another origin cannot store messages or frame the chat, and the chat's own
page works under its Content-Security-Policy."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from servers import free_port
from browsing import ARTIFACTS, expect, say

pytestmark = pytest.mark.server


class OtherOrigin:
    """A tiny web server on another port serving the pages a test gives it,
    reached as http://HOST:PORT; `localhost` is another site than the chat's
    127.0.0.1, `127.0.0.1` the same site on another port."""

    def __init__(self):
        self.pages = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path, "not found").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host, path):
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_origin():
    server = OtherOrigin()
    yield server
    server.close()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def context(browser):
    context = browser.new_context()
    yield context
    context.close()


class Watched:
    """A page with what it printed to the console, the WebSockets it opened
    and their frames, and (window.violations) the Content Security Policy
    violations its documents reported."""

    def __init__(self, context):
        self.page = context.new_page()
        self.console = []
        self.websockets = []
        self.frames = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("websocket", self._opened)
        self.page.add_init_script(
            "window.violations = [];"
            "document.addEventListener('securitypolicyviolation', (event) =>"
            "  window.violations.push(event.violatedDirective + ' ' + event.blockedURI));"
        )

    def _opened(self, socket):
        self.websockets.append(socket.url)
        socket.on("framereceived", lambda frame: self.frames.append(frame))

    def csp_complaints(self):
        return [text for text in self.console if "Content Security Policy" in text]


def channels(server):
    """What the chat stores, over HTTP: the channels that have messages."""
    response = requests.get(f"{server.url}/api/channels", timeout=10)
    return response.json()["channels"]


def wait_until(page, done, timeout=10):
    """Let the page run until done() holds (events are delivered meanwhile)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return done()


def hostile_page(chat):
    """Every way a page may send a write to another origin without asking."""
    api = f"{chat}/api/channels/attacked/messages"
    action = f"{chat}/websocket_handler"
    return f"""<!doctype html>
<title>Not the chat</title>
<h1>Hostile page</h1>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="post" enctype="text/plain" target="sink1" action="{api}">
  <input name='{{"message": "text/plain form", "pad": "' value='"}}'>
</form>
<form id="action" method="post" target="sink2" action="{action}">
  <input name="channel" value="attacked"><input name="message" value="form">
</form>
<img src="{action}?channel=attacked&amp;message=img" alt="">
<script>
  document.getElementById("plain").submit();
  document.getElementById("action").submit();
  fetch("{api}", {{
    method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{message: "no-cors fetch"}}),
  }});
  // A JSON content type needs a CORS preflight, which the chat never grants.
  fetch("{api}", {{
    method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{message: "cors fetch"}}),
  }}).catch(() => document.title = "cors fetch refused");
</script>
"""


class Wire:
    """What the chat answered a page's requests, as the browser's network
    stack saw them, including answers the page may not read (an image's,
    hidden by Opaque Response Blocking, or a frame's it refuses to show)."""

    def __init__(self, context, page, server):
        self.page = page
        self.chat = server.url
        self.sent = {}
        self.statuses = {}
        devtools = context.new_cdp_session(page)
        devtools.on("Network.requestWillBeSent", self._sent)
        devtools.on("Network.responseReceivedExtraInfo", self._answered)
        devtools.send("Network.enable")

    def _sent(self, event):
        request = event["request"]
        if request["url"].startswith(self.chat) and request["method"] != "OPTIONS":
            path = request["url"].removeprefix(self.chat)
            self.sent[event["requestId"]] = (request["method"], path)

    def _answered(self, event):
        self.statuses[event["requestId"]] = event["statusCode"]

    def answers(self):
        """(method, path, status) of each request, sorted; status None for
        a request the chat never saw."""
        return sorted(
            (
                (method, path, self.statuses.get(request_id))
                for request_id, (method, path) in self.sent.items()
            ),
            key=lambda answer: (answer[0], answer[1], answer[2] or 0),
        )

    def wait_for(self, count):
        """Wait until `count` requests were answered; return answers()."""
        assert wait_until(
            self.page, lambda: sum(a[2] is not None for a in self.answers()) >= count
        ), self.answers()
        return self.answers()


API = "/api/channels/attacked/messages"
ACTION = "/websocket_handler"
IMAGE = "/websocket_handler?channel=attacked&message=img"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["cross", "same"])
def test_a_page_of_another_origin_stores_nothing(server, other_origin, context, host):
    other_origin.pages["/attack"] = hostile_page(server.url)
    page = context.new_page()
    wire = Wire(context, page, server)

    page.goto(other_origin.url(host, "/attack"))

    expect(page).to_have_title("cors fetch refused")
    assert wire.wait_for(4) == [
        ("GET", IMAGE, 403),
        ("POST", API, None),  # the CORS fetch, stopped at its preflight
        ("POST", API, 403),  # the text/plain form
        ("POST", API, 403),  # the no-cors fetch
        ("POST", ACTION, 403),  # the form
    ]
    assert channels(server) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"cross-site-{host}.png")


def test_an_origin_allowed_to_open_sockets_may_write(
    start_server, other_origin, context
):
    """CORS_ALLOWED_ORIGINS trusts what a page of that origin sends with its
    Origin: forms and fetches, but not images (no Origin); the API still
    takes JSON alone."""
    trusted = other_origin.url("localhost", "")
    server = start_server(CORS_ALLOWED_ORIGINS=trusted)
    other_origin.pages["/attack"] = hostile_page(server.url)
    page = context.new_page()
    wire = Wire(context, page, server)

    page.goto(f"{trusted}/attack")

    assert wire.wait_for(4) == [
        ("GET", IMAGE, 403),
        ("POST", API, None),
        ("POST", API, 415),
        ("POST", API, 415),
        ("POST", ACTION, 200),
    ]
    response = requests.get(f"{server.url}{API}", timeout=10)
    assert [message["message"] for message in response.json()["messages"]] == ["form"]


def test_the_chat_page_works_under_its_policy(server, context):
    watched = Watched(context)

    watched.page.goto(f"{server.url}/chat?channel=lobby")
    expect(watched.page.locator("#connection")).to_have_attribute(
        "data-state", "online"
    )
    say(watched.page, "안녕, under the policy")

    expect(
        watched.page.locator(".chat-room .entry:not(.pending) .message")
    ).to_have_text(["안녕, under the policy"])
    assert [channel["name"] for channel in channels(server)] == ["lobby"]
    # connect-src 'self' lets the page upgrade to a WebSocket to its host,
    # and the message came back over it.
    assert [url.split("?")[0] for url in watched.websockets] == [
        server.url.replace("http://", "ws://") + "/socket.io/"
    ]
    assert any("under the policy" in frame for frame in watched.frames)
    assert watched.page.evaluate("window.violations") == []
    assert watched.csp_complaints() == []
    ARTIFACTS.mkdir(exist_ok=True)
    watched.page.screenshot(path=ARTIFACTS / "csp-chat-page.png")


def test_the_chat_page_may_post_to_the_api(server, context):
    page = context.new_page()
    page.goto(f"{server.url}/chat?channel=lobby")

    status = page.evaluate("""() => fetch("/api/channels/lobby/messages", {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({message: "same origin"}),
        }).then((response) => response.status)""")

    assert status == 201


def framing_page(chat):
    """A page that shows the chat's lobby in a frame."""
    return (
        "<!doctype html><title>Framer</title>"
        f'<iframe src="{chat}/chat?channel=lobby" width="600" height="400"></iframe>'
    )


def test_another_origin_cannot_frame_the_chat(server, other_origin, context):
    other_origin.pages["/frame"] = framing_page(server.url)
    watched = Watched(context)

    watched.page.goto(other_origin.url("localhost", "/frame"))

    assert wait_until(
        watched.page, lambda: any("frame-ancestors" in t for t in watched.console)
    ), watched.console
    frame = watched.page.frames[1]
    assert not frame.url.startswith(server.url)
    assert frame.locator(".chat-room").count() == 0
    assert watched.websockets == []
    ARTIFACTS.mkdir(exist_ok=True)
    watched.page.screenshot(path=ARTIFACTS / "cross-site-frame-blocked.png")


def test_an_operator_may_let_an_origin_frame_the_chat(
    start_server, other_origin, context
):
    framer = other_origin.url("localhost", "")
    server = start_server(CHAT_FRAME_ANCESTORS=f"'self' {framer}")
    other_origin.pages["/frame"] = framing_page(server.url)
    watched = Watched(context)

    watched.page.goto(other_origin.url("localhost", "/frame"))

    chat = watched.page.frame_locator("iframe")
    expect(chat.locator("#connection")).to_have_attribute("data-state", "online")
    assert watched.csp_complaints() == []
