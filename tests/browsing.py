"""Driving the chat's page in Chromium: helpers shared by the browser tests.

The `browser` fixture itself is in conftest.py.
"""

from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# Servers the pages talk to ping every 5 s with 5 s to answer. A server that
# stops while a page is moving from long-polling to a WebSocket leaves
# socket.io-client's long-polling paused, with no request to fail: the page
# learns that the server is gone from the heartbeat alone, which takes the
# ping interval plus the timeout (45 s with the defaults).
QUICK_HEARTBEAT = {"PING_INTERVAL": "5", "PING_TIMEOUT": "5"}


def send(page, text):
    """Type a message and press Enter."""
    page.fill("#messageInput", text)
    page.press("#messageInput", "Enter")


def say(page, text):
    """Send a message and wait until the server has it (nothing pending), so
    that messages said one after another are stored in that order."""
    send(page, text)
    expect(page.locator(".chat-room .entry.pending")).to_have_count(0)


def delivered(page):
    """The texts of the messages the server delivered: no pending ones."""
    return page.locator(".chat-room .entry:not(.pending) .message")
