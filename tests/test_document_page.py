"""The document's own page, exactly as written (its jQuery 3.4.1 and
socket.io 2.3.1, Engine.IO 3), chatting in Chromium with the chat's page,
over WebSocket and over long-polling alone."""

import html
import re
from pathlib import Path

import pytest
from browsing import delivered, expect, say
from servers import ROOT

SEED = Path("/work/shared/seeds/000_689a5df9311e1f05.txt")
SCREENSHOTS = ROOT / "docs" / "screenshots"
# What the page loads from cdnjs, served from node_modules instead.
SCRIPTS = {
    "**/ajax/libs/jquery/3.4.1/jquery.min.js": "jquery/dist/jquery.min.js",
    "**/ajax/libs/socket.io/2.3.1/socket.io.slim.js": (
        "socket.io-client-2/dist/socket.io.slim.js"
    ),
}
# A browser whose WebSockets are blocked (by a proxy, say): the page's client
# finds none, and stays on long-polling.
NO_WEBSOCKET = "Object.defineProperty(window, 'WebSocket', {value: undefined});"


def document_page(channel):
    """view/chat.html of the document, as web2py renders it for `channel`."""
    text = SEED.read_text(encoding="utf-8")
    view = re.search(r"```html\n<!-- view/chat.html -->\n\n(.*?)```", text, re.S)
    return view.group(1).replace("{{=request.vars.channel}}", html.escape(channel))


def served(path):
    """A route handler answering with the file at `path`."""
    return lambda route: route.fulfill(path=path)


@pytest.fixture
def server(start_thread_server):
    return start_thread_server()


@pytest.fixture
def open_document_page(browser, server):
    """Open the document's page in a fresh browser context, served from the
    chat's origin with its scripts from node_modules; with `websocket=False`
    in a browser without WebSockets. Returns the page and the URLs of the
    WebSockets it opens."""
    contexts = []

    def open_page(channel="lobby", websocket=True):
        context = browser.new_context()
        contexts.append(context)
        if not websocket:
            context.add_init_script(NO_WEBSOCKET)
        url = f"{server.url}/document/chat?channel={channel}"
        context.route(
            url,
            lambda route: route.fulfill(
                content_type="text/html; charset=utf-8", body=document_page(channel)
            ),
        )
        for pattern, script in SCRIPTS.items():
            context.route(pattern, served(ROOT / "node_modules" / script))
        page = context.new_page()
        websockets = []
        page.on("websocket", lambda socket: websockets.append(socket.url))
        page.goto(url)
        return page, websockets

    yield open_page
    for context in contexts:
        context.close()


def submit(page, text):
    """Type into the document page's form and send it, as a person does."""
    page.fill("#messageInput", text)
    page.click("button[type=submit]")


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "polling"])
def test_the_document_page_chats_with_the_chat_page(
    open_document_page, open_page, server, websocket
):
    modern = open_page()
    say(modern, "먼저 온 메시지")  # history for the document page's join

    page, websockets = open_document_page(websocket=websocket)
    messages = page.locator(".chat-room .message")
    expect(messages).to_have_text(["먼저 온 메시지"])
    submit(page, "안녕하세요, web2py 페이지입니다 👋")
    expect(delivered(modern)).to_have_text(
        ["먼저 온 메시지", "안녕하세요, web2py 페이지입니다 👋"]
    )
    say(modern, "반가워요")

    expected = ["먼저 온 메시지", "안녕하세요, web2py 페이지입니다 👋", "반가워요"]
    expect(messages).to_have_text(expected)
    if websocket:
        assert any("EIO=3&transport=websocket" in url for url in websockets)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 420, "height": 110})
        page.screenshot(path=SCREENSHOTS / "document-page.png")
    else:
        assert websockets == []
    assert "Traceback" not in server.log()
