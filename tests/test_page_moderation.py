"""Moderation on the channel page, in real Chromium against a real server:
authors edit and delete their own messages in place, moderators delete
anyone's, guests neither, and every member's page shows the change where
the message was (and after a reload); a banned person is told why and until
when, and the page stays away; slow mode holds a message back, counts the
wait down by the message box and sends it by itself; an operator's
disconnect is a short absence, after which the page shows what changed.

The host site is played by the test, as in test_page_identity.py: the
server's CHAT_TOKEN_URL is an address on the chat's own origin that each
browser context answers itself with a token minted here. Operators act
through the operator API with the server's CHAT_API_KEY.
"""

import re
from urllib.parse import quote

import pytest
import requests
from browsing import (
    QUICK_HEARTBEAT,
    delivered,
    expect,
    guest_pages,
    host_site,
    joined,
    say,
    screenshot,
    send,
    serious_violations,
)
from servers import serving
from tokens import SECRET, token

pytestmark = pytest.mark.server

TOKEN_PATH = "/host/chat-token"
API_KEY = "an-operator-key-for-the-page-tests"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
SETTINGS = {
    "CHAT_TOKEN_SECRET": SECRET,
    "CHAT_TOKEN_URL": TOKEN_PATH,
    "CHAT_API_KEY": API_KEY,
    **QUICK_HEARTBEAT,
}
TOMBSTONE = re.compile(r"\bdeleted\b")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The chat of a site that signs people in, with the operator API on."""
    with serving(tmp_path_factory.mktemp("moderation"), SETTINGS) as server:
        yield server


@pytest.fixture
def open_page(browser, server, channel):
    """Open the test's channel in a person's own browser, joined:
    `open_page(sub, name, role=None, dark=False, on=server, **options)`;
    signed in at the host site as `sub` (a moderator with
    role="moderator"), or a guest called `name` when `sub` is None."""
    contexts = []
    errors = []  # uncaught exceptions in the pages' scripts

    def open_channel(sub, name, role=None, dark=False, on=server, **options):
        context = browser.new_context(
            **{**DESKTOP, **options}, color_scheme="dark" if dark else "light"
        )
        context.on(
            "page", lambda page: page.on("pageerror", lambda e: errors.append(e))
        )
        contexts.append(context)
        if sub is None:
            guest_pages(context)
            context.add_init_script(
                f"if (location.protocol === 'http:')"
                f" localStorage.setItem('chat.name', {name!r})"
            )
        else:
            claims = {"role": role} if role else {}
            host_site(context, TOKEN_PATH, lambda: token(sub, name=name, **claims))
        page = context.new_page()
        page.goto(f"{on.url}/chat?channel={quote(channel)}")
        joined(page)
        return page

    yield open_channel
    for context in contexts:
        context.close()
    assert errors == []


def operator(server, method, path, **kwargs):
    """Call the operator API with the server's key; its JSON answer."""
    response = requests.request(
        method,
        f"{server.url}/api{path}",
        headers={"X-API-Key": API_KEY},
        timeout=10,
        **kwargs,
    )
    assert response.ok, response.text
    return response.json()


def stored(server, channel):
    """The texts the server keeps for a channel, oldest first."""
    answer = requests.get(f"{server.url}/api/channels/{quote(channel)}/messages")
    return [message["message"] for message in answer.json()["messages"]]


def entries(page):
    return page.locator(".chat-room .entry")


def tool(entry, name):
    """The entry's tool button called `name` ("Edit message", "Delete
    message"), shown as a mouse shows it: by pointing at the message."""
    entry.hover()
    return entry.get_by_role("button", name=name)


def tools_on(page, text):
    """The tools a page offers on the message saying `text`."""
    entry = entries(page).filter(has_text=text)
    expect(entry).to_have_count(1)
    return entry.locator(".tools button").all_text_contents()


def expect_tombstone(page, at, count):
    """The page shows `count` entries, the one at `at` a deleted message."""
    expect(entries(page)).to_have_count(count)
    expect(entries(page).nth(at)).to_have_class(TOMBSTONE)
    expect(entries(page).nth(at).locator(".tombstone")).to_have_text("message deleted")
    expect(entries(page).nth(at).locator(".author, .message, .tools")).to_have_count(0)


def test_an_author_edits_a_message_in_place_and_everyone_sees_it_edited(open_page):
    ann = open_page("ann-edit", "Ann")
    bob = open_page("bob-edit", "Bob")
    say(ann, "See you at 10")
    expect(delivered(bob)).to_have_text(["See you at 10"])

    entry = entries(ann).first
    tool(entry, "Edit message").click()
    box = entry.locator(".editor textarea")
    expect(box).to_be_focused()
    expect(box).to_have_value("See you at 10")
    box.fill("See you at 11")
    box.press("Enter")

    expect(entry.locator(".editor")).to_have_count(0)
    for page in (ann, bob):
        expect(delivered(page)).to_have_text(["See you at 11"])
        label = page.locator(".chat-room .entry .edited")
        expect(label).to_have_text("(edited)")
        expect(label).to_have_attribute("title", re.compile(r"^Edited \w+"))
    bob.reload()
    joined(bob)
    expect(delivered(bob)).to_have_text(["See you at 11"])
    expect(bob.locator(".chat-room .entry .edited")).to_have_text("(edited)")


def test_editing_works_from_the_keyboard_alone(open_page):
    ann = open_page("ann-keys", "Ann")
    say(ann, "first draft")

    ann.focus(".chat-room")
    ann.keyboard.press("Tab")
    edit = ann.get_by_role("button", name="Edit message")
    expect(edit).to_be_focused()
    tools = ann.locator(".chat-room .entry .tools")
    assert tools.evaluate("bar => getComputedStyle(bar).opacity") == "1"

    # Escape cancels, and the focus comes back to Edit.
    ann.keyboard.press("Enter")
    expect(ann.locator(".editor textarea")).to_be_focused()
    ann.keyboard.type(" changed")
    ann.keyboard.press("Escape")
    expect(ann.locator(".editor")).to_have_count(0)
    expect(delivered(ann)).to_have_text(["first draft"])
    expect(edit).to_be_focused()

    # Shift+Enter is a new line; Enter saves.
    ann.keyboard.press("Enter")
    ann.keyboard.press("Shift+Enter")
    ann.keyboard.type("and a second line")
    ann.keyboard.press("Enter")
    expect(ann.locator(".chat-room .entry .edited")).to_have_count(1)
    assert delivered(ann).all_text_contents() == ["first draft\nand a second line"]


def test_a_refused_edit_says_why_in_place_and_stays_open(open_page):
    ann = open_page("ann-refused", "Ann")
    say(ann, "short")
    entry = entries(ann).first
    tool(entry, "Edit message").click()

    box = entry.locator(".editor textarea")
    box.fill("a\u0007bell")  # a control character: invalid_message
    box.press("Enter")

    reason = entry.locator(".editor .reason")
    expect(reason).to_have_text(re.compile(r"^Not saved: .*control characters"))
    expect(box).to_have_value("a\u0007bell")
    expect(delivered(ann)).to_have_text(["short"])
    box.press("Escape")
    expect(entry.locator(".editor")).to_have_count(0)


def test_an_author_deletes_a_message_after_confirming_and_it_stays_a_tombstone(
    open_page, server, channel
):
    ann = open_page("ann-delete", "Ann")
    bob = open_page("bob-delete", "Bob")
    for text in ("one", "oops, wrong channel", "three"):
        say(ann, text)
    expect(delivered(bob)).to_have_count(3)

    entry = entries(ann).nth(1)
    tool(entry, "Delete message").click()
    confirm = entry.locator(".confirm")
    expect(confirm).to_contain_text("Delete this message for everyone?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Cancel").click()  # nothing deleted
    expect(confirm).to_have_count(0)
    expect(delivered(ann)).to_have_count(3)

    tool(entry, "Delete message").click()
    entry.locator(".confirm").get_by_role("button", name="Delete", exact=True).click()

    for page in (ann, bob):
        expect_tombstone(page, 1, 3)
        expect(delivered(page)).to_have_text(["one", "three"])
        expect(page.locator(".chat-room")).not_to_contain_text("oops")
    bob.reload()
    joined(bob)
    expect_tombstone(bob, 1, 3)
    expect(delivered(bob)).to_have_text(["one", "three"])
    assert stored(server, channel) == ["one", "", "three"]


def test_a_moderator_deletes_someone_elses_message(open_page):
    ann = open_page("ann-spam", "Ann")
    mod = open_page("mod-1", "Mo", role="moderator")
    say(ann, "buy cheap watches")
    expect(delivered(mod)).to_have_count(1)

    entry = entries(mod).first
    expect(tool(entry, "Edit message")).to_have_count(0)
    tool(entry, "Delete message").click()
    expect(entry.locator(".confirm")).to_contain_text(
        "Delete Ann’s message for everyone?"
    )
    entry.locator(".confirm").get_by_role("button", name="Delete", exact=True).click()

    for page in (mod, ann):
        expect_tombstone(page, 0, 1)
        expect(delivered(page)).to_have_count(0)


def test_only_authors_and_moderators_have_the_tools_and_guests_none(open_page):
    ann = open_page("ann-tools", "Ann")
    bob = open_page("bob-tools", "Bob")
    mod = open_page("mod-tools", "Mo", role="moderator")
    guest = open_page(None, "Gus")
    say(ann, "from Ann")
    say(guest, "from a guest")
    for page in (ann, bob, mod, guest):
        expect(delivered(page)).to_have_count(2)

    assert tools_on(ann, "from Ann") == ["Edit", "Delete"]
    assert tools_on(ann, "from a guest") == []
    assert tools_on(bob, "from Ann") == []
    assert tools_on(bob, "from a guest") == []
    assert tools_on(mod, "from Ann") == ["Delete"]
    assert tools_on(mod, "from a guest") == ["Delete"]
    expect(guest.locator(".chat-room .tools")).to_have_count(0)  # own ones too


def test_on_a_phone_a_tap_on_a_message_shows_its_tools(open_page):
    ann = open_page("ann-phone", "Ann", **PHONE)
    say(ann, "tap me")
    entry = entries(ann).first
    tools = entry.locator(".tools")
    expect(tools).to_have_css("opacity", "0")  # out of the way until asked for

    entry.locator(".message").tap()

    expect(entry).to_have_class(re.compile(r"\bshow-tools\b"))
    expect(tools).to_have_css("opacity", "1")
    tools.get_by_role("button", name="Delete message").tap()
    expect(entry.locator(".confirm")).to_contain_text("Delete this message")
    screenshot(ann, "chat-moderation-phone-light.png")


def test_edit_goes_once_the_edit_window_closes_and_delete_stays(open_page, tmp_path):
    window = 4
    with serving(tmp_path, {**SETTINGS, "CHAT_EDIT_WINDOW": str(window)}) as short:
        ann = open_page("ann-window", "Ann", on=short)
        say(ann, "quick, edit me")
        assert tools_on(ann, "quick, edit me") == ["Edit", "Delete"]

        ann.wait_for_timeout(window * 1000)

        expect(entries(ann).first.locator(".tools button")).to_have_text(["Delete"])


@pytest.mark.parametrize("seconds", [3600, None], ids=["for-an-hour", "for-good"])
def test_a_banned_person_is_told_why_and_until_when_and_the_page_stays_away(
    open_page, server, seconds
):
    sub = f"spammer-{seconds}"
    page = open_page(sub, "Spammer")
    attempts = []  # the page's requests to the socket, and its WebSockets
    page.context.on(
        "request",
        lambda request: "/socket.io/" in request.url and attempts.append(request.url),
    )
    page.on("websocket", lambda socket: attempts.append(socket.url))
    body = {"reason": "spam & <b>ads</b>"}
    if seconds:
        body["seconds"] = seconds

    ban = operator(server, "POST", f"/users/{sub}/ban", json=body)

    banner = page.locator("#banBanner")
    if seconds:
        until = page.evaluate(
            "(iso) => new Date(iso).toLocaleString([],"
            " {dateStyle: 'full', timeStyle: 'short'})",
            ban["until"],
        )
        title = f"You are banned from this chat until {until}."
    else:
        title = "You are banned from this chat for good."

    def shows_the_ban():
        expect(banner).to_be_visible()
        expect(banner.locator("strong")).to_have_text(title)
        expect(banner).to_contain_text("Reason: spam & <b>ads</b>")  # text, not markup
        expect(banner.locator("b")).to_have_count(0)
        expect(page.locator("#connection")).to_have_attribute("data-state", "banned")
        expect(page.locator("#connection")).to_have_text("Banned")
        expect(page.locator("#offlineBanner")).to_be_hidden()
        expect(page.locator("#messageInput")).to_be_disabled()
        expect(page.locator("form.composer button[type=submit]")).to_be_disabled()

    def stays_away():
        page.wait_for_timeout(1000)  # the close of the refused connection
        seen = len(attempts)
        page.wait_for_timeout(4000)
        assert attempts[seen:] == []
        expect(page.locator("#connection")).to_have_attribute("data-state", "banned")

    shows_the_ban()
    stays_away()
    if seconds:
        screenshot(page, "chat-banned-desktop-light.png")

    page.reload()  # refused at connect now (connect_error), with the same words
    shows_the_ban()
    stays_away()


def test_slow_mode_counts_the_wait_down_and_sends_the_held_message_by_itself(
    open_page, server, channel
):
    operator(
        server, "PUT", f"/channels/{quote(channel)}/settings", json={"slow_mode": 3}
    )
    page = open_page("ann-slow", "Ann")
    line = page.locator("#slowMode")
    expect(line).to_have_text("This channel is in slow mode: one message every 3 s.")

    say(page, "first")
    send(page, "second, right away")

    held = entries(page).filter(has_text="second, right away")
    expect(held).to_have_class(re.compile(r"\bpending\b"))
    expect(held.locator(".status")).to_have_text("Waiting: slow mode")
    expect(line).to_have_text(re.compile(r"^Slow mode: you can send again in [1-3] s$"))
    screenshot(page, "chat-slow-mode-desktop-light.png")
    expect(delivered(page)).to_have_text(
        ["first", "second, right away"], timeout=10_000
    )
    expect(page.locator(".chat-room .entry.pending")).to_have_count(0)
    expect(page.locator(".chat-room .entry.failed")).to_have_count(0)
    expect(line).to_have_text(
        "This channel is in slow mode: one message every 3 s.", timeout=10_000
    )
    assert stored(server, channel) == ["first", "second, right away"]


def test_a_moderator_is_not_slowed_and_the_page_says_so(open_page, server, channel):
    operator(
        server, "PUT", f"/channels/{quote(channel)}/settings", json={"slow_mode": 60}
    )
    mod = open_page("mod-slow", "Mo", role="moderator")
    line = mod.locator("#slowMode")
    expect(line).to_have_text(
        "This channel is in slow mode: one message every 60 s (moderators are exempt)."
    )

    say(mod, "one")
    say(mod, "two")

    expect(delivered(mod)).to_have_text(["one", "two"])
    expect(line).not_to_contain_text("send again")


def test_an_operators_disconnect_is_a_short_absence_and_changes_made_meanwhile_show(
    open_page, server, channel
):
    ann = open_page("ann-kicked", "Ann")
    bob = open_page("bob-kicked", "Bob")
    say(bob, "keep this")
    say(bob, "remove this")
    expect(delivered(ann)).to_have_count(2)

    operator(server, "POST", "/users/ann-kicked/disconnect")

    expect(ann.locator("#chatError")).to_have_text(
        "An operator disconnected you. Reconnecting in a few seconds…"
    )
    expect(ann.locator("#connection")).to_have_attribute("data-state", "offline")
    # While Ann is away, a message she has is deleted.
    operator(server, "DELETE", f"/channels/{quote(channel)}/messages/2")
    assert ann.locator("#connection").get_attribute("data-state") == "offline"
    expect_tombstone(bob, 1, 2)
    joined(ann)
    expect_tombstone(ann, 1, 2)
    expect(delivered(ann)).to_have_text(["keep this"])
    expect(ann.locator("#chatError")).to_be_hidden()


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_edited_and_deleted_messages_look_right_in_both_themes(open_page, dark):
    theme = "dark" if dark else "light"
    bob = open_page("bob-looks", "Bob")
    ann = open_page("ann-looks", "Ann", dark=dark, bypass_csp=True)
    say(bob, "Morning! Did anyone book the room for the review?")
    say(ann, "I did: room 4 at 10:00")
    say(ann, "here is the agenda link I meant to paste")
    say(bob, "Great, thanks")
    say(ann, "Moving it to 11:00 so Kim can join")
    # Ann corrects one message and deletes another; Bob's page follows.
    entry = entries(ann).nth(1)
    tool(entry, "Edit message").click()
    entry.locator(".editor textarea").fill("I did: room 4 at 11:00")
    entry.locator(".editor textarea").press("Enter")
    tool(entries(ann).nth(2), "Delete message").click()
    entries(ann).nth(2).get_by_role("button", name="Delete", exact=True).click()
    expect_tombstone(bob, 2, 5)
    expect(bob.locator(".chat-room .edited")).to_have_count(1)

    # Pointing at her last message shows its tools.
    tool(entries(ann).nth(4), "Edit message")
    screenshot(ann, f"chat-moderation-desktop-{theme}.png")
    assert serious_violations(ann) == []
    # Editing in place, with a refusal said where it happened.
    tool(entries(ann).nth(4), "Edit message").click()
    box = entries(ann).nth(4).locator(".editor textarea")
    box.fill("")
    box.press("Enter")
    expect(entries(ann).nth(4).locator(".reason")).to_be_visible()
    screenshot(ann, f"chat-moderation-editing-desktop-{theme}.png")
    assert serious_violations(ann) == []
