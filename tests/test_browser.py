"""The channel page in real Chromium, against a real server process."""

import os
import shutil

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

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
    """Open the channel page in a fresh browser context, connected."""
    contexts = []

    def open_channel(channel="lobby"):
        contexts.append(browser.new_context())
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
