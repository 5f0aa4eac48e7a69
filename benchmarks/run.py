"""`make bench`: the chat against the Node socket.io yardstick, in one run.

Each round starts each server afresh (the chat as `make serve` runs it: one
gunicorn process on SQLite, with BENCH_ENV: rate limits off; the yardstick:
benchmarks/yardstick, Node's socket.io), alternating which goes first, and drives it with
benchmarks/load.js:

  (a) burst:        100 clients in 10 channels each send 100 messages at once;
                    again with socket.io-client 2.x clients (Engine.IO 3)
  (b) latency:      500 messages/s for 5 s; end-to-end latency per delivery
  (c) connections:  10,000 WebSocket clients; connect time, server RSS per
                    connection, fan-out of one message to 1,000 members
  (d) storage:      store + number + prune with 1 thousand vs 1 million
                    messages stored in other channels (benchmarks/storage.py)
  (f) frames:       WebSocket readers: the chat's own against gevent-websocket's
                    and wsproto's, on the same client frames of 100 bytes and
                    16 KB (benchmarks/frames.py)
  (g) channels:     a page of the channel list with 100,000 channels, the
                    first and the next (benchmarks/channels.py)
  (e) abuse:        (b) beside one more client flooding its own channel with
                    send_message and join, 200 unanswered at a time; the
                    normal clients' latency, the flood attempted and accepted.
                    Each server is started afresh for it, the chat with
                    ABUSE_ENV added to its environment.
  (h) soak:         the chat alone, started afresh with SOAK_ENV, and once
                    rather than every round (memory is not a race; a run
                    takes about a minute). Six steady members stay connected
                    while benchmarks/soak.js runs three phases of 1,500
                    short-lived clients, 40 at a time: WebSocket,
                    long-polling and upgrading, socket.io-client 4.x and 2.x
                    (Engine.IO 3), guests, named guests, verified people and
                    forged tokens (refused), joining one or two channels,
                    typing, sending, leaving, and going at every step (right
                    after connecting, after joining, in the middle of a
                    send, after the whole visit, or cutting the TCP
                    connection). After each phase, once /metrics counts only
                    the steady members' connections again, the worker's RSS
                    and open files are read. The first phase warms the
                    server up (caches, the allocator's arenas, SQLite's page
                    cache); what the next two add, divided by the
                    connections that came and went in them, is the memory
                    kept per connection: a leak shows as kilobytes, a server
                    that returns to where it was as about nothing.

Prints medians over the rounds and project/peer ratios, and writes them with
the machine's description to benchmarks/README.md, and the latency
distributions to benchmarks/latency.png.

    python benchmarks/run.py [--rounds 3] [--quick] [--output PATH] [--plot PATH]
                             [--only SCENARIO ...]

--quick runs every scenario tiny and once (what `make test` checks).
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Its packages are installed by `make bench` (and `make test`).
YARDSTICK = HERE / "yardstick"
BIN = Path(sys.executable).parent

# The chat's environment for scenarios (a) to (c), which measure what the
# chat can carry: its rate limits and per-address connection cap would
# refuse most of their load (100 messages at once from one connection,
# 10,000 connections from one address), and the yardstick has neither.
BENCH_ENV = {"CHAT_RATE_LIMITS": "off", "MAX_CONNECTIONS_PER_ADDRESS": "0"}

# The chat's environment for scenario (e), which measures what its rate
# limits do for the other clients while one client floods. Every client of
# the benchmark connects from 127.0.0.1, the abusive one as well, so the
# per-address limits would refuse the normal clients too: they are off here,
# and the per-connection ones (config.py's defaults) on.
ABUSE_ENV = {
    "MAX_CONNECTIONS_PER_ADDRESS": "0",
    **{
        f"CHAT_RATE_{action}_PER_ADDRESS": "off"
        for action in ("SEND", "JOIN", "TYPING", "NEW_CHANNEL")
    },
}

# The chat's environment for scenario (h): BENCH_ENV, and a key for the
# tokens of its verified clients (which benchmarks/soak.js signs).
SOAK_SECRET = "soak-token-secret-0123456789-abcdefghij"
# With --admin, scenarios (a) to (c) run with the socket.io Admin UI on and
# an admin watching (benchmarks/watch.js): what it costs is the difference
# from a run without.
ADMIN_PASSWORD = "an admin watching the benchmark"
ADMIN_ENV = {"CHAT_ADMIN_PASSWORD": ADMIN_PASSWORD}

SOAK_ENV = {**BENCH_ENV, "CHAT_TOKEN_SECRET": SOAK_SECRET}

FULL = {
    "burst": "--clients 100 --channels 10 --messages 100".split(),
    "latency": "--clients 100 --channels 10 --rate 500 --duration 5".split(),
    "connections": "--clients 10000 --channel-size 1000".split(),
    "storage": "--ops 500 --sizes 1000 1000000".split(),
    "frames": "--messages 20000 --sizes 100 16384".split(),
    "channels": "--channels 100000 --requests 50".split(),
    "abuse": "--clients 100 --channels 10 --rate 500 --duration 5".split()
    + "--in-flight 200 --warmup 1 --flood both".split(),
    "firehose": "--clients 100 --channels 10 --rate 500 --duration 5".split()
    + "--in-flight 100 --warmup 1 --flood both --firehose".split(),
    "soak": "--clients 1500 --phases 3 --steady 6 --concurrency 40".split(),
}
QUICK = {
    "burst": "--clients 10 --channels 2 --messages 10".split(),
    "latency": "--clients 10 --channels 2 --rate 50 --duration 1".split(),
    "connections": "--clients 60 --channel-size 20".split(),
    "storage": "--ops 20 --sizes 100 1000".split(),
    "frames": "--messages 200 --sizes 100 16384".split(),
    "channels": "--channels 1000 --requests 5".split(),
    "abuse": "--clients 10 --channels 2 --rate 50 --duration 1".split()
    + "--in-flight 20 --warmup 0.2 --flood both".split(),
    "firehose": "--clients 10 --channels 2 --rate 50 --duration 1".split()
    + "--in-flight 20 --warmup 0.2 --flood both --firehose".split(),
    "soak": "--clients 39 --phases 3 --steady 4 --concurrency 13".split(),
}
SCENARIOS = (
    "burst",
    "latency",
    "connections",
    "storage",
    "frames",
    "channels",
    "abuse",
    "firehose",
    "soak",
)
TARGETS = {
    ("burst", "delivered_per_s"): "≥ 1.0× peer",
    ("latency", "p99_ms"): "≤ 1.5× peer",
    ("connections", "rss_per_connection_kb"): "≤ 14 KB",
    ("storage", "storage_ratio"): "≤ 1.2×",
    ("burst", "cpu_us_per_delivery"): "≤ 1.0× peer",
    ("abuse", "p99_ms"): "normal clients' p99 ≤ 100 ms",
    ("firehose", "p99_ms"): "normal clients' p99 ≤ 100 ms",
    ("channels", "ms"): "< 50 ms",
    ("soak", "kept_per_connection_kb"): "≤ 0.5 KB",
}


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: no answer")


def cpu_seconds(pid):
    """User and system CPU time the process `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Project:
    """The chat as `make serve` runs it: gunicorn, one process, SQLite;
    this checkout's, or the one at `root`."""

    name = "project"

    def __init__(self, root=ROOT, name="project"):
        self.root = root
        self.name = name

    def start(self, workdir, extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "CHAT_ENV": "production",
            "SECRET_KEY": "benchmark-secret-key-0123456789-abcdefghij",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "PORT": str(self.port),
            **(extra_env or {}),
        }
        subprocess.run(
            [BIN / "flask", "--app", "app", "db", "upgrade"],
            cwd=self.root,
            env=env,
            check=True,
            capture_output=True,
        )
        self.log = open(workdir / "project.log", "wb")
        self.process = subprocess.Popen(
            [BIN / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=self.root,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        wait_for(f"{self.url}/healthz", self.process)

    @property
    def serving_pid(self):
        """The gunicorn worker, which holds the connections."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self.log.close()


class Peer:
    """The yardstick: Node's socket.io server, history in memory."""

    name = "peer"

    def start(self, workdir, extra_env=None):
        """extra_env is the chat's: the yardstick has no settings."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["node", "server.js", str(self.port), "10"],
            cwd=YARDSTICK,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"{self.url}/socket.io/?EIO=4&transport=polling", self.process)

    @property
    def serving_pid(self):
        return self.process.pid

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def load(scenario, url, options, extra=(), pid=None):
    """Run one load.js scenario; its JSON result. With the server's `pid`,
    also the server's CPU time per delivered message, in µs."""
    cpu = cpu_seconds(pid) if pid else None
    done = subprocess.run(
        ["node", "load.js", scenario, "--url", url, *options, *extra],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit"] = done.returncode
    if pid and result.get("deliveries"):
        used = cpu_seconds(pid) - cpu
        result["cpu_us_per_delivery"] = round(used / result["deliveries"] * 1e6, 2)
    return result


def burst(server, options, extra=()):
    """Scenario (a), with the server's CPU time read over the burst alone:
    from the moment every client has joined to the last delivery."""
    process = subprocess.Popen(
        ["node", "load.js", "burst", "--url", server.url, "--steps", *options, *extra],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    used, before, result = None, None, {}
    for line in process.stdout:  # the phases, then the result (or only that)
        step = json.loads(line)
        if step.get("phase") == "joined":
            before = cpu_seconds(server.serving_pid)
            process.stdin.write("\n")
            process.stdin.flush()
        elif step.get("phase") == "delivered" and before is not None:
            used = cpu_seconds(server.serving_pid) - before
        else:
            result = step
    result["exit"] = process.wait(timeout=600)
    if used is not None and result.get("deliveries"):
        result["cpu_us_per_delivery"] = round(used / result["deliveries"] * 1e6, 2)
    return result


def connections(server, options):
    """Scenario (c), holding the connections while the server's RSS is read."""
    before = rss_kb(server.serving_pid)
    process = subprocess.Popen(
        ["node", "load.js", "connections", "--url", server.url, "--hold", *options],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    result = json.loads(process.stdout.readline())
    time.sleep(1)  # let the server settle before reading its memory
    after = rss_kb(server.serving_pid)
    process.stdin.write("\n")
    process.stdin.close()
    result["exit"] = process.wait(timeout=120)
    connected = max(result.get("connected", 0), 1)
    result["rss_before_kb"], result["rss_after_kb"] = before, after
    result["rss_per_connection_kb"] = round((after - before) / connected, 2)
    return result


def soak(options, workdir):
    """Scenario (h) on the chat, started afresh with SOAK_ENV: its worker's
    RSS and open files once the steady members have joined, and after each
    phase of benchmarks/soak.js once that phase's clients are gone."""
    server = Project()
    server.start(workdir, SOAK_ENV)
    try:
        return soak_readings(server, options)
    finally:
        server.stop()


def soak_readings(server, options):
    """soak.js against `server`: its result, with the worker's RSS (MB) and
    open files at each reading, and the KB kept per connection."""
    process = subprocess.Popen(
        ["node", "soak.js", "--url", server.url, "--steps"]
        + ["--token-secret", SOAK_SECRET, *options],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    pid, steady, readings, result = server.serving_pid, 0, [], {}
    for line in process.stdout:  # the steady members, each phase, the result
        step = json.loads(line)
        if "scenario" in step:
            result = step
            break
        steady = step.get("steady", steady)
        settled = settle(server, steady)
        readings.append((rss_kb(pid), open_files(pid), settled))
        process.stdin.write("\n")
        process.stdin.flush()
    result["exit"] = process.wait(timeout=60)
    if len(readings) < 3 or "clients_per_phase" not in result:
        return result  # it failed before its phases were done
    if not all(settled for _, _, settled in readings):
        result["ok"] = False
        result["error"] = "connections stayed open after their clients had gone"
    rss = [kb for kb, _, _ in readings]
    visits = result["clients_per_phase"] * (len(readings) - 2)  # after warm-up
    result["rss_mb"] = [round(kb / 1024, 1) for kb in rss]  # start, each phase
    result["open_files"] = [files for _, files, _ in readings]
    result["kept_per_connection_kb"] = round((rss[-1] - rss[1]) / visits, 2)
    return result


def settle(server, connections, timeout=60):
    """Wait until the server holds `connections` Engine.IO connections (its
    /metrics, read from loopback), then a moment more; False if it never
    does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        counted = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("chat_connections ")
        )
        if counted == connections:
            time.sleep(1)
            return True
        time.sleep(0.2)
    return False


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_round(server, sizes, workdir, latencies, only, admin=False):
    results = {}
    if only & {"burst", "latency", "connections"}:
        watched = admin and server.name == "project"
        server.start(workdir, {**BENCH_ENV, **(ADMIN_ENV if watched else {})})
        try:
            with watching(server if watched else None) as heard:
                results.update(loads(server, sizes, workdir, latencies, only))
            if watched:
                told = heard["events"]
                results["admin"] = {"events": told, "ok": bool(told), "exit": 0}
        finally:
            server.stop()
    for scenario in ("abuse", "firehose"):
        if scenario in only:
            results[scenario] = abuse(server, scenario, sizes, workdir / scenario)
    return results


@contextmanager
def watching(server):
    """An admin logged in to `server`'s Admin UI namespace for the block
    (benchmarks/watch.js), as the UI is; yields {"events": N}, what the
    chat told it, filled in at the end. Nothing, for no server."""
    heard = {"events": None}
    if server is None:
        yield heard
        return
    process = subprocess.Popen(
        ["node", "watch.js", "--url", server.url, "--password", ADMIN_PASSWORD],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started = json.loads(process.stdout.readline())
    if not started.get("watching"):
        raise RuntimeError(f"the admin could not log in: {started}")
    try:
        yield heard
    finally:
        process.stdin.close()
        heard["events"] = json.loads(process.stdout.readline())["events"]
        process.wait(timeout=10)


def loads(server, sizes, workdir, latencies, only):
    """Scenarios (a) to (c) on one server."""
    results = {}
    pid = server.serving_pid
    if "burst" in only:
        results["burst"] = burst(server, sizes["burst"])
        results["burst_2x"] = burst(server, sizes["burst"], ["--client", "2"])
    if "latency" in only:
        latency_file = workdir / f"{server.name}-latencies.txt"
        results["latency"] = load(
            "latency",
            server.url,
            sizes["latency"],
            ["--latencies-file", str(latency_file)],
            pid=pid,
        )
        latencies[server.name].extend(
            float(line) for line in latency_file.read_text().split()
        )
    if "connections" in only:
        results["connections"] = connections(server, sizes["connections"])
    return results


def abuse(server, scenario, sizes, workdir):
    """Scenario (e), one abuser (`abuse` or `firehose`), on a server started
    afresh with ABUSE_ENV."""
    workdir.mkdir()
    server.start(workdir, ABUSE_ENV)
    try:
        result = load("abuse", server.url, sizes[scenario])
    finally:
        server.stop()
    if "rate_limited" in result.get("error", ""):
        print(
            f"(e) {server.name}: normal clients were rate-limited; all clients "
            "share 127.0.0.1, so turn per-address limits off in ABUSE_ENV "
            "(benchmarks/run.py)",
            file=sys.stderr,
        )
    return result


def in_process(scenario, sizes, rounds):
    """Run benchmarks/<scenario>.py, which measures without a server; its JSON."""
    done = subprocess.run(
        [
            sys.executable,
            HERE / f"{scenario}.py",
            "--rounds",
            str(rounds),
            *sizes[scenario],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(rounds, scenario, field):
    values = [
        result[scenario][field]
        for result in rounds
        if field in result.get(scenario, {})
    ]
    return statistics.median(values) if values else None


def flood(rounds, scenario, kind):
    """(e)'s abusive events `kind` (attempted, accepted): 'count (rate/s)'."""
    count = median_of(rounds, scenario, f"abuser_{kind}")
    rate = median_of(rounds, scenario, f"abuser_{kind}_per_s")
    if count is None:
        return None
    return f"{count:,.0f} ({rate:,.0f}/s)" if rate is not None else f"{count:,.0f}"


def frame_rows(frames_result):
    """(f): each reader's median µs per message, by message size, and its
    ratio to the chat's own reader."""
    rows = []
    for size, readers in frames_result["us"].items():
        chat = readers["chat"]
        for reader in ("chat", "gevent-websocket", "wsproto"):
            rows.append(
                {
                    "label": f"(f) {reader} reads a {int(size):,}-byte frame, µs",
                    "field": f"frames_{reader}_{size}",
                    "project": readers[reader],
                    "peer": None,
                    "ratio": readers[reader] / chat if reader != "chat" else None,
                    "target": "" if reader == "chat" else "× the chat's reader",
                }
            )
    return rows


def channel_rows(channels_result):
    """(g): the median time of the first page and of the next, in ms."""
    return [
        {
            "label": f"(g) {name} page of {channels_result['channels']:,} channels, ms",
            "field": f"channels_{name}",
            "project": channels_result["ms"][name],
            "peer": None,
            "ratio": None,
            "target": TARGETS[("channels", "ms")],
        }
        for name in ("first", "next")
    ]


def storage_rows(storage_result):
    """(d): the median µs of a write with few and with many stored."""
    sizes = {
        int(size): statistics.median(values)
        for size, values in storage_result["rounds_us"].items()
    }
    small, large = sorted(sizes)
    return [
        {
            "label": f"(d) store+number+prune, µs, {small:,} vs {large:,} stored",
            "field": "storage_ratio",
            "project": f"{sizes[small]:.0f} / {sizes[large]:.0f}",
            "peer": None,
            "ratio": sizes[large] / sizes[small],
            "target": TARGETS[("storage", "storage_ratio")],
        }
    ]


MEASURES = [
    ("burst", "delivered_per_s", "(a) delivered messages/s"),
    ("burst", "cpu_us_per_delivery", "(a) server CPU per delivered message, µs"),
    ("burst_2x", "delivered_per_s", "(a) the same, socket.io-client 2.x"),
    (
        "burst_2x",
        "cpu_us_per_delivery",
        "(a) CPU per delivery, socket.io-client 2.x, µs",
    ),
    ("latency", "p50_ms", "(b) latency p50 ms"),
    ("latency", "p99_ms", "(b) latency p99 ms"),
    ("latency", "max_ms", "(b) latency max ms"),
    ("latency", "cpu_us_per_delivery", "(b) server CPU per delivered message, µs"),
    ("connections", "connect_s", "(c) connect all, s"),
    ("connections", "connect_errors", "(c) connect errors"),
    ("connections", "rss_per_connection_kb", "(c) server RSS per connection, KB"),
    ("connections", "fanout_ms", "(c) fan-out to the big channel, ms"),
]
ABUSERS = {
    "abuse": "(e) beside a flood, 200 in flight:",
    "firehose": "(e) beside a firehose, 100 every 5 ms:",
}


def abuse_rows(rounds, scenario):
    """(e) with one abuser: the normal clients' latency, the flood's counts."""
    title = ABUSERS[scenario]
    rows = [
        measure_row(rounds, scenario, field, f"{title} normal clients' {name} ms")
        for field, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max"))
    ]
    for kind, label in [
        ("attempted", "abuser's events attempted (per s)"),
        ("accepted", "abuser's events accepted, ok: true (per s)"),
    ]:
        rows.append(
            {
                "label": f"{title} {label}",
                "field": f"abuser_{kind}",
                "project": flood(rounds["project"], scenario, kind),
                "peer": flood(rounds["peer"], scenario, kind),
                "ratio": None,
            }
        )
    return rows


def admin_rows(rounds):
    """With --admin: what the admin watching the chat was told, per round."""
    told = [each["admin"]["events"] for each in rounds["project"] if "admin" in each]
    if not told:
        return []
    return [
        {
            "label": "Admin UI on, an admin watching: events it was told (median)",
            "field": "events",
            "project": statistics.median(told),
            "peer": None,
            "ratio": None,
            "target": "",
        }
    ]


def soak_rows(rounds):
    """(h), measured once: RSS and open files after each phase, and the
    memory kept per connection after the warm-up."""
    result = next((each["soak"] for each in rounds["project"] if "soak" in each), {})
    if "rss_mb" not in result:
        return []
    points = "after warm-up / phase 1 / phase 2"

    def row(label, field, value, target=""):
        return {
            "label": f"(h) {label}",
            "field": field,
            "project": value,
            "peer": None,
            "ratio": None,
            "target": target,
        }

    return [
        row(
            f"soak, {result['clients_per_phase']:,} short visits a phase: "
            f"server RSS {points}, MB",
            "rss_mb",
            " / ".join(f"{mb:.1f}" for mb in result["rss_mb"][1:]),
        ),
        row(
            "RSS kept per connection that came and went after the warm-up, KB",
            "kept_per_connection_kb",
            result["kept_per_connection_kb"],
            TARGETS[("soak", "kept_per_connection_kb")],
        ),
        row(
            f"open files {points}",
            "open_files",
            " / ".join(str(count) for count in result["open_files"][1:]),
        ),
    ]


def summarise(rounds, in_process_results):
    """Medians per server, ratios project/peer, and whether all verified."""
    measured = {scenario for result in rounds["project"] for scenario in result}
    rows = [
        measure_row(rounds, scenario, field, label)
        for scenario, field, label in MEASURES
        if scenario in measured
    ]
    for scenario, rows_of in [
        ("storage", storage_rows),
        ("frames", frame_rows),
        ("channels", channel_rows),
    ]:
        if scenario in in_process_results:
            rows += rows_of(in_process_results[scenario])
    for scenario in ABUSERS:
        if scenario in measured:
            rows += abuse_rows(rounds, scenario)
    rows += soak_rows(rounds) + admin_rows(rounds)
    verified = all(
        result[scenario].get("ok") and result[scenario]["exit"] == 0
        for name in rounds
        for result in rounds[name]
        for scenario in result
    )
    return rows, verified


def measure_row(rounds, scenario, field, label):
    """One measure's medians per server, their ratio and its target."""
    project = median_of(rounds["project"], scenario, field)
    peer = median_of(rounds["peer"], scenario, field)
    return {
        "label": label,
        "field": field,
        "project": project,
        "peer": peer,
        "ratio": project / peer if project is not None and peer else None,
        "target": TARGETS.get((scenario, field), ""),
    }


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def table(rows):
    lines = [
        "| measure | project | peer | project/peer | target |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "–"
        target = row.get("target", "")
        cells = [row["label"], fmt(row["project"]), fmt(row["peer"]), ratio, target]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine():
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    node = subprocess.run(
        ["node", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} × {cpu}, {memory} memory, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, Node {node}"
    )


def plot(latencies, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, values in latencies.items():
        if not values:
            continue
        ordered = sorted(values)
        share = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axes.plot(ordered, share, label=f"{name} (n={len(ordered):,})")
    axes.set_xscale("log")
    axes.set_xlabel("end-to-end latency per delivery, ms (log)")
    axes.set_ylabel("share of deliveries at or below")
    axes.set_title("(b) 500 messages/s, 100 clients in 10 channels")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(path, rows, verified, rounds_count, plot_name):
    text = (HERE / "README.md").read_text() if path == HERE / "README.md" else ""
    marker = "<!-- results -->"
    head = text.split(marker)[0] if marker in text else text
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    checked = (
        "verified (nothing lost, doubled or out of order)"
        if verified
        else "NOT verified: see the JSON output"
    )
    results = (
        f"{marker}\n## Results\n\n"
        f"Measured {when} on {machine()}; medians of {rounds_count} "
        f"alternating rounds; every run {checked}.\n\n"
        f"{table(rows)}\n\n![latency distributions]({plot_name})\n"
    )
    Path(path).write_text(head.rstrip() + "\n\n" + results if head else results)


def main():
    parser = argparse.ArgumentParser(
        description="Benchmark the chat against the yardstick."
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--output", type=Path, default=HERE / "README.md")
    parser.add_argument("--plot", type=Path, default=HERE / "latency.png")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=SCENARIOS,
        help="run these scenarios alone (the report is then not written)",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="with the Admin UI on and an admin watching the chat in (a) to (c)"
        " (the report is then not written)",
    )
    args = parser.parse_args()
    only = set(args.only)
    sizes = QUICK if args.quick else FULL
    rounds_count = 1 if args.quick else args.rounds
    servers = [Project(), Peer()]
    rounds = {server.name: [] for server in servers}
    latencies = {server.name: [] for server in servers}
    with tempfile.TemporaryDirectory() as folder:
        for number in range(rounds_count):
            order = servers if number % 2 == 0 else servers[::-1]
            for server in order:
                workdir = Path(folder) / f"{server.name}-{number}"
                workdir.mkdir()
                print(f"round {number + 1}: {server.name}", file=sys.stderr, flush=True)
                rounds[server.name].append(
                    run_round(server, sizes, workdir, latencies, only, args.admin)
                )
        if "soak" in only:  # once, the chat alone (see the module)
            print("soak: project", file=sys.stderr, flush=True)
            workdir = Path(folder) / "soak"
            workdir.mkdir()
            rounds["project"][0]["soak"] = soak(sizes["soak"], workdir)
    measured = {
        scenario: in_process(scenario, sizes, rounds_count)
        for scenario in ("storage", "frames", "channels")
        if scenario in only
    }
    rows, verified = summarise(rounds, measured)
    print(table(rows))
    if only == set(SCENARIOS) and not args.admin:
        plot(latencies, args.plot)
        write_report(args.output, rows, verified, rounds_count, args.plot.name)
    print(json.dumps({"verified": verified, "rounds": rounds, **measured}))
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
