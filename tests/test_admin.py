"""The socket.io Admin UI (app.web.admin, app.realtime.admin): its page
served from node_modules with nothing from other hosts, its `/admin`
namespace for the admin alone, listing this process's sockets of every
kind with their rooms and the server's stats, read-only; and the real page
in Chromium, showing a chatting page's socket and room."""

import re
import threading
import uuid

import gevent
import pytest
import socketio
from test_legacy_clients import NodeClient
from tokens import SECRET, token

PASSWORD = "a password for the admin ui tests"
ADMIN = {"username": "admin", "password": PASSWORD}
QUICK_STATS = 0.2  # seconds between server_stats


class Admin:
    """A python-socketio client on the `/admin` namespace, recording what
    the server tells it."""

    EVENTS = (
        "config",
        "all_sockets",
        "socket_connected",
        "socket_updated",
        "socket_disconnected",
        "room_joined",
        "room_left",
        "server_stats",
    )

    def __init__(self, url, credentials=ADMIN):
        self.heard = []
        self.arrived = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        for event in self.EVENTS:
            self.client.on(event, self._recorder(event), namespace="/admin")
        self.client.connect(
            url, namespaces=["/admin"], auth=credentials, transports=["websocket"]
        )

    def _recorder(self, event):
        def record(*args):
            with self.arrived:
                self.heard.append((event, args))
                self.arrived.notify_all()

        return record

    def wait(self, event, done=lambda args: True, timeout=10):
        """The arguments of the first `event` for which done(args) holds."""

        def found():
            return next(
                (args for name, args in self.heard if name == event and done(args)),
                None,
            )

        with self.arrived:
            args = self.arrived.wait_for(found, timeout)
        assert args is not None, f"no {event} came; heard {self.heard}"
        return args

    def close(self):
        self.client.disconnect()


@pytest.fixture
def server(start_thread_server):
    return start_thread_server(
        CHAT_ADMIN_PASSWORD=PASSWORD, CHAT_ADMIN_STATS_INTERVAL=QUICK_STATS
    )


@pytest.fixture
def admin_of():
    """`admin_of(server)`: an admin logged in to `server`'s /admin."""
    opened = []

    def open_admin(server, credentials=ADMIN):
        opened.append(Admin(server.url, credentials))
        return opened[-1]

    yield open_admin
    for each in opened:
        each.close()


@pytest.fixture
def admin(server, admin_of):
    return lambda credentials=ADMIN: admin_of(server, credentials)


def refusal(url, credentials, headers=None):
    """What the `/admin` namespace answers a login with `credentials` (and
    the request's `headers`)."""
    client = socketio.Client(reconnection=False)
    refused = []
    client.on("connect_error", refused.append, namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            url,
            namespaces=["/admin"],
            auth=credentials,
            headers=headers or {},
            wait_timeout=5,
        )
    client.disconnect()
    return refused


def listed(sockets, namespace="/"):
    return {socket["id"]: socket for socket in sockets if socket["nsp"] == namespace}


# The page, over HTTP.


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/js/app.0d7d7845.js", "/admin/fonts/roboto/400.css"]
)
def test_the_admin_ui_is_off_without_a_password(client, path):
    assert client.get(path).status_code == 404


@pytest.fixture
def admin_client(make_app):
    return make_app(CHAT_ADMIN_PASSWORD=PASSWORD).test_client()


def test_the_page_loads_nothing_from_other_hosts(admin_client):
    page = admin_client.get("/admin/")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<title>Socket.IO Admin UI</title>" in html
    assert "http://" not in html and "https://" not in html
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy


def test_every_file_the_page_links_to_is_served(admin_client):
    html = admin_client.get("/admin/").get_data(as_text=True)
    links = re.findall(r'(?:href|src)="([^"]+)"', html)

    assert len(links) >= 8  # the icon, 4 Roboto weights, icons, 2 scripts, 2 styles
    for link in links:
        answer = admin_client.get(f"/admin/{link}")
        assert answer.status_code == 200, link
        assert answer.headers["Content-Security-Policy"]


def test_the_fonts_the_stylesheets_name_are_served(admin_client):
    icons = admin_client.get(
        "/admin/fonts/icons/css/materialdesignicons.min.css"
    ).get_data(as_text=True)
    roboto = admin_client.get("/admin/fonts/roboto/400.css").get_data(as_text=True)

    assert (
        admin_client.get(
            "/admin/fonts/icons/fonts/materialdesignicons-webfont.woff2"
        ).status_code
        == 200
    )
    assert "../fonts/materialdesignicons-webfont.woff2" in icons
    assert (
        admin_client.get(
            "/admin/fonts/roboto/files/roboto-latin-400-normal.woff2"
        ).status_code
        == 200
    )
    assert "./files/roboto-latin-400-normal.woff2" in roboto


def test_the_page_does_not_serve_files_outside_the_package(admin_client):
    assert admin_client.get("/admin/../../package.json").status_code == 404
    assert admin_client.get("/admin/%2e%2e/%2e%2e/package.json").status_code == 404


# The `/admin` namespace, on a real server.


@pytest.mark.server
@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "root", "password": PASSWORD},
        {"username": "admin", "password": None},
        {"sessionId": "resumed"},
        None,
    ],
    ids=["wrong-password", "wrong-user", "no-password", "session", "nothing"],
)
def test_the_admin_namespace_refuses_anyone_but_the_admin(server, credentials):
    assert refusal(server.url, credentials) == [{"message": "invalid credentials"}]


@pytest.mark.server
def test_someone_whose_password_is_being_checked_hears_nothing(server, admin):
    watching = admin()
    watching.wait("config")
    rates = server.app.extensions["chat_admin"].rates
    checked = rates.check_spent

    def slowly(*args):  # the check takes a few stats ticks
        gevent.sleep(4 * QUICK_STATS)
        return checked(*args)

    rates.check_spent = slowly
    outsider = socketio.Client(reconnection=False)
    heard = []
    for event in Admin.EVENTS:
        outsider.on(event, lambda *args, e=event: heard.append(e), namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        outsider.connect(
            server.url,
            namespaces=["/admin"],
            auth={"username": "admin", "password": "guess"},
            wait_timeout=5,
        )
    outsider.disconnect()

    ticks = [name for name, _ in watching.heard if name == "server_stats"]
    assert len(ticks) >= 3  # the admin was told meanwhile
    assert heard == []


@pytest.mark.server
def test_wrong_passwords_are_limited_per_address(start_thread_server):
    server = start_thread_server(
        CHAT_ADMIN_PASSWORD=PASSWORD,
        CHAT_RATE_LIMITS=True,
        CHAT_RATE_API_KEY_PER_ADDRESS="2/minute",
    )
    wrong = {"username": "admin", "password": "guess"}

    first, second = refusal(server.url, wrong), refusal(server.url, wrong)
    third = refusal(server.url, wrong)

    assert first == second == [{"message": "invalid credentials"}]
    assert third[0]["message"].startswith("too many wrong API keys and passwords")
    assert refusal(server.url, ADMIN)[0]["message"].startswith("too many wrong")


@pytest.mark.server
def test_a_password_that_is_not_text_is_refused_quietly(server):
    lone_surrogate = {"username": "admin", "password": "\ud800"}

    assert refusal(server.url, lone_surrogate) == [{"message": "invalid credentials"}]
    assert "Traceback" not in server.log()


@pytest.mark.server
@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_the_admin_namespace_is_not_reached_through_a_proxy(server, header):
    forwarded = "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"

    refused = refusal(server.url, ADMIN, headers={header: forwarded})

    assert refused == [
        {"message": "the Admin UI is open to this process's operators only"}
    ]


def test_the_page_is_not_reached_through_a_proxy(admin_client):
    forwarded = admin_client.get("/admin/", headers={"X-Forwarded-For": "203.0.113.9"})

    assert forwarded.status_code == 403


def test_the_page_is_refused_to_addresses_outside_its_networks(make_app):
    app = make_app(CHAT_ADMIN_PASSWORD=PASSWORD, CHAT_ADMIN_ALLOW="10.0.0.0/8")
    client = app.test_client()

    inside = client.get("/admin/", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    outside = client.get("/admin/", environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert (inside.status_code, outside.status_code) == (200, 403)


@pytest.mark.parametrize(
    "settings, complaint",
    [
        ({"CHAT_ADMIN_PASSWORD": "short"}, "at least 16"),
        ({"CHAT_ADMIN_PASSWORD": PASSWORD, "CHAT_ADMIN_STATS_INTERVAL": 0}, "positive"),
        ({"CHAT_ADMIN_PASSWORD": PASSWORD, "CHAT_ADMIN_ALLOW": "nowhere"}, "ALLOW"),
    ],
)
def test_bad_admin_settings_refuse_to_start(make_app, settings, complaint):
    with pytest.raises(RuntimeError, match=complaint):
        make_app(**settings)


@pytest.mark.server
def test_an_admin_is_sent_every_socket_with_its_rooms(server, admin, open_tab):
    on_websocket = open_tab(server.url)
    on_polling = open_tab(server.url, transports=("polling",))
    on_websocket.join("lobby")
    on_websocket.join("kitchen")
    on_polling.join("lobby")
    legacy = NodeClient(server.url, 2, "polling")  # socket.io-client 2.x
    try:
        assert legacy.call("join", {"channel": "lobby"})["ok"] is True

        (sockets,) = admin().wait("all_sockets")
    finally:
        legacy.stop()

    chat = listed(sockets)
    assert len(chat) == 3
    websocket = chat[on_websocket.client.get_sid("/")]
    polling = chat[on_polling.client.get_sid("/")]
    (protocol_3,) = set(chat) - {websocket["id"], polling["id"]}
    assert sorted(websocket["rooms"]) == sorted(["#lobby", "#kitchen", websocket["id"]])
    assert sorted(chat[protocol_3]["rooms"]) == sorted(["#lobby", protocol_3])
    assert websocket["transport"] == "websocket"
    assert polling["transport"] == chat[protocol_3]["transport"] == "polling"
    assert chat[protocol_3]["handshake"]["query"]["EIO"] == "3"
    assert websocket["handshake"]["address"] == "127.0.0.1"
    assert websocket["handshake"]["issued"] > 0


@pytest.mark.server
def test_an_admin_sees_sockets_come_join_leave_and_go(server, admin, open_tab):
    watching = admin()
    watching.wait("all_sockets")

    tab = open_tab(server.url)
    sid = tab.client.get_sid("/")
    tab.join("lobby")
    tab.call("leave", {"channel": "lobby"})
    tab.close()

    connected, _ = watching.wait("socket_connected", lambda a: a[0]["id"] == sid)
    assert connected["nsp"] == "/" and connected["rooms"] == [sid]
    watching.wait("room_joined", lambda a: a[:3] == ("/", "#lobby", sid))
    watching.wait("room_left", lambda a: a[:3] == ("/", "#lobby", sid))
    watching.wait("socket_disconnected", lambda a: a[:2] == ("/", sid))
    watching.wait("room_left", lambda a: a[:3] == ("/", sid, sid))


@pytest.mark.server
def test_an_admin_sees_a_long_polling_socket_move_to_a_websocket(server, admin):
    watching = admin()
    watching.wait("all_sockets")

    page_like = NodeClient(server.url, 4, "polling,websocket")  # as the page
    try:
        connected, _ = watching.wait("socket_connected", lambda a: a[0]["nsp"] == "/")
        sid = connected["id"]
        if connected["transport"] == "polling":  # it connected before upgrading
            update = watching.wait("socket_updated", lambda a: a[0]["id"] == sid)
            assert update == ({"id": sid, "nsp": "/", "transport": "websocket"},)
        (sockets,) = admin().wait("all_sockets")
    finally:
        page_like.stop()

    assert listed(sockets)[sid]["transport"] == "websocket"


@pytest.mark.server
def test_an_admin_is_sent_the_servers_stats(server, admin, open_tab):
    watching = admin()
    watching.wait("all_sockets")
    open_tab(server.url).join("lobby")
    open_tab(server.url, transports=("polling",))

    (stats,) = watching.wait("server_stats", lambda a: a[0]["clientsCount"] == 3)

    assert stats["pollingClientsCount"] == 1
    namespaces = {each["name"]: each["socketsCount"] for each in stats["namespaces"]}
    assert namespaces == {"/": 2, "/admin": 1}
    assert stats["uptime"] > 0 and stats["pid"] > 0
    connected = sum(
        event["count"]
        for name, args in watching.heard
        if name == "server_stats"
        for event in args[0]["aggregatedEvents"]
        if event["type"] == "rawConnection"
    )
    assert connected >= 2  # the two tabs, counted as they came


@pytest.mark.server
def test_the_admin_ui_is_read_only(server, admin, open_tab):
    tab = open_tab(server.url)
    tab.join("lobby")
    sid = tab.client.get_sid("/")
    watching = admin()
    watching.wait("config", lambda a: a[0]["supportedFeatures"])

    for event, args in [
        ("emit", ("/", None, "message", {"text": "from the admin"})),
        ("join", ("/", "#elsewhere", sid)),
        ("leave", ("/", "#lobby", sid)),
        ("_disconnect", ("/", False, sid)),
    ]:
        watching.client.emit(event, args, namespace="/admin")
    (config,) = watching.wait("config")
    watching.close()  # after its emits, which the server reads in order

    assert config == {"supportedFeatures": ["AGGREGATED_EVENTS", "ALL_EVENTS"]}
    assert tab.call("join", {"channel": "kitchen"})["ok"] is True  # still here
    (sockets,) = admin().wait("all_sockets")
    assert sorted(listed(sockets)[sid]["rooms"]) == sorted(["#lobby", "#kitchen", sid])
    assert tab.messages == []


@pytest.mark.server
def test_a_sockets_credentials_are_not_shown(server, admin):
    tab = socketio.Client(reconnection=False)
    tab.connect(
        server.url,
        headers={"Cookie": "session=secret", "Authorization": "Bearer secret"},
    )
    try:
        sid = tab.get_sid("/")
        (sockets,) = admin().wait("all_sockets")
    finally:
        tab.disconnect()

    headers = listed(sockets)[sid]["handshake"]["headers"]
    assert "user-agent" in headers
    assert "cookie" not in headers and "authorization" not in headers


@pytest.mark.server
def test_a_socket_says_who_is_behind_it(start_thread_server, admin_of, open_tab):
    server = start_thread_server(CHAT_ADMIN_PASSWORD=PASSWORD, CHAT_TOKEN_SECRET=SECRET)
    guest = open_tab(server.url)
    person = socketio.Client(reconnection=False)
    person.connect(server.url, auth={"token": token("u-42", name="Ann")})
    try:
        (sockets,) = admin_of(server).wait("all_sockets")
        sid = person.get_sid("/")
    finally:
        person.disconnect()

    chat = listed(sockets)
    assert chat[sid]["data"] == {"user_id": "u-42", "name": "Ann", "role": None}
    assert chat[guest.client.get_sid("/")]["data"] == {"guest": True}


# The real page, in Chromium.


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from servers import serving

    settings = {"CHAT_ADMIN_PASSWORD": PASSWORD}
    with serving(tmp_path_factory.mktemp("admin"), settings) as server:
        yield server


@pytest.mark.server
def test_an_admin_logs_in_and_sees_a_chatting_pages_socket_and_room(browser, served):
    from browsing import expect, joined, say, screenshot

    channel = f"admin-{uuid.uuid4().hex[:8]}"
    chatting = browser.new_context()
    person = chatting.new_page()
    person.goto(f"{served.url}/chat?channel={channel}")
    joined(person)
    say(person, "hello from a page")
    operator = browser.new_context(viewport={"width": 1400, "height": 860})
    errors = []
    ui = operator.new_page()
    ui.on("pageerror", lambda error: errors.append(error))
    try:
        ui.goto(f"{served.url}/admin/")
        ui.get_by_label("Server URL").fill(served.url)
        ui.get_by_label("Username").fill("admin")
        ui.get_by_label("Password").fill(PASSWORD)
        ui.get_by_role("button", name="Connect").click()
        expect(ui.get_by_role("dialog")).to_be_hidden()

        ui.goto(f"{served.url}/admin/#/rooms")
        room = ui.get_by_role("row").filter(has_text=f"#{channel}")
        expect(room).to_have_count(1)
        ui.goto(f"{served.url}/admin/#/sockets")
        socket = ui.get_by_role("row").filter(has_text="WebSocket")
        expect(socket).to_have_count(1)
        socket.click()  # its details, with its rooms
        expect(ui.get_by_text(f"#{channel}")).to_be_visible()
        ui.wait_for_timeout(600)  # the page's fade-in, for the picture
        screenshot(ui, "admin-ui.png", readme=True)

        chatting.close()
        ui.goto(f"{served.url}/admin/#/rooms")
        expect(ui.get_by_role("row").filter(has_text=f"#{channel}")).to_have_count(0)
    finally:
        operator.close()
    assert errors == []
