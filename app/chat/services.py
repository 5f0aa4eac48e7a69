"""The chat's services, as one app holds them (built in create_app)."""

from dataclasses import dataclass

from app.chat.identity import Tokens
from app.chat.membership import Membership
from app.chat.messages import Messages
from app.chat.moderation import Bans, Moderation, SlowMode
from app.chat.presence import Presence
from app.chat.rate_limits import Rates


@dataclass
class Chat:
    """What the doors (pages, API, CLI, Socket.IO) call."""

    tokens: Tokens
    rates: Rates
    messages: Messages
    moderation: Moderation
    bans: Bans
    slow_mode: SlowMode
    presence: Presence
    membership: Membership
