"""Cross-site writes, security headers and the production SECRET_KEY,
through the Flask test client."""

import pytest

import config
from app import create_app

CHAT = "http://localhost"  # the test client's own origin
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def post(client, body=None, channel="lobby", **kwargs):
    """POST to the API as a browser or a script would (JSON by default)."""
    if body is None and "data" not in kwargs:
        body = {"message": "hello"}
    return client.post(f"/api/channels/{channel}/messages", json=body, **kwargs)


def stored(client, channel="lobby"):
    response = client.get(f"/api/channels/{channel}/messages")
    if response.status_code == 404:
        return []
    return [message["message"] for message in response.get_json()["messages"]]


# Security headers.


@pytest.mark.parametrize("path", ["/", "/chat?channel=x", "/chat"])
def test_pages_carry_the_security_headers(client, path):
    headers = client.get(path).headers

    assert headers["Content-Security-Policy"] == POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_the_page_needs_no_inline_script_or_style(client):
    page = client.get("/chat?channel=x").get_data(as_text=True)

    assert "<script>" not in page
    assert "<style" not in page
    assert "style=" not in page


@pytest.mark.parametrize(
    "request_",
    [
        lambda client: client.get("/api/channels"),
        lambda client: post(client),
        lambda client: post(client, data="x", content_type="text/plain"),
        lambda client: client.get("/api/nothing"),
        lambda client: client.get("/healthz"),
        lambda client: client.get("/websocket_handler?channel=x"),
    ],
    ids=["read", "write", "refused", "not-found", "healthz", "action"],
)
def test_every_answer_is_nosniff_with_the_policy(client, request_):
    headers = request_(client).headers

    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == POLICY


@pytest.mark.parametrize(
    "ancestors, legacy",
    [
        ("'self'", "SAMEORIGIN"),
        ("'self'  https://intranet.example", None),
        ("https://intranet.example", None),
    ],
)
def test_operators_choose_who_may_frame_the_chat(make_app, ancestors, legacy):
    app = make_app(CHAT_FRAME_ANCESTORS=ancestors)

    headers = app.test_client().get("/").headers

    expected = " ".join(ancestors.split())
    assert headers["Content-Security-Policy"].endswith(f"frame-ancestors {expected}")
    assert headers.get("X-Frame-Options") == legacy


@pytest.mark.parametrize(
    "ancestors", ["", "none", "self", "'none'; script-src *", "a.example, b.example"]
)
def test_a_malformed_frame_ancestors_setting_refuses_to_start(make_app, ancestors):
    with pytest.raises(RuntimeError, match="CHAT_FRAME_ANCESTORS"):
        make_app(CHAT_FRAME_ANCESTORS=ancestors)


@pytest.mark.parametrize(
    "token_url, connect_src",
    [
        ("/auth/chat-token", "connect-src 'self';"),
        (
            "https://www.example.com/chat-token?x=1",
            "connect-src 'self' https://www.example.com;",
        ),
    ],
)
def test_the_page_may_fetch_its_token_from_the_host_site(
    make_app, token_url, connect_src
):
    app = make_app(CHAT_TOKEN_URL=token_url)

    headers = app.test_client().get("/chat?channel=lobby").headers

    assert connect_src in headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "token_url", ["chat-token", "ftp://example.com/t", "https://a.example/t x"]
)
def test_a_token_url_that_is_not_one_refuses_to_start(make_app, token_url):
    with pytest.raises(RuntimeError, match="CHAT_TOKEN_URL"):
        make_app(CHAT_TOKEN_URL=token_url)


# Writes to the API: JSON only, never from another origin.


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": CHAT},  # Sec-Fetch-Site wins
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost:8080"},  # another port
        {"Origin": "https://localhost"},  # another scheme
        {"Origin": "null"},  # sandboxed frames, file: pages
    ],
)
def test_a_cross_site_post_is_refused_and_stores_nothing(client, headers):
    response = post(client, headers=headers)

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "cross_site"
    assert response.get_json()["error"]["message"]
    assert stored(client) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin", "Origin": CHAT},
        {"Sec-Fetch-Site": "none"},  # typed by the person
        {"Origin": CHAT},  # a browser without Sec-Fetch-Site
        {"Origin": "HTTP://LOCALHOST:80"},  # the same origin, spelled otherwise
        {},  # curl, python requests, scripts
    ],
    ids=["fetch-site", "fetch-site-and-origin", "typed", "origin", "spelled", "curl"],
)
def test_a_same_origin_or_headerless_post_is_stored(client, headers):
    response = post(client, headers=headers)

    assert response.status_code == 201
    assert stored(client) == ["hello"]


def test_behind_a_proxy_its_public_origin_is_own(client):
    response = post(
        client,
        headers={
            "Origin": "https://chat.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "chat.example",
        },
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    "app_settings, origin, status",
    [
        ({"CORS_ALLOWED_ORIGINS": ["https://app.example"]}, "https://app.example", 201),
        (
            {"CORS_ALLOWED_ORIGINS": ["https://app.example"]},
            "https://evil.example",
            403,
        ),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "https://anyone.example", 201),
    ],
)
def test_origins_allowed_to_open_sockets_may_write_too(client, origin, status):
    response = post(client, headers={"Sec-Fetch-Site": "cross-site", "Origin": origin})

    assert response.status_code == status


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
def test_a_post_that_is_not_json_is_refused_415(client, content_type):
    response = client.post(
        "/api/channels/lobby/messages",
        data='{"message": "hello"}',
        content_type=content_type,
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert stored(client) == []


def test_a_json_post_with_a_charset_is_stored(client):
    response = client.post(
        "/api/channels/lobby/messages",
        data='{"message": "hello"}',
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 201


def test_a_same_origin_form_post_is_still_not_json(client):
    response = post(
        client,
        data={"message": "hello"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )

    assert response.status_code == 415


def test_a_cross_site_read_is_answered(client):
    post(client)

    response = client.get(
        "/api/channels/lobby/messages", headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 200


# The document's action, /websocket_handler.


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}],
)
def test_the_action_refuses_a_cross_site_message(client, member, method, headers):
    member.join("lobby")
    values = {"channel": "lobby", "message": "pwned"}

    if method == "GET":
        response = client.get(
            "/websocket_handler", query_string=values, headers=headers
        )
    else:
        response = client.post("/websocket_handler", data=values, headers=headers)

    assert response.status_code == 403
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True)
    assert stored(client) == []
    assert member.received("message") == []


@pytest.mark.parametrize(
    "headers", [{"Sec-Fetch-Site": "same-origin"}, {"Origin": CHAT}, {}]
)
def test_the_action_stores_a_same_origin_or_headerless_message(client, headers):
    response = client.post(
        "/websocket_handler",
        data={"channel": "lobby", "message": "hello"},
        headers=headers,
    )

    assert response.get_data(as_text=True) == "Success"
    assert stored(client) == ["hello"]


def test_the_action_without_a_message_answers_any_origin(client):
    response = client.get(
        "/websocket_handler?channel=lobby", headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Success"


def test_the_action_without_a_channel_still_says_so(client):
    response = client.get(
        "/websocket_handler?message=hi", headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 400
    assert response.get_data(as_text=True) == "Channel not specified"


# The production SECRET_KEY.


def production(secret_key):
    return type("Production", (config.ProductionConfig,), {"SECRET_KEY": secret_key})


@pytest.mark.parametrize("key", ["", "short", "x" * 31, config.DEV_SECRET_KEY])
def test_production_refuses_a_short_secret_key(key):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(production(key))


def test_production_says_how_long_the_secret_key_must_be():
    with pytest.raises(RuntimeError, match="has 5 characters.*at least 32"):
        create_app(production("short"))


@pytest.mark.parametrize("key", ["x" * 32, "test-secret-key-of-a-real-length"])
def test_production_starts_with_a_32_character_secret_key(key):
    assert create_app(production(key)).config["SECRET_KEY"] == key


def test_development_keeps_its_short_key(make_app):
    assert make_app(SECRET_KEY="dev").config["SECRET_KEY"] == "dev"
