"""The channel page of verified people, in real Chromium against a real
server: a person signed in at the host site chats under the name of their
token, marked as verified for everyone; guests who take the same name are
never taken for them; private channels open to a token that covers them and
say so clearly to others; the token is renewed before it expires, and
replaced when the server refuses or ends it; a page whose person is not
signed in asks them to, and never connects as a guest; without a token URL
the page is the guest page it was.

The host site is played by the test: the server's CHAT_TOKEN_URL is an
address on the chat's own origin that each browser context answers itself
(`context.route`) with a token minted here, as a site that signs people in
would. A guest's page is the chat's page told no token URL, as a deployment
without one renders it.
"""

import json
import re
import time

import jwt
import pytest
from browsing import (
    QUICK_HEARTBEAT,
    delivered,
    expect,
    say,
    screenshot,
    serious_violations,
)
from servers import serving
from tokens import SECRET, token

pytestmark = pytest.mark.server

TOKEN_PATH = "/host/chat-token"
HOUR = 3600
GRACE = 1  # seconds the server lets an expired token's connection live
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
# What the chat's page renders from CHAT_TOKEN_URL: its settings, and the
# name form it hides.
SETTINGS = re.compile(
    r'(<script type="application/json" id="chatSettings">)(.*?)(</script>)', re.S
)
HIDDEN_NAME_FORM = '<form class="name-form" autocomplete="off" hidden>'

# Packets the page sends, as the socket.io client hands them to the browser
# (WebSocket frames, long-polling bodies), and the connection states the page
# shows: recorded in the page, each with its time.
RECORDER = """
window.sentPackets = [];
const record = (data) => {
  if (typeof data === "string") window.sentPackets.push({at: Date.now(), data});
};
const sendFrame = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  record(data);
  return sendFrame.call(this, data);
};
const sendRequest = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) {
  if (typeof body === "string") body.split("\\x1e").forEach(record);
  return sendRequest.call(this, body);
};
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("connection");
  if (!status) return;
  window.states = [status.dataset.state];
  new MutationObserver(() => window.states.push(status.dataset.state))
    .observe(status, {attributes: true, attributeFilter: ["data-state"]});
});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The chat of a site that signs people in; guests admitted too."""
    env = {
        "CHAT_TOKEN_SECRET": SECRET,
        "CHAT_TOKEN_URL": TOKEN_PATH,
        "CHAT_TOKEN_LEEWAY": "0",
        "CHAT_TOKEN_GRACE": str(GRACE),
        **QUICK_HEARTBEAT,
    }
    with serving(tmp_path_factory.mktemp("identity"), env) as server:
        yield server


@pytest.fixture(scope="module")
def guest_server(tmp_path_factory):
    """The chat as it was before verified people: no token settings at all."""
    with serving(tmp_path_factory.mktemp("guests"), QUICK_HEARTBEAT) as server:
        yield server


def mint(sub, name, ttl=HOUR, channels=(), exp=None):
    """A token as the host site signs it (expiring at `exp` if given)."""
    if exp is not None:
        ttl = exp - int(time.time())
    grants = {"channels": list(channels)} if channels else {}
    return token(sub, name=name, ttl=ttl, **grants)


class Browser:
    """One person's browser (a Playwright context), and the host site's
    answers to its token URL: a token for someone signed in there, or an
    HTTP status (401: nobody is). Answers are listed in `tokens`."""

    def __init__(self, context, server):
        self.context = context
        self.server = server
        self.tokens = []  # what the token URL answered, oldest first
        context.add_init_script(RECORDER)

    def host(self, answer):
        """Answer the token URL with `answer(asked)`: a token, or a status;
        `asked` is how often it was asked before."""

        def fulfil(route):
            answered = answer(len(self.tokens))
            self.tokens.append(answered)
            if isinstance(answered, int):
                route.fulfill(status=answered, json={"error": "no token"})
            else:
                route.fulfill(json={"token": answered})

        self.context.route(f"**{TOKEN_PATH}", fulfil)
        return self

    def sign_in(self, sub, name, ttl=HOUR, channels=(), first=None):
        """Signed in as `sub`: a new token each time; `first`, the first one."""
        return self.host(
            lambda asked: (
                first if first and not asked else mint(sub, name, ttl, channels)
            )
        )

    def sign_out(self):
        """Signed out: the site answers 401."""
        return self.host(lambda asked: 401)

    def as_guest(self, name):
        """The chat's page without a token URL, for someone who chose `name`."""

        def without_token_url(route):
            response = route.fetch()
            route.fulfill(response=response, body=guest_page(response.text()))

        self.context.route(lambda url: "/chat?" in url, without_token_url)
        # Pages of the chat only: about:blank has no storage.
        self.context.add_init_script(
            f"if (location.protocol === 'http:')"
            f" localStorage.setItem('chat.name', {name!r})"
        )
        return self

    def open(self, channel, state="online"):
        """Open the channel's page and wait until it shows `state`."""
        page = self.context.new_page()
        page.goto(f"{self.server.url}/chat?channel={channel}")
        expect(page.locator("#connection")).to_have_attribute(
            "data-state", state, timeout=20_000
        )
        return page


def guest_page(html):
    """The chat's page as a deployment without CHAT_TOKEN_URL renders it."""
    assert HIDDEN_NAME_FORM in html and SETTINGS.search(html)
    html = html.replace(HIDDEN_NAME_FORM, HIDDEN_NAME_FORM.replace(" hidden", ""))
    return SETTINGS.sub(guest_settings, html)


def guest_settings(match):
    settings = json.loads(match.group(2))
    settings["tokenUrl"] = None
    return match.group(1) + json.dumps(settings) + match.group(3)


@pytest.fixture
def new_browser(browser, server):
    """Open people's browsers: `new_browser(dark=False, on=server)`."""
    contexts = []
    errors = []  # uncaught exceptions in the pages' scripts

    def open_browser(dark=False, on=server, **options):
        context = browser.new_context(
            **DESKTOP, color_scheme="dark" if dark else "light", **options
        )
        context.on(
            "page", lambda page: page.on("pageerror", lambda e: errors.append(e))
        )
        contexts.append(context)
        return Browser(context, on)

    yield open_browser
    for context in contexts:
        context.close()
    assert errors == []


def sent_events(page, name):
    """The `name` events the page sent, oldest first: [(ms, payload)]."""
    events = []
    for packet in page.evaluate("window.sentPackets"):
        # Engine.IO message (4), Socket.IO event (2), an ack id maybe, the array.
        found = re.match(r"42\d*(\[.*)", packet["data"], re.S)
        if found:
            event = json.loads(found.group(1))
            if event[0] == name:
                events.append((packet["at"], event[1]))
    return events


def states(page):
    """The connection states the page showed, each once in a row."""
    shown = page.evaluate("window.states")
    return [
        state for at, state in enumerate(shown) if at == 0 or shown[at - 1] != state
    ]


def claims(signed):
    return jwt.decode(signed, options={"verify_signature": False})


def test_a_verified_person_has_a_fixed_name_and_a_mark_no_guest_of_that_name_gets(
    new_browser, channel
):
    ann = new_browser().sign_in("ann-1", "Ann").open(channel)
    fake_ann = new_browser().as_guest("Ann").open(channel)
    observer = new_browser().as_guest("Bob").open(channel)

    expect(ann.locator(".name-form")).to_be_hidden()
    expect(ann.locator("#signedIn")).to_be_visible()
    expect(ann.locator("#signedIn")).to_have_text("Signed in as Ann")
    expect(ann.locator("#signedIn").get_by_role("img", name="verified")).to_be_visible()
    expect(fake_ann.locator("#nameInput")).to_be_visible()  # a guest keeps the field
    say(ann, "the real Ann")
    say(fake_ann, "also Ann, honestly")

    for page in (ann, fake_ann, observer):
        expect(delivered(page)).to_have_text(["the real Ann", "also Ann, honestly"])
        entries = page.locator(".chat-room .entry")
        expect(entries.locator(".author")).to_have_text(["Ann", "Ann"])
        expect(entries.nth(0).locator(".author.verified")).to_have_count(1)
        expect(entries.nth(0).get_by_role("img", name="verified")).to_have_count(1)
        expect(entries.nth(1).locator(".author.verified")).to_have_count(0)
        expect(entries.nth(1).get_by_role("img", name="verified")).to_have_count(0)
        # Two authors of one name: each message has a name line of its own.
        expect(page.locator(".chat-room .entry.continued")).to_have_count(0)
    expect(ann.locator(".entry.own .message")).to_have_text(["the real Ann"])
    expect(fake_ann.locator(".entry.own .message")).to_have_text(["also Ann, honestly"])
    expect(observer.locator(".entry.own")).to_have_count(0)
    joins = [payload for at, payload in sent_events(ann, "join")]
    assert joins and all("name" not in payload for payload in joins)


def test_a_private_channel_opens_to_a_token_that_covers_it_and_no_other(
    new_browser,
):
    ann = new_browser().sign_in("ann-2", "Ann", channels=["$team"]).open("$team")
    bob = new_browser().sign_in("bob-2", "Bob", channels=["$team"]).open("$team")
    say(ann, "for the team only")
    expect(delivered(bob)).to_have_text(["for the team only"])
    say(bob, "received")
    expect(delivered(ann)).to_have_text(["for the team only", "received"])

    eve = (
        new_browser()
        .sign_in("eve-2", "Eve", channels=["$other"])
        .open("$team", state="denied")
    )

    expect(eve.locator("#chatError")).to_have_text("You do not have access to #$team.")
    expect(eve.locator("#connection")).to_have_text("No access")
    expect(eve.locator("#messageInput")).to_be_disabled()
    eve.wait_for_timeout(2000)  # time enough to have tried again, if it did
    assert len(sent_events(eve, "join")) == 1
    expect(eve.locator(".chat-room .entry")).to_have_count(0)  # nothing leaks
    screenshot(eve, "chat-private-denied-desktop-light.png")


def test_the_token_is_renewed_before_it_expires_and_the_page_stays_connected(
    new_browser, channel
):
    ttl = 8
    person = new_browser().sign_in("ann-3", "Ann", ttl=ttl)
    page = person.open(channel)
    first_exp = claims(person.tokens[0])["exp"]

    # Past the first token's exp and the server's grace: a page that had
    # not renewed it would have been disconnected by now.
    page.wait_for_timeout((first_exp + GRACE + 2 - time.time()) * 1000)

    refreshes = sent_events(page, "refresh")
    assert refreshes, "the page never sent refresh"
    at, payload = refreshes[0]
    assert at / 1000 < first_exp
    assert payload["token"] == person.tokens[1]
    assert states(page) == ["connecting", "online"]
    say(page, "still here after the first token expired")
    expect(delivered(page)).to_have_text(["still here after the first token expired"])


def test_a_connection_the_server_ends_for_an_unrenewed_token_comes_back_with_a_new_one(
    new_browser, channel
):
    first_exp = int(time.time()) + 4

    def site(asked):
        """A first token, then down (503) until the server must have ended
        that token's connection, then up again."""
        if asked == 0:
            return mint("ann-6", "Ann", exp=first_exp)
        return 503 if time.time() < first_exp + GRACE + 1 else mint("ann-6", "Ann")

    person = new_browser().host(site)
    page = person.open(channel)

    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "offline", timeout=10_000
    )
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "online", timeout=30_000
    )
    assert 503 in person.tokens and isinstance(person.tokens[-1], str)
    say(page, "back with a new token")
    expect(delivered(page)).to_have_text(["back with a new token"])


def test_a_renewed_token_that_no_longer_grants_the_channel_shows_it_is_left(
    new_browser,
):
    first = mint("ann-7", "Ann", ttl=4, channels=["$crew"])
    person = new_browser().host(
        lambda asked: first if asked == 0 else mint("ann-7", "Ann")
    )
    page = person.open("$crew")

    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "denied", timeout=10_000
    )
    expect(page.locator("#chatError")).to_have_text(
        "You no longer have access to #$crew."
    )
    expect(page.locator("#messageInput")).to_be_disabled()
    assert sent_events(page, "refresh")


def test_a_token_the_server_finds_expired_is_replaced_at_once(new_browser, channel):
    expired = mint("ann-4", "Ann", exp=int(time.time()) - 60)
    person = new_browser().sign_in("ann-4", "Ann", first=expired)

    page = person.open(channel)

    assert person.tokens[0] == expired and len(person.tokens) == 2
    say(page, "in with the second token")
    expect(page.locator(".entry .author.verified")).to_have_text(["Ann"])


def test_signed_out_the_page_asks_to_sign_in_and_never_connects_as_a_guest(
    new_browser, channel
):
    person = new_browser().sign_out()
    socket_requests = []
    person.context.on(
        "request",
        lambda request: "/socket.io/" in request.url
        and socket_requests.append(request),
    )

    page = person.open(channel, state="signed-out")

    expect(page.locator("#connection")).to_have_text("Sign in to chat")
    expect(page.locator("#chatError")).to_contain_text("You are not signed in")
    expect(page.locator(".name-form")).to_be_hidden()
    page.wait_for_timeout(1000)
    assert socket_requests == []
    screenshot(page, "chat-signed-out-desktop-light.png")
    assert person.tokens == [401]


def test_without_a_token_url_the_page_is_the_guest_page_it_was(
    new_browser, guest_server, channel
):
    person = new_browser(on=guest_server)

    page = person.open(channel)

    settings = json.loads(page.locator("#chatSettings").text_content())
    assert settings["tokenUrl"] is None
    expect(page.locator("#nameInput")).to_be_visible()
    expect(page.locator("#signedIn")).to_be_hidden()
    page.locator("#nameInput").fill("Sam")
    page.locator("#nameInput").press("Enter")
    # A function, not an expression: the page's CSP refuses eval.
    page.wait_for_function("() => localStorage.getItem('chat.name') === 'Sam'")
    say(page, "a guest as ever")
    expect(page.locator(".entry .author")).to_have_text(["Sam"])
    expect(page.locator(".entry .author.verified")).to_have_count(0)
    assert "token" not in sent_events(page, "join")[0][1]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_verified_authors_look_marked_in_both_themes(new_browser, channel, dark):
    theme = "dark" if dark else "light"
    ann = new_browser(dark=dark, bypass_csp=True).sign_in("ann-5", "Ann").open(channel)
    fake_ann = new_browser().as_guest("Ann").open(channel)
    bob = new_browser().sign_in("bob-5", "Bob").open(channel)
    say(bob, "Morning! Is the @Ann here the real one?")
    say(fake_ann, "It is me, Ann 🙂")
    say(ann, "That is not me: look for the check after my name.")
    say(ann, "Guests cannot have it.")

    expect(delivered(ann)).to_have_count(4)
    expect(ann.locator(".chat-room .verified-badge")).to_have_count(3)
    screenshot(ann, f"chat-verified-desktop-{theme}.png")
    assert serious_violations(ann) == []
