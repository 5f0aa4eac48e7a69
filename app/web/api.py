"""The HTTP API: channels, history, posting, the document's action, health.

A request may carry `Authorization: Bearer <token>`: its person posts under
the token's name and may read and post to the private channels it grants.
With CHAT_AUTH=required, every route but /healthz needs one.
"""

from functools import partial

from flask import Blueprint, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from app.chat import channels, health, messages, rules
from app.chat.errors import ChatError
from app.chat.identity import same_key
from app.chat.rate_limits import Sender
from app.metrics import may_read
from app.web import chat
from app.web.security import require_same_origin

bp = Blueprint("api", __name__)

# Routes with rules of their own, whatever CHAT_AUTH says: load balancers'
# health checks, and Prometheus's scrapes.
OPEN_ROUTES = {"api.healthz", "api.metrics"}


@bp.before_request
def identify():
    """Who is asking: the person of the request's bearer token, or a guest."""
    if request.endpoint in OPEN_ROUTES:
        return None
    try:
        g.person = chat().tokens.person(_bearer_token())
    except ChatError as error:
        if request.endpoint == "api.websocket_handler":
            return _text(error.message, error.status)
        raise
    return None


@bp.get("/api/channels")
def list_channels():
    """Channels with messages, most recently active first."""
    page = channels.active_channels(
        _int_param("limit", "invalid_limit"), _before_param()
    )
    return {"channels": page.channels, "next_before": page.next_before}


@bp.get("/api/channels/<channel>/messages")
def read_messages(channel):
    """A channel's retained messages, oldest first; `?since=SEQ` for newer ones."""
    channel = rules.channel_name(channel)
    g.person.check_access(channel)
    found = messages.known_history(channel, _since_param())
    return {
        "channel": found.channel,
        "last_seq": found.last_seq,
        "recovered": found.recovered,
        "messages": found.messages,
    }


@bp.post("/api/channels/<channel>/messages")
def post_message(channel):
    """Post `{message, author?, client_id?}`: stored, pruned and broadcast like
    send_message; a retry of a client_id answers with the original message."""
    body = request.get_json(silent=True)  # JSON: see app.web.security
    if body is None:
        raise ChatError("invalid_json", "request body must be JSON")
    fields = rules.fields(body)
    stored = _post(
        channel,
        fields.get("message"),
        fields.get("author"),
        fields.get("client_id"),
    )
    return stored, 201


@bp.route("/websocket_handler", methods=["GET", "POST"])
def websocket_handler():
    """The document's action: store `message` in `channel` if given."""
    values = request.values
    if not values.get("channel"):
        return _text("Channel not specified", 400)
    try:
        channel = rules.channel_name(values["channel"])
        g.person.check_access(channel)
        if values.get("message"):
            require_same_origin()  # refused cross-site: 403, nothing stored
            _post(channel, values["message"])
    except ChatError as error:
        return _text(error.message, error.status)
    return _text("Success", 200)


@bp.get("/healthz")
def healthz():
    """200 while messages can be stored (Redis may be degraded), 503 when
    the database does not answer; the body says how each service answers."""
    report = health.report(current_app.extensions["chat_redis"])
    return jsonify(report), 503 if report["status"] == "unavailable" else 200


def _post(channel, message, author=None, client_id=None):
    """Post as the request's person (under their token's name when
    verified), counted by the rate limits by its address (the client's own
    behind a proxy, see PROXY_COUNT)."""
    services, person = chat(), g.person
    channel = rules.channel_name(channel)
    person.check_access(channel)
    services.bans.check(person)
    if person.verified:
        if author is not None and rules.display_name(author) != person.name:
            raise ChatError(
                "forbidden",
                "a verified person posts under the name their token gives",
                status=403,
            )
        author = person.name
    sender = Sender(None, request.remote_addr)
    services.rates.check("send", sender)
    slowed = f"user:{person.user_id}" if person.verified else sender.address
    post = partial(
        services.messages.post,
        channel,
        message,
        author,
        client_id,
        sender,
        user_id=person.user_id,
    )
    return services.slow_mode.admit(channel, slowed, person.moderator, post)


@bp.get("/metrics")
def metrics():
    """This process's metrics, in Prometheus's text format: for loopback,
    CHAT_METRICS_ALLOW's networks, and the operator API's key."""
    counted = current_app.extensions["chat_metrics"]
    key = current_app.config["CHAT_API_KEY"]
    given = request.headers.get("X-API-Key")
    allowed = may_read(request.remote_addr, counted.allowed)
    if not (allowed or (key and given and same_key(given, key))):
        raise ChatError("forbidden", "metrics are for the chat's operators", status=403)
    return counted.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def _bearer_token():
    """The token of `Authorization: Bearer <token>`, or None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ChatError(
            "invalid_token", "Authorization must be 'Bearer <token>'", status=401
        )
    return token.strip()


def _text(body, status):
    return body, status, {"Content-Type": "text/plain"}


def _int_param(name, code):
    """A whole-number query parameter, or None when absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise ChatError(code, f"{name} must be a whole number")
    return int(raw)


def _before_param():
    raw = request.args.get("before")
    if raw is not None and len(raw) > 256:
        raise ChatError("invalid_before", "before must be a next_before")
    return raw


def _since_param():
    return rules.since_seq(_int_param("since", "invalid_since"))
