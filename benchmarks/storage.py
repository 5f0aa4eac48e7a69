"""Scenario (d): the cost of storing one message, by how much is stored.

Times `Messages.post` (validate, number, insert, prune, commit) on the
production settings' SQLite database holding 1 thousand, then 1 million,
messages in other channels. Rounds alternate between the two sizes; each
reports the median of its operations.

    python benchmarks/storage.py [--ops 500] [--rounds 3] [--sizes 1000 1000000]

Prints one line of JSON: per size, the round medians in microseconds.
"""

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402

from app import create_app  # noqa: E402
from config import ProductionConfig  # noqa: E402

FILLER_PER_CHANNEL = 10


def filled_database(path, messages):
    """A migrated SQLite database holding `messages` in other channels."""
    settings = type(
        "StorageBench",
        (ProductionConfig,),
        {
            "SECRET_KEY": "storage-benchmark-key-of-a-real-length",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
        },
    )
    app = create_app(settings)
    with app.app_context():
        upgrade()
    channels = messages // FILLER_PER_CHANNEL
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO channels (name, last_seq) VALUES (?, ?)",
            ((f"filler-{n}", FILLER_PER_CHANNEL) for n in range(channels)),
        )
        connection.executemany(
            "INSERT INTO messages (channel, seq, body, created_at) VALUES (?, ?, ?, ?)",
            (
                (
                    f"filler-{n // FILLER_PER_CHANNEL}",
                    n % FILLER_PER_CHANNEL + 1,
                    f"filler message {n}",
                    "2026-01-01 00:00:00",
                )
                for n in range(messages)
            ),
        )
    # Published to nobody: only the storage is measured.
    app.extensions["chat"].messages.publish = lambda message: None
    return app


def median_post_us(app, ops, round_number):
    """Median microseconds of one post over `ops` posts."""
    timings = []
    posting = app.extensions["chat"].messages
    with app.app_context():
        for n in range(ops):
            started = time.perf_counter()
            posting.post(f"bench-{round_number % 4}", f"message {n}")
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        apps = {
            size: filled_database(Path(folder) / f"{size}.db", size)
            for size in args.sizes
        }
        rounds = {size: [] for size in args.sizes}
        for round_number in range(args.rounds):
            for size in args.sizes:
                rounds[size].append(median_post_us(apps[size], args.ops, round_number))
    print(json.dumps({"scenario": "storage", "ops": args.ops, "rounds_us": rounds}))


if __name__ == "__main__":
    main()
