"""The channel page in real Chromium, against a real server process."""

import subprocess
import sys
from contextlib import contextmanager

import psycopg
import pytest
import requests
from browsing import ARTIFACTS, QUICK_HEARTBEAT, delivered, expect, say, send
from conftest import POSTGRES_ADMIN_URL
from servers import ROOT

pytestmark = pytest.mark.server


@pytest.fixture
def server(start_server):
    return start_server(**QUICK_HEARTBEAT)


def went_offline(page):
    """Wait until the page shows it is offline (generously: a loaded
    machine can take seconds to run the page's handlers)."""
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "offline", timeout=20_000
    )


def stored(server, channel="lobby"):
    """The texts the server keeps for a channel, oldest first."""
    response = requests.get(f"{server.url}/api/channels/{channel}/messages", timeout=10)
    assert response.status_code == 200
    return [message["message"] for message in response.json()["messages"]]


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name)


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
    expect(delivered(first).last).to_have_text("message 12")

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
    expect(delivered(page).last).to_have_text("message 12")

    page.reload()

    expected = [f"message {number}" for number in range(3, 13)]
    expect(page.locator(".chat-room .message")).to_have_text(expected)


def store_silently(server, texts):
    """Store messages in `lobby` from another process, as the server's own
    sends would, but broadcasting them to nobody."""
    script = (
        "import sys\n"
        "from app import create_app\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    for text in sys.argv[1:]:\n"
        "        app.extensions['chat'].messages.post('lobby', text)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, *texts],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
    )


def post(server, text):
    response = requests.post(
        f"{server.url}/api/channels/lobby/messages", json={"message": text}, timeout=10
    )
    assert response.status_code == 201


def test_page_catches_up_after_the_server_restarts(open_page, server, start_server):
    page = open_page()
    say(page, "before")
    expect(delivered(page)).to_have_text(["before"])

    server.stop()
    went_offline(page)
    expect(page.locator("#messageInput")).to_be_enabled()  # sent when back
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
    expect(delivered(page)).to_have_text(["before"])

    server.stop()
    other = start_server()
    for number in range(1, 13):
        post(other, f"away {number}")
    server.start()

    # What was read stays, above the marker; the retained history below it.
    expected = ["before"] + [f"away {number}" for number in range(3, 13)]
    expect(page.locator(".chat-room .message")).to_have_text(expected, timeout=20_000)
    expect(page.locator(".gap")).to_have_count(1)
    expect(page.locator(".gap + .entry .message")).to_have_text("away 3")


def test_page_marks_a_gap_when_the_server_says_messages_were_pruned(
    open_page, start_server
):
    # Repairs only when a message shows the gap, not every second meanwhile.
    server = start_server(CHAT_REPAIR_INTERVAL="3600")
    page = open_page(on=server)
    say(page, "before")
    expect(delivered(page)).to_have_text(["before"])

    store_silently(server, [f"missed {number}" for number in range(1, 13)])
    post(server, "after")  # seq 14: what it follows, 2 to 4, is gone

    expected = ["before"] + [f"missed {number}" for number in range(4, 13)] + ["after"]
    expect(page.locator(".chat-room .message")).to_have_text(expected)
    expect(page.locator(".gap")).to_have_count(1)
    expect(page.locator(".gap + .entry .message")).to_have_text("missed 4")


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


def test_a_message_sent_while_the_server_is_down_arrives_once_after_it_restarts(
    open_page, server
):
    page = open_page()
    server.stop()
    went_offline(page)

    send(page, "sent while down")

    pending = page.locator(".entry.pending")
    expect(pending.locator(".message")).to_have_text(["sent while down"])
    expect(pending.locator(".status")).to_have_text("Sending…")
    expect(pending.get_by_role("button")).to_have_count(0)  # only failed ones
    expect(page.locator("#messageInput")).to_have_value("")
    screenshot(page, "pending-while-down.png")

    server.start()

    expect(page.locator(".entry.pending")).to_have_count(0, timeout=20_000)
    expect(page.locator(".chat-room .entry .message")).to_have_text(["sent while down"])
    # Sending is one at a time: once the next one is in, no retry of the
    # first is left to store it again.
    say(page, "next")
    expect(delivered(page)).to_have_text(["sent while down", "next"])
    assert stored(server) == ["sent while down", "next"]
    assert page.evaluate("localStorage.getItem('chat.pending.lobby')") is None


def serve_from_cache(page, server):
    """Answer the channel page and its files from copies taken now, as a
    browser cache would while the server is down; the rest goes to the server."""
    static = sorted((ROOT / "static").glob("*.[jc]s*"))
    paths = [
        "/chat?channel=lobby",
        "/vendor/socket.io.min.js",
        *(f"/static/{path.name}" for path in static),
    ]
    copies = {}
    for path in paths:
        copies[server.url + path] = requests.get(server.url + path, timeout=10)
        assert copies[server.url + path].status_code == 200, path

    def answer(route):
        copy = copies[route.request.url]
        route.fulfill(
            status=200, content_type=copy.headers["Content-Type"], body=copy.content
        )

    page.route(lambda url: url in copies, answer)


def test_a_pending_message_survives_a_reload_while_the_server_is_down(
    open_page, server
):
    page = open_page()
    serve_from_cache(page, server)
    server.stop()
    send(page, "typed before the reload")
    expect(page.locator(".entry.pending .message")).to_have_text(
        ["typed before the reload"]
    )

    page.reload()

    went_offline(page)
    expect(page.locator(".entry.pending .message")).to_have_text(
        ["typed before the reload"]
    )
    expect(page.locator(".entry.pending .status")).to_have_text("Sending…")
    screenshot(page, "pending-after-reload.png")

    server.start()

    expect(page.locator(".entry.pending")).to_have_count(0, timeout=20_000)
    expect(page.locator(".chat-room .entry.own .message")).to_have_text(
        ["typed before the reload"]
    )
    say(page, "next")
    expect(delivered(page)).to_have_text(["typed before the reload", "next"])
    assert stored(server) == ["typed before the reload", "next"]


@pytest.mark.parametrize(
    "text, reason",
    [
        pytest.param("x" * 2001, "at most 2000 characters", id="too-long"),
        pytest.param("ring \x07 the bell", "control characters", id="control-char"),
    ],
)
def test_a_refused_message_stays_visible_as_failed_with_its_reason(
    open_page, request, text, reason
):
    page = open_page()
    # The input's maxlength and a person's keyboard would not let these in.
    page.locator("#messageInput").evaluate("(input, text) => input.value = text", text)
    page.press("#messageInput", "Enter")

    failed = page.locator(".entry.pending.failed")
    expect(failed.locator(".status")).to_have_text("Not sent")
    expect(failed.locator(".reason")).to_contain_text(reason)
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    expect(failed.get_by_role("button", name="Discard")).to_be_visible()
    assert failed.locator(".message").text_content() == text
    screenshot(page, f"refused-{request.node.callspec.id}.png")

    failed.get_by_role("button", name="Retry").click()  # refused again, still there
    expect(failed.locator(".status")).to_have_text("Not sent")
    page.reload()
    expect(failed.locator(".reason")).to_contain_text(reason)
    assert failed.locator(".message").text_content() == text

    failed.get_by_role("button", name="Edit").click()
    expect(page.locator("#messageInput")).to_have_value(text)
    expect(page.locator(".chat-room .entry")).to_have_count(0)


def test_messages_from_others_go_above_ones_not_yet_sent(open_page):
    writer, reader = open_page(), open_page()
    refused = "x" * 2001
    writer.locator("#messageInput").evaluate(
        "(input, text) => input.value = text", refused
    )
    writer.press("#messageInput", "Enter")
    expect(writer.locator(".entry.failed")).to_have_count(1)

    say(reader, "from the reader")

    expect(writer.locator(".chat-room .message")).to_have_text(
        ["from the reader", refused]
    )
    writer.get_by_role("button", name="Discard").click()
    expect(writer.locator(".chat-room .message")).to_have_text(["from the reader"])


def test_own_messages_stay_own_after_a_reload(open_page):
    ann, bob = open_page(name="ann"), open_page(name="bob")
    say(ann, "mine")
    say(bob, "theirs")
    expect(delivered(ann)).to_have_text(["mine", "theirs"])

    ann.reload()

    expect(ann.locator(".entry .message")).to_have_text(["mine", "theirs"])
    expect(ann.locator(".entry.own .message")).to_have_text(["mine"])


@contextmanager
def database_down(url):
    """This test's PostgreSQL database refuses connections, and the open ones
    end, until the block is left; the server itself keeps running."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_message_refused_while_the_database_is_down_is_sent_again_until_stored(
    open_page, start_server, postgres_url
):
    server = start_server(DATABASE_URL=postgres_url)
    page = open_page(on=server)
    pending = page.locator(".entry.pending")

    with database_down(postgres_url):
        send(page, "while the database is down")
        expect(pending.locator(".status")).to_have_text("Sending…")
        page.wait_for_timeout(4_000)  # refused as unavailable, and again
        expect(pending.locator(".status")).to_have_text("Sending…")
        expect(page.locator(".entry.failed")).to_have_count(0)

    expect(pending).to_have_count(0, timeout=20_000)
    expect(page.locator(".chat-room .entry .message")).to_have_text(
        ["while the database is down"]
    )
    say(page, "next")
    expect(delivered(page)).to_have_text(["while the database is down", "next"])
    assert stored(server) == ["while the database is down", "next"]
