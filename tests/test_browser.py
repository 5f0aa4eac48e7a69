"""The channel page in real Chromium, against a real server process."""

import os
import shutil
from pathlib import Path

import requests

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # Without this, this Chromium refuses WebSockets to 127.0.0.1.
    "--disable-features=LocalNetworkAccessChecks",
]
pytestmark = pytest.mark.server


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package); skipped outside CI when missing."""
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
def server(start_server):
    return start_server()


@pytest.fixture
def open_page(browser, server):
    """Open the channel page in a fresh browser context, connected; with a
    name, as someone who chose that name before."""
    contexts = []

    def open_channel(channel="lobby", name=None, **context_options):
        contexts.append(browser.new_context(**context_options))
        if name:
            contexts[-1].add_init_script(f"localStorage.setItem('chat.name', {name!r})")
        page = contexts[-1].new_page()
        page.goto(f"{server.url}/chat?channel={channel}")
        expect(page.locator("#connection")).to_have_attribute("data-state", "online")
        return page

    yield open_channel
    for context in contexts:
        context.close()


def say(page, text):
    page.fill("#messageInput", text)
    page.press("#messageInput", "Enter")


def test_two_tabs_exchange_messages_both_ways(open_page):
    alice, bob = open_page(), open_page()

    say(alice, "안녕하세요, bob 👋")
    expect(bob.locator(".chat-room .message")).to_have_text(["안녕하세요, bob 👋"])
    say(bob, "hi alice")

    expected = ["안녕하세요, bob 👋", "hi alice"]
    expect(alice.locator(".chat-room .message")).to_have_text(expected)
    expect(bob.locator(".chat-room .message")).to_have_text(expected)


def test_a_tab_opened_later_shows_the_newest_ten(open_page):
    first = open_page()
    for number in range(1, 13):
        say(first, f"message {number}")
    expect(first.locator(".message").last).to_have_text("message 12")

    later = open_page()

    expected = [f"message {number}" for number in range(3, 13)]
    expect(later.locator(".chat-room .message")).to_have_text(expected)


def test_markup_shows_as_text_and_runs_nothing(open_page):
    sender, reader = open_page(), open_page()
    markup = '<img src=x onerror="window.pwned=1"><b>bold</b>'

    say(sender, markup)

    expect(reader.locator(".chat-room .message")).to_have_text([markup])
    assert reader.locator(".chat-room img, .chat-room b").count() == 0
    assert reader.evaluate("window.pwned") is None


def test_reload_shows_exactly_the_retained_history(open_page):
    page = open_page()
    for number in range(1, 13):
        say(page, f"message {number}")
    expect(page.locator(".message").last).to_have_text("message 12")

    page.reload()

    expected = [f"message {number}" for number in range(3, 13)]
    expect(page.locator(".chat-room .message")).to_have_text(expected)


def post(server, text):
    response = requests.post(
        f"{server.url}/api/channels/lobby/messages", json={"message": text}, timeout=10
    )
    assert response.status_code == 201


def test_page_catches_up_after_the_server_restarts(open_page, server, start_server):
    page = open_page()
    say(page, "before")
    expect(page.locator(".message")).to_have_text(["before"])

    server.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    expect(page.locator("#messageInput")).to_be_disabled()
    # Another process on the same database takes messages meanwhile.
    other = start_server()
    post(other, "while away 1")
    post(other, "while away 2")
    server.start()

    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    expected = ["before", "while away 1", "while away 2"]
    expect(page.locator(".chat-room .message")).to_have_text(expected)
    assert page.locator(".gap").count() == 0


def test_page_marks_a_gap_when_missed_messages_were_pruned(
    open_page, server, start_server
):
    page = open_page()
    say(page, "before")
    expect(page.locator(".message")).to_have_text(["before"])

    server.stop()
    other = start_server()
    for number in range(1, 13):
        post(other, f"away {number}")
    server.start()

    expected = [f"away {number}" for number in range(3, 13)]
    expect(page.locator(".chat-room .message")).to_have_text(expected, timeout=20_000)
    expect(page.locator(".gap")).to_have_count(1)


def test_presence_and_typing_show_on_the_other_page(open_page):
    ann = open_page(name="ann")
    bob = open_page(name="bob")

    expect(ann.locator("#presence")).to_have_text("2 online: ann, bob")
    expect(bob.locator("#presence")).to_have_text("2 online: ann, bob")

    ann.locator("#messageInput").press_sequentially("hel")
    expect(bob.locator("#typing")).to_have_text("ann is typing…")
    expect(bob.locator("#typing")).to_have_text("", timeout=10_000)  # it expires

    bob.close()
    expect(ann.locator("#presence")).to_have_text("1 online: ann")


def test_own_messages_are_told_apart(open_page):
    ann, bob = open_page(name="ann"), open_page(name="bob")

    say(ann, "mine")

    expect(ann.locator(".entry.own .message")).to_have_text(["mine"])
    expect(bob.locator(".entry .message")).to_have_text(["mine"])
    assert bob.locator(".entry.own").count() == 0


def test_unread_count_shows_in_the_title_while_hidden(open_page):
    reader, writer = open_page(), open_page()
    reader.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")

    say(writer, "one")
    say(writer, "two")

    expect(reader).to_have_title("(2) #lobby · Channel Chat")


def test_reading_older_messages_is_not_yanked_to_the_bottom(open_page):
    reader, writer = open_page(), open_page()
    for number in range(1, 11):
        say(writer, f"filler {number} " + "word " * 40)
    expect(reader.locator(".message")).to_have_count(10)
    reader.locator(".chat-room").evaluate("room => room.scrollTop = 0")

    say(writer, "new while reading")

    expect(reader.locator("#jumpToLatest")).to_be_visible()
    assert reader.locator(".chat-room").evaluate("room => room.scrollTop") == 0
    reader.click("#jumpToLatest")
    expect(reader.locator("#jumpToLatest")).to_be_hidden()


def test_conversation_screenshot_on_a_phone(open_page):
    phone = {"viewport": {"width": 390, "height": 780}, "device_scale_factor": 2}
    ann = open_page(name="민수", **phone)
    bob = open_page(name="bob")
    say(ann, "안녕하세요! 오늘 회의는 몇 시인가요? 🙂")
    say(bob, "3시에 시작해요 👍")
    say(ann, "<b>markup</b> stays text")
    bob.wait_for_timeout(1100)  # past the server's typing throttle
    bob.locator("#messageInput").press_sequentially("see you")
    expect(ann.locator(".message")).to_have_count(3)
    expect(ann.locator("#typing")).to_have_text("bob is typing…")

    ARTIFACTS.mkdir(exist_ok=True)
    ann.screenshot(path=ARTIFACTS / "conversation-phone.png")

    assert (ARTIFACTS / "conversation-phone.png").stat().st_size > 10_000
    width = ann.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
