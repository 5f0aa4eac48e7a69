"""How often a connection and an address may send, join, type and open
channels: the chat's rate limits.

Counting is done by the `limits` library, in moving windows. A connection
lives in one process, so its counts stay in that process; an address may
have connections on every process, so with REDIS_URL its counts live in
Redis and every process sees the same ones. While Redis is down, addresses
are counted in this process alone rather than not at all.

In this process the counts are kept by LocalCounts, a storage of our own:
limits' MemoryStorage expires its entries from a timer thread re-armed every
10 ms, which under gevent took 72% of the CPU while a client flooded (the
`abuse` scenario of `make bench`).
"""

import math
import time
from collections import deque
from typing import NamedTuple

from limits import parse_many, storage, strategies
from limits.storage import MovingWindowSupport, Storage

from app.chat.errors import ChatError

# What each action is called in a refusal.
_NOUNS = {
    "send": "messages",
    "join": "joins",
    "typing": "typing notices",
    "new_channel": "new channels",
    "api_key": "wrong API keys and passwords",
}


class Sender(NamedTuple):
    """Who is asking: a Socket.IO connection (None over HTTP) and an address."""

    connection: str | None
    address: str | None


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
        self.local = strategies.MovingWindowRateLimiter(LocalCounts())
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
        """Count one `action` of `sender`; raise `rate_limited` when it is
        one too many for the connection or for the address."""
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
                counter, allowed = self._at_address("hit", limit, action, key)
                if not allowed:
                    raise _refusal(action, counter, limit, key)

    def check_spent(self, action, sender):
        """Raise `rate_limited` if `sender`'s address has already spent its
        limit of `action`, counting nothing: for actions counted only when
        they fail (wrong keys and passwords), so that a right guess is
        refused as well once the wrong ones are spent."""
        if not self.enabled or sender.address is None:
            return
        key = ("address", sender.address)
        for limit in self.per_address[action]:
            counter, allowed = self._at_address("test", limit, action, key)
            if not allowed:
                raise _refusal(action, counter, limit, key)

    def forget(self, connection):
        """A connection closed: drop its counts now rather than at the next
        sweep (its address keeps its own)."""
        if not self.enabled:
            return  # nothing was counted
        for action, limits in self.per_connection.items():
            for limit in limits:
                self.local.clear(limit, action, "connection", connection)

    def _at_address(self, verb, limit, action, key):
        """An address's action counted (`verb` "hit") or looked at ("test"),
        in Redis when it answers, else here; returns the counter used and
        whether the action is allowed."""
        if self.shared is not None and self.link.up:
            allowed = self.link.run(
                "rate limits",
                lambda _: getattr(self.shared, verb)(limit, action, *key),
            )
            if allowed is not None:
                return self.shared, allowed
        return self.local, getattr(self.local, verb)(limit, action, *key)


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


class LocalCounts(Storage, MovingWindowSupport):
    """A limits storage for moving windows in this process, with no timer.

    Each key keeps the times of its entries still in their window; old ones
    are dropped when the key is next used, and keys left idle (a connection
    gone) by a sweep at most once a minute, paid by whichever hit comes due.
    """

    STORAGE_SCHEME = None
    SWEEP_EVERY = 60

    def __init__(self):
        super().__init__()
        self.entries = {}  # key -> (expiry in seconds, deque of times)
        self.next_sweep = time.time() + self.SWEEP_EVERY

    @property
    def base_exceptions(self):
        return ValueError

    def acquire_entry(self, key, limit, expiry, amount=1):
        now = time.time()
        if now >= self.next_sweep:
            self._sweep(now)
        times = self._window(key, expiry, now)
        if len(times) + amount > limit:
            return False
        times.extend([now] * amount)
        return True

    def get_moving_window(self, key, limit, expiry):
        now = time.time()
        times = self._window(key, expiry, now)
        return (times[0] if times else now), len(times)

    def _window(self, key, expiry, now):
        """The times of the key's entries within `expiry` seconds of now."""
        _, times = self.entries.setdefault(key, (expiry, deque()))
        while times and times[0] <= now - expiry:
            times.popleft()
        return times

    def _sweep(self, now):
        self.next_sweep = now + self.SWEEP_EVERY
        for key, (expiry, times) in list(self.entries.items()):
            if not times or times[-1] <= now - expiry:
                del self.entries[key]

    # Counters for the fixed-window strategies, which the chat does not use.

    def incr(self, key, expiry, amount=1):
        raise NotImplementedError("LocalCounts keeps moving windows only")

    def get(self, key):
        raise NotImplementedError("LocalCounts keeps moving windows only")

    def get_expiry(self, key):
        raise NotImplementedError("LocalCounts keeps moving windows only")

    def check(self):
        return True

    def reset(self):
        count = len(self.entries)
        self.entries.clear()
        return count

    def clear(self, key):
        self.entries.pop(key, None)
