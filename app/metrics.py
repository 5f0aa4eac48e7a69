"""What an operator can watch: the chat's Prometheus metrics, one set per
process (each process serves its own /metrics; see the README).

Counting stays off the message path's per-member work: deliveries are
counted once per broadcast, messages once per committed batch, and the time
a send takes goes into a histogram kept as plain bucket counts (no lock: the
process's greenlets never interleave inside it), which prometheus_client
reads only when /metrics is scraped.
"""

import ipaddress
from bisect import bisect_left

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client import gc_collector, platform_collector, process_collector
from prometheus_client.core import HistogramMetricFamily

# Seconds, from a send's event being read to its ack being written.
SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The chat's metrics, with the standard process metrics, in a registry
    of the app's own."""

    def __init__(self, allowed=()):
        self.allowed = allowed  # networks that may read /metrics, besides loopback
        self.registry = registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
        self.connections = Gauge(
            "chat_connections",
            "Engine.IO connections open in this process",
            registry=registry,
        )
        self.stored = Counter(
            "chat_messages_stored",
            "Messages committed by this process",
            registry=registry,
        )
        self.deliveries = Counter(
            "chat_deliveries",
            "Messages (live, history and repairs) handed to members' connections",
            registry=registry,
        )
        self.refusals = Counter(
            "chat_refusals",
            "Events and requests refused, by the refusal's code",
            ["code"],
            registry=registry,
        )
        self.repairs = Counter(
            "chat_repairs",
            "Rooms brought up to date from the database (Redis lost messages)",
            registry=registry,
        )
        self.redis_up = Gauge(
            "chat_redis_up",
            "1 while Redis answers, 0 while it does not (absent without Redis)",
            registry=registry,
        )
        self.send_seconds = Timings(
            "chat_send_seconds",
            "Seconds from a send_message event read to its ack written",
            SEND_BUCKETS,
        )
        registry.register(self.send_seconds)

    def watch(self, connections, link=None):
        """Read the open connections (a callable), and Redis's state, when
        scraped."""
        self.connections.set_function(connections)
        if link is not None:
            self.redis_up.set_function(lambda: 1 if link.up else 0)

    def refused(self, code):
        self.refusals.labels(code).inc()

    def exposition(self):
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)


class Timings:
    """A histogram of durations kept as bucket counts: observe() is a
    bisect and two additions."""

    def __init__(self, name, documentation, buckets):
        self.name = name
        self.documentation = documentation
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, seconds):
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def describe(self):
        return []

    def collect(self):
        running, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self.counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self.total
        )


def may_read(address, allowed):
    """Whether a client may read /metrics: from loopback, or from an
    address in `allowed` (CIDR networks, CHAT_METRICS_ALLOW)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return ip.is_loopback or any(ip in network for network in allowed)


def networks(value):
    """CHAT_METRICS_ALLOW, comma-separated CIDR networks, parsed."""
    try:
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in (value or "").split(",")
            if part.strip()
        ]
    except ValueError as error:
        raise RuntimeError(f"CHAT_METRICS_ALLOW: {error}") from None
