"""This process's link to Redis: short timeouts, and the state of an outage.

Redis carries messages between processes and holds presence, but the
database is the source of truth: while Redis is down or frozen the chat keeps
storing and acking messages, and delivers them from the database. So no
command to Redis may hold a sender up for long, and an outage is logged once
when it starts and once when it ends, not once per message.
"""

import logging
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class RedisLink:
    """A Redis client that gives up after `timeout` seconds, and whether
    Redis answered the last time anything asked it."""

    def __init__(self, url, timeout):
        self.url = url
        self.timeout = timeout
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.up = True
        self._down_since = None
        # Called when an outage ends: what was missed meanwhile is repaired.
        self.on_back = []

    def run(self, what, command, fallback=None):
        """`command(client)`, or `fallback` when Redis fails to answer.

        While Redis is known to be down, only `probe()` asks it again, so a
        frozen Redis costs one timeout per outage, not one per command.
        """
        if not self.up:
            return fallback
        try:
            return command(self.client)
        except redis.RedisError as error:
            self.failed(what, error)
            return fallback

    def failed(self, what, error):
        """Note that Redis failed to answer; log it if that starts an outage."""
        if self.up:
            self.up = False
            self._down_since = time.monotonic()
            log.warning(
                "Redis unavailable (%s: %s): messages are delivered from the "
                "database until it is back",
                what,
                error,
            )

    def answered(self):
        """Note that Redis answered; True if that ends an outage."""
        if self.up:
            return False
        self.up = True
        log.warning("Redis is back after %.1f s", time.monotonic() - self._down_since)
        for callback in self.on_back:
            callback()
        return True

    def probe(self):
        """Ask a Redis that is down whether it is back; True if it just came back."""
        if self.up:
            return False
        try:
            self.client.ping()
        except redis.RedisError:
            return False
        return self.answered()

    def ping(self):
        """Whether Redis answers a PING now (for /healthz)."""
        try:
            self.client.ping()
        except redis.RedisError as error:
            self.failed("ping", error)
            return False
        self.answered()
        return True
