"""Scenario (g): a page of the channel list, with 100,000 channels.

Fills the production settings' SQLite database with `--channels` channels
that have messages, then times `GET /api/channels` (the first page) and
the page after it (`?before=`), through the app's WSGI interface. The
list is read from counts kept on each channel's row, one index range, so
the time should not grow with the number of channels.

    python benchmarks/channels.py [--channels 100000] [--requests 50] [--rounds 3]

Prints one line of JSON: per page, the round medians in milliseconds.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402

from app import create_app  # noqa: E402
from app.chat.models import Channel  # noqa: E402
from app.extensions import db  # noqa: E402
from config import ProductionConfig  # noqa: E402


def filled_app(path, count):
    """The app on a migrated database holding `count` active channels."""
    settings = type(
        "BenchConfig",
        (ProductionConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
            "SECRET_KEY": "benchmark-secret-key-of-a-real-length",
            "REDIS_URL": None,
            "CHAT_RATE_LIMITS": False,
        },
    )
    app = create_app(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        upgrade()
        db.session.execute(
            db.insert(Channel),
            [
                {
                    "name": f"c{number:06d}",
                    "last_seq": 1,
                    "message_count": 1,
                    "last_message_at": start + timedelta(seconds=number),
                }
                for number in range(count)
            ],
        )
        db.session.commit()
    return app


def median_ms(client, url, requests):
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        app = filled_app(Path(folder) / "chat.db", args.channels)
        client = app.test_client()
        first = client.get("/api/channels").get_json()
        second = f"/api/channels?before={first['next_before']}"
        rounds = {"first": [], "next": []}
        for _ in range(args.rounds):
            rounds["first"].append(median_ms(client, "/api/channels", args.requests))
            rounds["next"].append(median_ms(client, second, args.requests))
        with app.app_context():
            db.engine.dispose()
    print(
        json.dumps(
            {
                "scenario": "channels",
                "channels": args.channels,
                "per_page": len(first["channels"]),
                "rounds_ms": rounds,
                "ms": {page: statistics.median(v) for page, v in rounds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
