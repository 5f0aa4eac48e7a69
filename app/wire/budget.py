"""Each connection's budget of inbound events, and turns for all of them.

gevent runs every connection on one thread, and a socket that always has
bytes waiting is read without ever yielding: a client that floods (without
waiting for answers) could keep the process to itself, however quickly each
event is refused. So every event read from a client (a WebSocket frame, a
long-polling packet) is paid for first:

* from a budget, a token bucket of `burst` events refilled at `rate` per
  second. A connection over its budget is not read again until the bucket
  has refilled: its bytes wait in the kernel, and TCP pushes back on the
  sender at no cost to anyone else. A person never meets the budget (the
  rate limits of app.chat.rate_limits refuse a script's sends and joins
  long before it);
* with a turn: after `TURN` events read while the event loop did not run,
  the reader waits until the loop has polled every other connection.

A connection that has been over its budget for `close_after` seconds
without a pause (it never let the bucket refill to half) is closed:
OverBudget says why.
"""

import time
from typing import NamedTuple

import gevent

# Events a connection may read in one turn, before the others get theirs.
TURN = 8


class Settings(NamedTuple):
    """A deployment's inbound budget: rate 0 turns it off (turns stay)."""

    rate: float = 100.0  # events per second, sustained
    burst: float = 200.0  # events at once
    close_after: float = 10.0  # seconds over the budget before closing

    @classmethod
    def of(cls, config):
        """The settings in an app's config (INBOUND_*)."""
        return cls(
            config["INBOUND_RATE"],
            config["INBOUND_BURST"],
            config["INBOUND_CLOSE_AFTER"],
        )


DEFAULT = Settings()


class OverBudget(Exception):
    """A connection stayed over its budget: close it, with this reason."""


class InboundBudget:
    """One connection's budget of inbound events (see the module)."""

    __slots__ = ("settings", "tokens", "checked", "throttled_since", "turn", "in_turn")

    def __init__(self, settings, now=None):
        self.settings = settings
        self.tokens = settings.burst
        self.checked = time.monotonic() if now is None else now
        self.throttled_since = None  # when it went over, if it is over
        self.turn = None  # the event loop's time of this turn's start
        self.in_turn = 0  # events read in it

    def spend(self, now):
        """Pay for one event read at `now`: the seconds to wait before
        handling it (0.0 when the budget covers it)."""
        settings = self.settings
        tokens = self.tokens + (now - self.checked) * settings.rate
        if tokens > settings.burst:
            tokens = settings.burst
        self.checked = now
        self.tokens = tokens - 1
        if tokens >= 1:
            if tokens >= settings.burst / 2:
                self.throttled_since = None  # it paused: not over any more
            return 0.0
        if self.throttled_since is None:
            self.throttled_since = now
        return -self.tokens / settings.rate  # until the bucket is back at 0

    def over_for(self, now):
        """Seconds the connection has been over its budget without a pause."""
        since = self.throttled_since
        return 0.0 if since is None else now - since

    def take(self):
        """Pay for one event: wait while over the budget, yield after a
        turn's worth; OverBudget when over it for too long."""
        if self.settings.rate:
            now = time.monotonic()
            wait = self.spend(now)
            if wait:
                if self.over_for(now) > self.settings.close_after:
                    raise OverBudget(
                        f"over its budget of {self.settings.rate:g} events/s"
                        f" for {self.settings.close_after:g} s"
                    )
                gevent.sleep(wait)
                return
        tick = gevent.get_hub().loop.now()
        if tick != self.turn:
            self.turn, self.in_turn = tick, 0
        self.in_turn += 1
        if self.in_turn >= TURN:
            gevent.idle()  # every other ready connection is served first
            self.in_turn = 0
