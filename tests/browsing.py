"""Driving the chat's page in Chromium: helpers shared by the browser tests.

The `browser` fixture itself is in conftest.py.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"  # the documentation's
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

# Servers the pages talk to ping every 5 s with 5 s to answer. A server that
# stops while a page is moving from long-polling to a WebSocket leaves
# socket.io-client's long-polling paused, with no request to fail: the page
# learns that the server is gone from the heartbeat alone, which takes the
# ping interval plus the timeout (45 s with the defaults).
QUICK_HEARTBEAT = {"PING_INTERVAL": "5", "PING_TIMEOUT": "5"}


# What the chat's page renders from CHAT_TOKEN_URL: its settings, and the
# name form it hides.
SETTINGS = re.compile(
    r'(<script type="application/json" id="chatSettings">)(.*?)(</script>)', re.S
)
HIDDEN_NAME_FORM = '<form class="name-form" autocomplete="off" hidden>'


def host_site(context, path, mint):
    """Play the host site for a browser: answer its requests for the chat's
    token URL (`path`, as CHAT_TOKEN_URL) with `{token: mint()}`, a new token
    each time, as a site answers for the person signed in there."""
    context.route(f"**{path}", lambda route: route.fulfill(json={"token": mint()}))


def guest_pages(context):
    """Serve this browser the chat's page as a deployment without
    CHAT_TOKEN_URL renders it: a guest's page, with the name form."""

    def without_token_url(route):
        response = route.fetch()
        html = response.text()
        assert HIDDEN_NAME_FORM in html and SETTINGS.search(html)
        html = html.replace(HIDDEN_NAME_FORM, HIDDEN_NAME_FORM.replace(" hidden", ""))
        route.fulfill(response=response, body=SETTINGS.sub(_guest_settings, html))

    context.route(lambda url: "/chat?" in url, without_token_url)


def _guest_settings(match):
    settings = json.loads(match.group(2))
    settings["tokenUrl"] = None
    return match.group(1) + json.dumps(settings) + match.group(3)


def joined(page, timeout=20_000):
    """Wait until the page is online and its join is acked: the presence
    line, which the join's ack fills, counts who is online. (Online alone
    is not joined: what is posted before the ack arrives in the history,
    which keeps only the channel's newest messages.)"""
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "online", timeout=timeout
    )
    expect(page.locator("#presence")).to_contain_text(" online: ", timeout=timeout)


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


def screenshot(page, name, readme=False):
    """Save a screenshot in test-artifacts/. The documentation's go to
    docs/screenshots/ too when missing or with SAVE_SCREENSHOTS=1 (they show
    the time of day, so saving them on every run would change them on
    every run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name)
    if readme and (
        os.environ.get("SAVE_SCREENSHOTS") == "1" or not (SCREENSHOTS / name).exists()
    ):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)


def serious_violations(page):
    """axe-core's serious and critical findings on the page, as text."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations
            .filter(v => ["serious", "critical"].includes(v.impact))
            .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(" ")).join(", ")}`);
    }""")
    return found
