"""How often a connection and an address may send, join, type and open
channels: the chat's rate limits.

Counting is done by the `limits` library, in moving windows. A connection
lives in one process, so its counts stay in that process; an address may
have connections on every process, so with REDIS_URL its counts live in
Redis and every process sees the same ones. While Redis is down, addresses
are counted in this process alone rather than not at all.
"""

import math
import time
from typing import NamedTuple

from flask import current_app
from limits import parse_many, storage, strategies

from app.errors import ChatError

# What each action is called in a refusal.
_NOUNS = {
    "send": "messages",
    "join": "joins",
    "typing": "typing notices",
    "new_channel": "new channels",
}


class Sender(NamedTuple):
    """Who is asking: a Socket.IO connection (None over HTTP) and an address."""

    connection: str | None
    address: str | None


def check(action, sender):
    """Count one `action` of `sender`; raise `rate_limited` when it is one
    too many for the connection or for the address."""
    current_app.extensions["chat_rates"].check(action, sender)


class Rates:
    """The limits of each action, per connection and per address."""

    def __init__(self, config, link=None):
        self.enabled = config["CHAT_RATE_LIMITS"]
        self.per_connection = {}
        self.per_address = {}
        for action in _NOUNS:
            name = f"CHAT_RATE_{action.upper()}"
            self.per_connection[action] = _limits(config[name])
            self.per_address[action] = _limits(config[f"{name}_PER_ADDRESS"])
        self.local = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self.link = link
        self.shared = None
        if link is not None:
            self.shared = strategies.MovingWindowRateLimiter(
                storage.RedisStorage(
                    link.url,
                    socket_timeout=link.timeout,
                    socket_connect_timeout=link.timeout,
                )
            )

    def check(self, action, sender):
        if not self.enabled:
            return
        if sender.connection is not None:
            for limit in self.per_connection[action]:
                key = ("connection", sender.connection)
                if not self.local.hit(limit, action, *key):
                    raise _refusal(action, self.local, limit, key)
        if sender.address is not None:
            key = ("address", sender.address)
            for limit in self.per_address[action]:
                counter, allowed = self._hit_address(limit, action, key)
                if not allowed:
                    raise _refusal(action, counter, limit, key)

    def _hit_address(self, limit, action, key):
        """Count an address's action in Redis when it answers, else here;
        returns the counter used and whether the action is allowed."""
        if self.shared is not None and self.link.up:
            allowed = self.link.run(
                "rate limits", lambda _: self.shared.hit(limit, action, *key)
            )
            if allowed is not None:
                return self.shared, allowed
        return self.local, self.local.hit(limit, action, *key)


def _limits(text):
    """`5/second;100/minute` as limits; `off` or nothing for none."""
    text = (text or "").strip()
    if text.lower() in ("", "off", "none"):
        return []
    return parse_many(text)


def _refusal(action, counter, limit, key):
    reset = counter.get_window_stats(limit, action, *key).reset_time
    retry_after = max(1, math.ceil(reset - time.time()))
    return ChatError(
        "rate_limited",
        f"too many {_NOUNS[action]}: try again in {retry_after} s",
        status=429,
        retry_after=retry_after,
    )
