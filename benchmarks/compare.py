"""Two checkouts of the chat beside the yardstick, in one run: (a) burst and
(b) latency on each, alternated round by round, with medians and ratios to
the yardstick measured in the same run. What a change to the message path
costs or gains, measured as `make bench` measures it:

    git worktree add /tmp/before HEAD~1   # with .venv and node_modules
    .venv/bin/python benchmarks/compare.py /tmp/before --rounds 5

The other checkout needs its own node_modules (or links to these); both run
on this checkout's Python environment.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import run


def measure(server, workdir):
    """(a) and (b) on a server started afresh: messages/s, CPU µs per
    delivery, p99 ms, and whether every delivery was verified."""
    if isinstance(server, run.Project):
        server.start(workdir, run.BENCH_ENV)
    else:
        server.start(workdir)
    try:
        burst = run.burst(server, run.FULL["burst"])
        latency = run.load("latency", server.url, run.FULL["latency"])
    finally:
        server.stop()
    ok = burst.get("ok") and latency.get("ok")
    return burst["delivered_per_s"], burst["cpu_us_per_delivery"], latency["p99_ms"], ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    servers = [
        run.Project(args.before.resolve(), "before"),
        run.Project(run.ROOT, "after"),
        run.Peer(),
    ]
    results = {server.name: [] for server in servers}
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.rounds):
            order = servers if number % 2 == 0 else servers[::-1]
            for server in order:
                workdir = Path(folder) / f"{server.name}-{number}"
                workdir.mkdir()
                result = measure(server, workdir)
                results[server.name].append(result)
                print(number + 1, server.name, result, flush=True)
    medians = {
        name: [statistics.median(row[i] for row in rows) for i in range(3)]
        for name, rows in results.items()
    }
    peer = medians["peer"]
    print("| checkout | (a) messages/s | (a) CPU µs per delivery | (b) p99 ms |")
    print("|---|---|---|---|")
    for name in ("before", "after"):
        rate, cpu, p99 = medians[name]
        print(
            f"| {name} | {rate:,.0f} ({rate / peer[0]:.2f}×) |"
            f" {cpu:.2f} ({cpu / peer[1]:.2f}×) | {p99:.2f} ({p99 / peer[2]:.2f}×) |"
        )
    print(f"| yardstick | {peer[0]:,.0f} | {peer[1]:.2f} | {peer[2]:.2f} |")
    verified = all(row[3] for rows in results.values() for row in rows)
    print("every run verified" if verified else "NOT verified: see the rows above")
    return 0 if verified else 1


if __name__ == "__main__":
    raise SystemExit(main())
