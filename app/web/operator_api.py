"""The operator API: moderation and who is here, for the chat's operators.

Callers show `X-API-Key: CHAT_API_KEY` or a moderator's bearer token; with
no CHAT_API_KEY the whole of it is off (404). Every call is logged with who
made it; what changes something is also kept in the audit log.
"""

import logging

from flask import Blueprint, current_app, g, request
from sqlalchemy import select

from app.chat import rules
from app.chat.errors import ChatError
from app.chat.identity import same_key
from app.chat.models import AuditEntry
from app.chat.rate_limits import Sender
from app.chat.storage import unit_of_work
from app.web import api, chat

log = logging.getLogger(__name__)

bp = Blueprint("operator", __name__, url_prefix="/api")

AUDIT_PAGE = 100


@bp.before_request
def require_operator():
    """Let operators and moderators in; everyone else is refused."""
    key = current_app.config["CHAT_API_KEY"]
    if key is None:
        raise ChatError(
            "operator_api_off", "the operator API is off (no CHAT_API_KEY)", status=404
        )
    given = request.headers.get("X-API-Key")
    if given is not None:
        sender = Sender(None, request.remote_addr)
        # Once an address has spent its wrong keys, even the right one waits.
        chat().rates.check_spent("api_key", sender)
        if not same_key(given, key):
            chat().rates.check("api_key", sender)
            log.warning("operator API: wrong API key from %s", request.remote_addr)
            raise ChatError("invalid_api_key", "the API key is wrong", status=401)
        g.operator = "api-key"
    else:
        api.identify()
        if not g.person.moderator:
            raise ChatError(
                "forbidden",
                "the operator API needs X-API-Key or a moderator's token",
                status=403,
            )
        g.operator = f"user:{g.person.user_id}"
    log.info("operator %s: %s %s", g.operator, request.method, request.path)
    return None


@bp.delete("/channels/<channel>/messages/<int:seq>")
def delete_message(channel, seq):
    """Delete a message: its members get `message_deleted`; it stays a
    tombstone (its seq, no text)."""
    change = chat().moderation.delete(None, channel, seq, actor=g.operator)
    return {"channel": change["channel"], "seq": change["seq"], "deleted": True}


@bp.post("/users/<sub>/ban")
def ban(sub):
    """Ban a person for `seconds` (for good without), with a `reason` they
    are shown: every connection of theirs, on every process, is closed."""
    body = _body()
    return chat().bans.ban(g.operator, sub, body.get("seconds"), body.get("reason"))


@bp.delete("/users/<sub>/ban")
def unban(sub):
    """End a person's ban."""
    if not chat().bans.unban(g.operator, sub):
        raise ChatError("not_banned", f"{sub} is not banned", status=404)
    return {"user_id": sub, "banned": False}


@bp.post("/users/<sub>/disconnect")
def disconnect(sub):
    """Close every connection of a person, on every process, now."""
    chat().bans.kick(g.operator, sub)
    return {"user_id": sub, "disconnected": True}


@bp.put("/channels/<channel>/settings")
def channel_settings(channel):
    """`{slow_mode}`: least seconds between two messages of one person in
    the channel (0: off); moderators are exempt."""
    return chat().slow_mode.set(g.operator, channel, _body().get("slow_mode"))


@bp.get("/channels/<channel>/presence")
def channel_presence(channel):
    """Who is in a channel now, on every process: `{channel, count,
    members: [{name, user_id}]}`."""
    return chat().presence.roster(rules.channel_name(channel))


def _body():
    """The request's JSON object (an empty one without a body)."""
    if not request.content_length:
        return {}
    return rules.fields(request.get_json(silent=True))


@bp.get("/audit")
def audit_log():
    """What moderators and operators did, newest first: `?before=ID` for
    older entries."""
    statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE)
    before = request.args.get("before", type=int)
    if before is not None:
        statement = statement.where(AuditEntry.id < before)
    with unit_of_work() as session:
        entries = [entry.entry() for entry in session.scalars(statement)]
    return {"entries": entries}
