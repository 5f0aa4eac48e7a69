"""Verified people: tokens a host site signs, names they fix, refresh and
expiry (app.chat.identity, app.chat.membership), through the test client,
real servers and python-socketio's client."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app import create_app
from conftest import settings
from tokens import SECRET, token


@pytest.fixture
def app_settings():
    return {"CHAT_TOKEN_SECRET": SECRET}


# Who a verified person is.


def test_a_verified_person_posts_under_their_tokens_name(verified, connect):
    ann = verified("u-1", name="Ann")
    guest = connect(auth={"name": "Ann"})
    guest.join("lobby")

    joined = ann.join("lobby")
    ann.send("lobby", "hello")

    assert (joined["name"], joined["user_id"]) == ("Ann", "u-1")
    (message,) = guest.received("message")
    assert (message["author"], message["user_id"]) == ("Ann", "u-1")


def test_a_guest_calling_themselves_ann_has_no_user_id(connect, client):
    guest = connect(auth={"name": "Ann"})
    guest.join("lobby")
    guest.send("lobby", "I am Ann")

    (live,) = guest.received("message")
    (stored,) = client.get("/api/channels/lobby/messages").get_json()["messages"]
    assert live["user_id"] is None
    assert stored["user_id"] is None


def test_history_and_catch_up_carry_the_user_id(verified, connect):
    ann = verified("u-1", name="Ann")
    ann.join("lobby")
    ann.send("lobby", "first")
    later = connect()

    later.join("lobby", since=0)

    assert [m["user_id"] for m in later.received("message")] == ["u-1"]


def test_the_name_defaults_to_the_sub(verified):
    assert verified("ann-42").join("lobby")["name"] == "ann-42"


def test_join_cannot_change_a_verified_name(verified):
    ann = verified(name="Ann")

    refused = ann.call("join", {"channel": "lobby", "name": "Bob"})
    same = ann.call("join", {"channel": "lobby", "name": "Ann"})

    assert refused["code"] == "forbidden"
    assert same["ok"] is True and same["name"] == "Ann"


def test_presence_counts_a_verified_person_once_across_tabs(verified, connect):
    first, second = verified("u-1", name="Ann"), verified("u-1", name="Ann")
    guest = connect(auth={"name": "Ann", "person": "someone-else"})
    first.join("lobby")
    second.join("lobby")

    joined = guest.join("lobby")

    assert (joined["count"], joined["members"]) == (2, ["Ann", "Ann"])


# Tokens that are refused, at connect.


@pytest.fixture
def server(start_thread_server):
    return start_thread_server(CHAT_TOKEN_SECRET=SECRET)


def refusal(server, auth):
    """The `connect_error` data a python-socketio client gets for `auth`."""
    client = socketio.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, auth=auth, transports=["websocket"])
    (refused,) = refusals
    return refused["data"]["code"]


# Made when a test runs: one made at collection could expire before it.
BAD_TOKENS = {
    "a wrong signature": lambda: token(secret="t" * 40),
    "not a JWT": lambda: "not.a.token",
    "a number": lambda: 42,
    "no exp": lambda: jwt.encode({"sub": "ann"}, SECRET, algorithm="HS256"),
    "no sub": lambda: jwt.encode(
        {"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    ),
    "alg none": lambda: jwt.encode(
        {"sub": "ann", "exp": int(time.time()) + 600}, None, "none"
    ),
    "a sub of 65 characters": lambda: token("x" * 65),
    "channels that are not a list": lambda: token(channels="$team"),
    "a channel that is not a name": lambda: token(channels=["$a b"]),
    "an unknown role": lambda: token(role="admin"),
    "a name with a tab": lambda: token(name="a\tb"),
    "8 KB": lambda: token(name="x" * 8000),
    "a lone surrogate": lambda: "\ud800",
    "not ASCII": lambda: token() + "é",
}


@pytest.mark.parametrize("bad", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_an_invalid_token_refuses_the_connection(server, bad):
    assert refusal(server, {"token": bad()}) == "invalid_token"
    assert "Traceback" not in server.log()


def test_an_expired_token_refuses_the_connection(server):
    assert refusal(server, {"token": token(ttl=-60)}) == "token_expired"


def test_a_few_seconds_of_clock_skew_are_allowed(verified):
    assert verified(ttl=-3).client.is_connected()


@pytest.mark.parametrize("app_settings", [{"CHAT_TOKEN_SECRET": None}])
def test_a_chat_without_a_key_verifies_no_token(verified, connect):
    assert not verified().client.is_connected()
    assert connect().client.is_connected()  # guests are welcome


def test_required_auth_refuses_a_guest(start_thread_server):
    server = start_thread_server(CHAT_TOKEN_SECRET=SECRET, CHAT_AUTH="required")

    assert refusal(server, {"name": "guest"}) == "unauthorized"


# Public keys: RS256 and ES256, pinned to the key's type.


def public_pem(key):
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )


KEYS = {
    "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": ec.generate_private_key(ec.SECP256R1()),
}


@pytest.mark.parametrize("algorithm", KEYS)
def test_a_public_key_verifies_its_own_algorithm(make_app, algorithm):
    key = KEYS[algorithm]
    app = make_app(CHAT_TOKEN_PUBLIC_KEY=public_pem(key))
    tokens = app.extensions["chat"].tokens

    person = tokens.verify(token("ann", secret=key, algorithm=algorithm))

    assert person.user_id == "ann"


def hs256_by_hand(claims, secret):
    """An HS256 token signed with any bytes (PyJWT refuses a PEM key)."""

    def part(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + part(signature)).decode()


def test_a_public_key_is_never_used_as_an_hs256_secret(make_app):
    pem = public_pem(KEYS["RS256"])
    tokens = make_app(CHAT_TOKEN_PUBLIC_KEY=pem).extensions["chat"].tokens
    forged = hs256_by_hand({"sub": "ann", "exp": 9999999999}, pem.encode())

    with pytest.raises(Exception) as refused:
        tokens.verify(forged)

    assert refused.value.code == "invalid_token"


def test_an_es256_token_is_refused_by_an_rsa_key(make_app):
    tokens = (
        make_app(CHAT_TOKEN_PUBLIC_KEY=public_pem(KEYS["RS256"]))
        .extensions["chat"]
        .tokens
    )

    with pytest.raises(Exception) as refused:
        tokens.verify(token(secret=KEYS["ES256"], algorithm="ES256"))

    assert refused.value.code == "invalid_token"


BAD_SETTINGS = {
    "a short secret": {"CHAT_TOKEN_SECRET": "short"},
    "both keys": {
        "CHAT_TOKEN_SECRET": SECRET,
        "CHAT_TOKEN_PUBLIC_KEY": public_pem(KEYS["RS256"]),
    },
    "a key that is not PEM": {"CHAT_TOKEN_PUBLIC_KEY": "not a key"},
    "required without a key": {"CHAT_AUTH": "required"},
    "an unknown mode": {"CHAT_AUTH": "sometimes"},
    "a token URL that is not one": {"CHAT_TOKEN_URL": "javascript:alert(1)"},
}


@pytest.mark.parametrize("bad", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_the_app_refuses_to_start_with_bad_token_settings(bad):
    with pytest.raises(RuntimeError):
        create_app(settings(**bad))


# Refresh and expiry.


def test_refresh_keeps_a_connection_with_a_new_exp(verified):
    ann = verified(ttl=5)
    fresh = token(ttl=600)

    ack = ann.call("refresh", {"token": fresh})

    assert ack["ok"] is True
    assert ack["exp"] == jwt.decode(fresh, SECRET, algorithms=["HS256"])["exp"]
    assert ack["left"] == []


def test_refresh_for_another_person_closes_the_connection(verified):
    ann = verified("ann")

    ack = ann.call("refresh", {"token": token("bob")})

    assert ack["code"] == "invalid_token"
    assert not ann.client.is_connected()


def test_a_refused_refresh_token_keeps_the_connection_until_exp(verified):
    ann = verified("ann")

    ack = ann.call("refresh", {"token": token("ann", ttl=-60)})

    assert ack["code"] == "token_expired"
    assert ann.client.is_connected()


def test_an_unrefreshed_connection_is_told_and_closed_after_the_grace(
    app, services, verified
):
    ann = verified(ttl=60)
    ann.join("lobby")
    grace = app.config["CHAT_TOKEN_GRACE"]
    now = time.time()

    kept = services.membership.expire(now + 60 + grace - 2)
    closed = services.membership.expire(now + 60 + grace + 2)

    assert (len(kept), len(closed)) == (0, 1)
    assert not ann.client.is_connected()


def test_a_refreshed_connection_outlives_its_first_exp(services, verified):
    ann = verified(ttl=60)
    ann.call("refresh", {"token": token(ttl=3600)})

    closed = services.membership.expire(time.time() + 600)

    assert closed == []
    assert ann.client.is_connected()


def test_a_served_process_closes_an_expired_connection(start_server):
    server = start_server(CHAT_TOKEN_SECRET=SECRET, CHAT_TOKEN_GRACE="1")
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("chat_error", errors.append)
    client.connect(server.url, auth={"token": token(ttl=1)}, transports=["websocket"])

    deadline = time.monotonic() + 10
    while client.connected and time.monotonic() < deadline:
        time.sleep(0.1)

    assert not client.connected
    assert [error["code"] for error in errors] == ["token_expired"]
    assert "Traceback" not in server.log()


# The CLI.


def test_flask_chat_token_prints_a_token_the_chat_accepts(app):
    runner = app.test_cli_runner()

    result = runner.invoke(
        args=["chat", "token", "ann", "--name", "Ann", "--channels", "$team,ops-*"]
    )

    person = app.extensions["chat"].tokens.verify(result.output.strip())
    assert (person.user_id, person.name) == ("ann", "Ann")
    assert person.channels == ("$team", "$ops-*")


def test_flask_chat_token_needs_the_secret(make_app):
    app = make_app(CHAT_TOKEN_SECRET=None)

    result = app.test_cli_runner().invoke(args=["chat", "token", "ann"])

    assert result.exit_code != 0
    assert "CHAT_TOKEN_SECRET" in result.output
