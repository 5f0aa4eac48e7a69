"""The channel page people expect, in real Chromium: the message box, links,
own messages, connection honesty, names, typing, retention, reading
comfort, looks in both themes at phone and desktop sizes, @mentions, and an
axe-core accessibility check.

One server process serves the whole module (each test has a channel of its
own); it keeps 5 messages per channel, so retention shows after a few.
"""

import re

import pytest
import requests
from browsing import (
    joined,
    QUICK_HEARTBEAT,
    delivered,
    expect,
    say,
    screenshot,
    serious_violations,
)
from servers import serving

pytestmark = pytest.mark.server

HISTORY_LIMIT = 5
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SIZES = {"phone": PHONE, "desktop": DESKTOP}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"CHAT_HISTORY_LIMIT": str(HISTORY_LIMIT), **QUICK_HEARTBEAT}
    with serving(tmp_path_factory.mktemp("page"), env) as server:
        yield server


@pytest.fixture
def new_browser(browser):
    """Open browser contexts (each one a person's browser, with its own
    storage): `new_browser(size="desktop", dark=False, name=None, **options)`."""
    contexts = []
    errors = []  # uncaught exceptions in the pages' scripts

    def open_context(size="desktop", dark=False, name=None, **options):
        context = browser.new_context(
            **SIZES[size], color_scheme="dark" if dark else "light", **options
        )
        context.on(
            "page", lambda page: page.on("pageerror", lambda e: errors.append(e))
        )
        if name:
            # Pages of the chat only: about:blank has no storage.
            context.add_init_script(
                f"if (location.protocol === 'http:'"
                f" && !localStorage.getItem('chat.name'))"
                f" localStorage.setItem('chat.name', {name!r})"
            )
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
    assert errors == []


@pytest.fixture
def open_page(new_browser, server, channel):
    """Open the test's channel, connected: in a new browser, or as one more
    tab of `context`."""

    def open_channel(context=None, **browser_options):
        context = context or new_browser(**browser_options)
        page = context.new_page()
        page.goto(f"{server.url}/chat?channel={channel}")
        online(page)
        return page

    return open_channel


def online(page):
    joined(page)


def post(server, channel, text, author=None):
    """Post a message over HTTP, as another client would."""
    body = {"message": text, **({"author": author} if author else {})}
    response = requests.post(
        f"{server.url}/api/channels/{channel}/messages", json=body, timeout=10
    )
    assert response.status_code == 201, response.text


def stored(server, channel):
    response = requests.get(f"{server.url}/api/channels/{channel}/messages", timeout=10)
    return [message["message"] for message in response.json()["messages"]]


def hide(page):
    """Make the page believe its tab went to the background."""
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")


# 1. The message box.


def test_enter_sends_and_shift_enter_adds_a_line(open_page, server, channel):
    page = open_page()
    box = page.locator("#messageInput")
    box.press_sequentially("first line")
    one_line = box.bounding_box()["height"]

    box.press("Shift+Enter")
    box.press_sequentially("second line")

    assert box.bounding_box()["height"] > one_line  # it grows with its text
    box.press("Enter")
    expect(delivered(page)).to_have_text(["first line\nsecond line"])
    assert stored(server, channel) == ["first line\nsecond line"]
    expect(box).to_have_value("")


def test_enter_that_ends_an_input_method_composition_does_not_send(open_page):
    page = open_page(size="phone", dark=True)
    box = page.locator("#messageInput")
    box.focus()
    ime = page.context.new_cdp_session(page)
    # A Korean input method composing 한, as Chromium's IME hooks drive it.
    ime.send(
        "Input.imeSetComposition",
        {"text": "한", "selectionStart": 1, "selectionEnd": 1},
    )
    # The Enter that confirms it arrives while composing: keyCode 229 ...
    box.dispatch_event("keydown", {"key": "Enter", "keyCode": 229, "bubbles": True})
    # ... or flagged isComposing.
    box.evaluate("""box => box.dispatchEvent(new KeyboardEvent("keydown",
        {key: "Enter", isComposing: true, bubbles: true, cancelable: true}))""")
    ime.send("Input.insertText", {"text": "한"})

    expect(box).to_have_value("한")
    assert page.locator(".chat-room .entry").count() == 0
    box.press("Enter")  # an Enter of its own, after the composition, sends
    expect(delivered(page)).to_have_text(["한"])


def test_pasted_lines_stay_lines(open_page, server, channel):
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    pasted = "shopping:\n- milk\n- eggs"
    page.evaluate("text => navigator.clipboard.writeText(text)", pasted)

    page.locator("#messageInput").press("Control+V")

    expect(page.locator("#messageInput")).to_have_value(pasted)
    page.locator("#messageInput").press("Enter")
    expect(delivered(page)).to_have_text([pasted])
    assert stored(server, channel) == [pasted]


# 2. Links.


def test_http_and_https_urls_become_links_and_nothing_else_does(open_page):
    sender, reader = open_page(), open_page(dark=True)
    text = (
        "agenda (https://example.com/a_(b)). "
        "javascript:alert(1) <a href=x>no</a> http://example.org/?q=1&r=2"
    )

    say(sender, text)

    message = reader.locator(".chat-room .message")
    expect(message).to_have_text([text])
    assert message.text_content() == text
    links = message.locator("a")
    expect(links).to_have_count(2)
    assert [links.nth(i).get_attribute("href") for i in range(2)] == [
        "https://example.com/a_(b)",
        "http://example.org/?q=1&r=2",
    ]
    for i in range(2):
        assert links.nth(i).get_attribute("target") == "_blank"
        assert links.nth(i).get_attribute("rel") == "noopener noreferrer"


# 3. Own messages.


def test_own_messages_stay_own_in_another_tab_and_after_a_reload(
    open_page, new_browser
):
    mine = new_browser(name="Sam")
    first_tab, second_tab = open_page(mine), open_page(mine)
    other_sam = open_page(name="Sam")

    say(first_tab, "from my first tab")
    say(other_sam, "from another Sam")

    for tab in (first_tab, second_tab):
        expect(delivered(tab)).to_have_text(["from my first tab", "from another Sam"])
        expect(tab.locator(".entry.own .message")).to_have_text(["from my first tab"])
    second_tab.reload()
    expect(second_tab.locator(".entry.own .message")).to_have_text(
        ["from my first tab"]
    )
    expect(other_sam.locator(".entry.own .message")).to_have_text(["from another Sam"])


# 4. Connection honesty.


def test_presence_counts_people_not_names_or_tabs(open_page, new_browser):
    mine = new_browser(name="Sam")
    first_tab = open_page(mine)
    open_page(mine)  # a second tab: still one person
    open_page(name="Sam")  # another person of the same name

    expect(first_tab.locator("#presence")).to_have_text("2 online: Sam, Sam")


def test_offline_shows_a_banner_and_no_stale_presence_and_keeps_draft_and_focus(
    open_page, server
):
    page = open_page(name="ann")
    expect(page.locator("#presence")).to_have_text("1 online: ann")
    box = page.locator("#messageInput")
    box.press_sequentially("half a thought")

    server.stop()
    try:
        expect(page.locator("#connection")).to_have_attribute(
            "data-state", "offline", timeout=20_000
        )
        expect(page.locator("#offlineBanner")).to_be_visible()
        expect(page.locator("#offlineBanner")).to_contain_text("You are offline")
        expect(page.locator("#presence")).not_to_contain_text("online:")
        screenshot(page, "offline-desktop-light.png")
    finally:
        server.start()

    online(page)
    expect(page.locator("#offlineBanner")).to_be_hidden()
    expect(page.locator("#presence")).to_have_text("1 online: ann")
    assert page.evaluate("document.activeElement.id") == "messageInput"
    page.keyboard.type(", finished")
    expect(box).to_have_value("half a thought, finished")
    box.press("Enter")
    expect(delivered(page)).to_have_text(["half a thought, finished"])


# 5. Names.


def test_a_refused_name_shows_why_and_the_last_accepted_name_stays(open_page):
    page = open_page(name="ann")
    name = page.locator("#nameInput")

    name.fill("Sam\u0080")
    name.press("Enter")

    error = page.locator("#nameError")
    expect(error).to_be_visible()
    expect(error).to_contain_text("control characters")
    expect(name).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("localStorage.getItem('chat.name')") == "ann"
    screenshot(page, "name-refused-desktop-light.png")
    say(page, "still ann")
    expect(page.locator(".entry .author")).to_have_text(["ann"])

    name.fill("Sam")  # fixed in place, no reload
    name.press("Enter")
    expect(error).to_be_hidden()
    expect(name).not_to_have_attribute("aria-invalid", "true")
    page.wait_for_function("() => localStorage.getItem('chat.name') === 'Sam'")
    say(page, "now Sam")
    expect(page.locator(".entry .author")).to_have_text(["ann", "Sam"])


def test_a_stored_name_the_server_refuses_does_not_lock_the_page_out(open_page):
    # Saved by an older page, before the server checked names.
    page = open_page(name="Sam\u0080", size="phone")

    expect(page.locator("#nameError")).to_be_visible()  # the header unfolds for it
    expect(page.locator("#nameError")).to_contain_text("control characters")
    assert page.evaluate("localStorage.getItem('chat.name')") is None
    screenshot(page, "stored-name-refused-phone-light.png")
    say(page, "hello as a guest")
    expect(delivered(page)).to_have_text(["hello as a guest"])


# 6. Typing.


def test_typing_shows_again_right_after_a_message(open_page):
    ann, bob = open_page(name="ann"), open_page(name="bob")
    ann.locator("#messageInput").press_sequentially("hi")
    expect(bob.locator("#typing")).to_have_text("ann is typing…")

    ann.locator("#messageInput").press("Enter")
    expect(delivered(bob)).to_have_text(["hi"])
    expect(bob.locator("#typing")).to_have_text("")  # the message ends it
    ann.locator("#messageInput").press("o")  # one key, at once, and no more

    expect(bob.locator("#typing")).to_have_text("ann is typing…")


# 7. Retention in words.


def test_the_page_says_how_many_messages_the_channel_keeps(open_page):
    page = open_page()

    expect(page.locator("#retention")).to_have_text(
        f"This channel keeps its newest {HISTORY_LIMIT} messages; older ones are deleted."
    )


def test_a_live_view_past_the_limit_marks_what_a_reload_will_not_show(
    open_page, server, channel
):
    page = open_page()
    for number in range(1, HISTORY_LIMIT + 3):
        post(server, channel, f"message {number}")
    expect(page.locator(".message")).to_have_count(HISTORY_LIMIT + 2)

    line = page.locator(".kept-line")
    expect(line).to_have_count(1)
    expect(line).to_contain_text("no longer kept")
    expect(page.locator(".kept-line + .entry .message")).to_have_text("message 3")
    screenshot(page, "kept-line-desktop-light.png")

    page.reload()
    expected = [f"message {number}" for number in range(3, HISTORY_LIMIT + 3)]
    expect(page.locator(".message")).to_have_text(expected)
    expect(page.locator(".kept-line")).to_have_count(0)


# 8. Reading comfort.


def test_runs_of_one_author_share_one_name_line(open_page, server, channel):
    page = open_page()
    for author, text in [("ann", "one"), ("ann", "two"), ("bob", "three")]:
        post(server, channel, text, author)
    post(server, channel, "four", "ann")

    expect(page.locator(".message")).to_have_count(4)
    shown = page.locator(".entry:not(.continued) > header .author")
    expect(shown).to_have_text(["ann", "bob", "ann"])
    # The others keep theirs for screen readers, off screen.
    expect(page.locator(".entry.continued .author")).to_have_text(["ann"])


def test_korean_keeps_words_whole_and_hebrew_and_arabic_read_right_to_left(
    open_page, server, channel
):
    page = open_page(size="phone")
    post(server, channel, "안녕하세요 여러분, 오늘 회의는 세 시에 시작합니다", "민수")
    post(server, channel, "שלום לכולם, מה שלומכם היום?", "נועה")
    post(server, channel, "مرحبا بالجميع", "ليلى")

    messages = page.locator(".message")
    expect(messages).to_have_count(3)
    style = "el => [getComputedStyle(el).wordBreak, getComputedStyle(el).direction]"
    assert messages.nth(0).evaluate(style) == ["keep-all", "ltr"]
    assert messages.nth(1).evaluate(style)[1] == "rtl"
    assert messages.nth(2).evaluate(style)[1] == "rtl"
    for element in ("message", "author"):
        dirs = page.locator(f".entry .{element}").evaluate_all(
            "els => els.map(el => el.dir)"
        )
        assert dirs == ["auto"] * 3
    assert (
        page.locator(".author").nth(1).evaluate("el => getComputedStyle(el).direction")
        == "rtl"
    )


def test_emoji_are_drawn_with_the_colour_emoji_font(open_page, server, channel):
    page = open_page()
    post(server, channel, "😂")
    expect(page.locator(".message")).to_have_text(["😂"])

    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    document = cdp.send("DOM.getDocument")
    node = cdp.send(
        "DOM.querySelector",
        {"nodeId": document["root"]["nodeId"], "selector": ".message"},
    )
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})

    assert [font["familyName"] for font in fonts["fonts"]] == ["Noto Color Emoji"]


def test_the_home_page_shows_times_in_local_words(new_browser, server, channel):
    post(server, channel, "hello")
    page = new_browser(timezone_id="Asia/Seoul", locale="en-US").new_page()

    page.goto(server.url)

    time = page.locator(f"li:has(a[href$='={channel}']) time")
    expect(time).to_have_text("just now")
    assert re.search(r"\b20\d\d\b", time.get_attribute("title"))
    # Older times: in the reader's time zone (Seoul is 9 hours ahead of UTC).
    older = page.evaluate("""async () => {
        const { readableTime } = await import("/static/times.js");
        const now = new Date("2026-11-25T12:00:00Z");
        return [readableTime("2026-11-25T11:30:00Z", now),
                readableTime("2026-11-25T09:30:18.139Z", now),
                readableTime("2026-11-20T09:30:18.139Z", now)];
    }""")
    assert older == ["30 minutes ago", "06:30 PM", "Nov 20, 2026, 6:30 PM"]


def test_an_empty_channel_says_so_until_its_first_message(open_page):
    page = open_page()
    hint = page.locator("#emptyHint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("No messages")

    say(page, "first")

    expect(hint).to_be_hidden()


def test_the_switcher_shows_this_channel_and_suggests_the_active_ones(
    open_page, server, channel
):
    post(server, channel, "so that it is active")
    page = open_page()

    switcher = page.locator("#channelSwitcher")
    expect(switcher).to_have_value(channel)
    expect(page.locator(f"#activeChannels option[value='{channel}']")).to_have_count(1)
    switcher.focus()
    page.keyboard.type("elsewhere")
    switcher.press("Enter")
    expect(page).to_have_url(re.compile(r"/chat\?channel=elsewhere$"))


# 10. @mentions.


def test_a_mention_is_marked_for_that_member_and_counted_while_hidden(
    open_page, channel
):
    ann, bob = open_page(name="ann"), open_page(name="bob")
    expect(ann.locator("#presence")).to_have_text("2 online: ann, bob")
    hide(bob)

    say(ann, "@bob have a look")
    say(ann, "and no mention here")

    mine = bob.locator(".entry.mentions-me")
    expect(mine.locator(".message")).to_have_text(["@bob have a look"])
    expect(mine.locator(".mention.me")).to_have_text("@bob")
    expect(bob).to_have_title(f"(2 · @1) #{channel} · Channel Chat")
    # Not a mention of ann: marked as a member's name on her screen, no more.
    expect(ann.locator(".mention")).to_have_text(["@bob"])
    expect(ann.locator(".mentions-me, .mention.me")).to_have_count(0)


NOTIFICATIONS = """
    window.shown = [];
    window.Notification = class {
        static permission = "default";
        static async requestPermission() { return (Notification.permission = "granted"); }
        constructor(title, options) { window.shown.push([title, options.body]); }
        addEventListener() {}
    };
"""


def test_desktop_notifications_of_mentions_are_opt_in(open_page, new_browser, channel):
    ann = open_page(name="ann")
    context = new_browser(name="bob")
    context.add_init_script(NOTIFICATIONS)
    bob = open_page(context)
    expect(bob.locator("#presence")).to_have_text("2 online: ann, bob")
    hide(bob)
    say(ann, "@bob before opting in")
    expect(bob.locator(".mentions-me")).to_have_count(1)
    assert bob.evaluate("window.shown") == []

    bob.locator("#notifyMentions").click()
    expect(bob.locator("#notifyMentions")).to_have_attribute("aria-pressed", "true")
    say(ann, "@bob after")

    bob.wait_for_function("() => window.shown.length === 1")
    assert bob.evaluate("window.shown") == [
        [f"ann mentioned you in #{channel}", "@bob after"]
    ]


# 9 and 11. Looks in both themes and sizes, checked by axe-core.


def luminance(css_color):
    red, green, blue = (
        int(part) / 255 for part in re.findall(r"[\d.]+", css_color)[:3]
    )

    def linear(channel):
        return (
            channel / 12.92
            if channel <= 0.03928
            else ((channel + 0.055) / 1.055) ** 2.4
        )

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast(first, second):
    lighter, darker = sorted([luminance(first), luminance(second)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


CONVERSATION = [
    ("민수", "안녕하세요! 오늘 회의는 몇 시인가요? 🙂"),
    ("민수", "@Dana 자료는 https://example.com/agenda 에 있어요"),
    ("נועה", "שלום! אני מצטרפת בעוד רגע 😂"),
    ("bob", "Shopping list for later:\n- milk\n- eggs 🥚"),
]


@pytest.mark.parametrize(
    "size, dark, channel",
    [
        ("desktop", False, "lobby"),
        ("desktop", True, "team"),
        ("phone", False, "한국어"),
        ("phone", True, "weekend"),
    ],
    ids=["desktop-light", "desktop-dark", "phone-light", "phone-dark"],
)
def test_looks_and_accessibility(new_browser, server, size, dark, channel):
    theme = "dark" if dark else "light"
    for author, text in CONVERSATION:
        post(server, channel, text, author)
    context = new_browser(size=size, dark=dark, name="Dana", bypass_csp=True)
    page = context.new_page()

    page.goto(server.url)
    assert serious_violations(page) == []
    screenshot(page, f"home-{size}-{theme}.png")

    page.goto(f"{server.url}/chat?channel={channel}")
    online(page)
    say(page, "On my way 🚶")
    page.locator("#messageInput").fill("Typing a draft…")
    expect(page.locator(".mentions-me")).to_have_count(1)
    assert serious_violations(page) == []
    screenshot(page, f"chat-{size}-{theme}.png", readme=True)

    panel = page.locator("main").evaluate("el => getComputedStyle(el).backgroundColor")
    assert (luminance(panel) < 0.05) is dark
    for control in ("#messageInput", "#nameInput", "#channelSwitcher"):
        border = page.locator(control).evaluate(
            "el => getComputedStyle(el).borderTopColor"
        )
        assert contrast(border, panel) >= 3, control
    width = SIZES[size]["viewport"]["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if size == "phone":
        for control in ("#messageInput", "#nameInput", "#channelSwitcher"):
            font = page.locator(control).evaluate("el => getComputedStyle(el).fontSize")
            assert font == "16px", control
        header = page.locator(".chat-header").bounding_box()["height"]
        assert header <= 844 * 0.12
        page.locator("#headerToggle").click()
        expect(page.locator("#nameInput")).to_be_visible()
        assert serious_violations(page) == []
        screenshot(page, f"chat-{size}-{theme}-header-open.png")
