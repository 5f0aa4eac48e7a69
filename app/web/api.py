"""The HTTP API: channels, history, posting, the document's action, health."""

from flask import Blueprint, current_app, jsonify, request

from app.chat import channels, health, messages, rules
from app.chat.errors import ChatError
from app.chat.rate_limits import Sender
from app.web import chat
from app.web.security import require_same_origin

bp = Blueprint("api", __name__)


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
        return "Channel not specified", 400, {"Content-Type": "text/plain"}
    try:
        if values.get("message"):
            require_same_origin()  # refused cross-site: 403, nothing stored
            _post(values["channel"], values["message"])
        else:
            rules.channel_name(values["channel"])
    except ChatError as error:
        return error.message, error.status, {"Content-Type": "text/plain"}
    return "Success", 200, {"Content-Type": "text/plain"}


@bp.get("/healthz")
def healthz():
    """200 while messages can be stored (Redis may be degraded), 503 when
    the database does not answer; the body says how each service answers."""
    report = health.report(current_app.extensions["chat_redis"])
    return jsonify(report), 503 if report["status"] == "unavailable" else 200


def _post(channel, message, author=None, client_id=None):
    """Post as the request's sender, counted by the rate limits by its
    address (the client's own behind a proxy, see PROXY_COUNT)."""
    services = chat()
    sender = Sender(None, request.remote_addr)
    services.rates.check("send", sender)
    return services.messages.post(channel, message, author, client_id, sender)


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
