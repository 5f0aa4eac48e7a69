"""What an operator can watch: the chat's Prometheus metrics, one set per
process (each process serves its own /metrics; see docs/operations.md).

Counting stays off the message path's per-member work: deliveries are
counted once per broadcast, messages once per committed batch, each as an
addition to a plain number (a prometheus_client Counter takes a lock per
increment, which `make bench` showed on the message path), and the time a
send takes goes into bucket counts; prometheus_client reads them all only
when /metrics is scraped.
"""

import ipaddress
from bisect import bisect_left

from prometheus_client import (
    CollectorRegistry,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

# Seconds, from a send's event being read to its ack being written.
SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The chat's metrics, with the standard process metrics, in a registry
    of the app's own. Counts are plain numbers, added to on the message
    path without a lock (a process's greenlets never interleave inside an
    addition) and read by collect() when /metrics is scraped."""

    def __init__(self, allowed=()):
        self.allowed = allowed  # networks that may read /metrics, besides loopback
        self.stored = 0  # messages committed by this process
        self.deliveries = 0  # messages handed to members' connections
        self.repairs = 0  # rooms brought up to date from the database
        self.refusals = {}  # code -> refusals
        self.send_seconds = Timings(SEND_BUCKETS)
        self._connections = lambda: 0
        self._redis_up = None
        self.registry = registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
        registry.register(self)

    def watch(self, connections, link=None):
        """Read the open connections (a callable), and Redis's state, when
        scraped."""
        self._connections = connections
        if link is not None:
            self._redis_up = lambda: 1 if link.up else 0

    def refused(self, code):
        self.refusals[code] = self.refusals.get(code, 0) + 1

    def exposition(self):
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)

    def describe(self):
        return []  # what collect() yields depends on the settings

    def collect(self):
        yield GaugeMetricFamily(
            "chat_connections",
            "Engine.IO connections open in this process",
            value=self._connections(),
        )
        yield CounterMetricFamily(
            "chat_messages_stored",
            "Messages committed by this process",
            value=self.stored,
        )
        yield CounterMetricFamily(
            "chat_deliveries",
            "Messages (live, history and repairs) handed to members' connections",
            value=self.deliveries,
        )
        refusals = CounterMetricFamily(
            "chat_refusals",
            "Events and requests refused, by the refusal's code",
            labels=["code"],
        )
        for code, count in sorted(self.refusals.items()):
            refusals.add_metric([code], count)
        yield refusals
        yield CounterMetricFamily(
            "chat_repairs",
            "Rooms brought up to date from the database (Redis lost messages)",
            value=self.repairs,
        )
        if self._redis_up is not None:
            yield GaugeMetricFamily(
                "chat_redis_up",
                "1 while Redis answers, 0 while it does not",
                value=self._redis_up(),
            )
        yield self.send_seconds.family(
            "chat_send_seconds",
            "Seconds from a send_message event read to its ack written",
        )


class Timings:
    """A histogram of durations kept as bucket counts: observe() is a
    bisect and two additions."""

    def __init__(self, buckets):
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, seconds):
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def family(self, name, documentation):
        running, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self.counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        return HistogramMetricFamily(
            name, documentation, buckets=buckets, sum_value=self.total
        )


def may_read(address, allowed):
    """Whether a client may read /metrics: from loopback, or from an
    address in `allowed` (CIDR networks, CHAT_METRICS_ALLOW)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return ip.is_loopback or any(ip in network for network in allowed)


def networks(value, setting="CHAT_METRICS_ALLOW"):
    """A setting of comma-separated CIDR networks, parsed."""
    try:
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in (value or "").split(",")
            if part.strip()
        ]
    except ValueError as error:
        raise RuntimeError(f"{setting}: {error}") from None
