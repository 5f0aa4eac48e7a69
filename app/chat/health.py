"""How the chat's services answer, for `/healthz`."""

from sqlalchemy import text

from app.chat.errors import ChatError
from app.chat.storage import unit_of_work


def report(link):
    """How the chat's services answer: `{status, database, redis}`, with
    `link` to Redis (None without one).

    `status` is "ok", "degraded" while messages can be stored but Redis does
    not answer (they are delivered from the database meanwhile), or
    "unavailable" when the database does not answer. `redis` is "off"
    without REDIS_URL.
    """
    database = "ok" if database_answers() else "unavailable"
    if link is None:
        redis = "off"
    else:
        redis = "ok" if link.ping() else "unavailable"
    if database != "ok":
        status = "unavailable"
    else:
        status = "degraded" if redis == "unavailable" else "ok"
    return {"status": status, "database": database, "redis": redis}


def database_answers():
    """True when the database answers a trivial query."""
    try:
        with unit_of_work() as session:
            session.execute(text("SELECT 1"))
    except ChatError:
        return False
    return True
