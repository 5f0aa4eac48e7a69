"""The channel list: channels with messages, most recently active first."""

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, tuple_

from app.chat import rules
from app.chat.errors import ChatError
from app.chat.models import Channel, timestamp
from app.chat.storage import unit_of_work
from app.extensions import db


@dataclass(frozen=True)
class ChannelPage:
    """One page of the channel list, and where the next one starts."""

    channels: list
    next_before: str | None


def active_channels(limit=None, before=None):
    """Public channels with messages, most recently active first, a page
    at a time (private channels are never listed).

    `limit` channels at most (CHANNELS_PER_PAGE without one); `before` is
    the `next_before` of the previous page. One index range, whatever the
    number of channels: the counts are kept on each channel's row.
    """
    limit = rules.page_size(limit)
    query = (
        select(Channel)
        .where(Channel.message_count > 0, ~Channel.name.startswith(rules.PRIVATE_MARK))
        .order_by(Channel.last_message_at.desc(), Channel.name.desc())
        .limit(limit + 1)
    )
    if before is not None:
        at, name = _page_start(before)
        query = query.where(tuple_(Channel.last_message_at, Channel.name) < (at, name))
    with unit_of_work() as session:
        rows = session.scalars(query).all()
    more, rows = len(rows) > limit, rows[:limit]
    return ChannelPage(
        [
            {
                "name": channel.name,
                "message_count": channel.message_count,
                "last_seq": channel.last_seq,
                "last_message_at": timestamp(channel.last_message_at),
            }
            for channel in rows
        ],
        _page_mark(rows[-1]) if more else None,
    )


def _page_mark(channel):
    """An opaque `before` that starts the next page after `channel`."""
    moment = channel.last_message_at
    if moment.tzinfo is not None:  # PostgreSQL; SQLite hands back naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    moment = moment.isoformat()
    raw = json.dumps([moment, channel.name]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_start(mark):
    """`(last_message_at, name)` of a `before`, or `invalid_before`."""
    try:
        raw = base64.urlsafe_b64decode(mark + "=" * (-len(mark) % 4))
        moment, name = json.loads(raw)
        at = datetime.fromisoformat(moment)
    except (ValueError, TypeError):
        raise ChatError("invalid_before", "before must be a next_before") from None
    if not isinstance(name, str):
        raise ChatError("invalid_before", "before must be a next_before")
    if db.engine.dialect.name == "postgresql":
        at = at.replace(tzinfo=UTC)
    return at, name
