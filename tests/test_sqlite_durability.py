"""The embedded default's storage: what an acked message survives on SQLite.

Commits do not wait for the disk; a thread syncs and checkpoints the log
every CHAT_SQLITE_SYNC_INTERVAL seconds (app.chat.storage.Checkpoints). An
acked message is safe from a crash of the process at once, and in the
database file itself within the interval. CHAT_SQLITE_SYNC_INTERVAL=0
syncs each commit before its ack.
"""

import json
import shutil
import sqlite3
import time
import urllib.request

import pytest
from faults import kill_worker, wait_for_new_worker
from sqlalchemy import text

from app.extensions import db

API_KEY = "an operator key for the durability tests"


def post(server, channel, message):
    """POST a message through the HTTP API; its 201 is the ack."""
    status, stored = post_json(
        server, f"/api/channels/{channel}/messages", {"message": message}
    )
    assert status == 201
    return stored


def history(server, channel):
    with urllib.request.urlopen(
        f"{server.url}/api/channels/{channel}/messages", timeout=10
    ) as response:
        return [message["message"] for message in json.load(response)["messages"]]


def in_the_file_alone(database, folder, query="SELECT body FROM messages ORDER BY seq"):
    """What a copy of the database file holds without its log (what a
    checkpoint has copied into it): the first column of `query`'s rows,
    or None for a copy taken while a checkpoint was writing the file."""
    copy = folder / "copy.db"
    shutil.copyfile(database, copy)
    try:
        with sqlite3.connect(copy) as connection:
            return [row[0] for row in connection.execute(query)]
    except sqlite3.DatabaseError:
        return None


def post_json(server, path, body, headers=None):
    request = urllib.request.Request(
        f"{server.url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def synchronous(app):
    """PRAGMA synchronous of a connection of the app's engine (1 NORMAL, 2 FULL)."""
    with app.app_context(), db.engine.connect() as connection:
        return connection.execute(text("PRAGMA synchronous")).scalar()


def test_acked_messages_survive_the_worker_being_killed(start_server):
    server = start_server(production=True)
    sent = [f"kept {number}" for number in range(10)]
    for message in sent:
        post(server, "durable", message)

    old = kill_worker(server)  # at once, whatever the checkpoints have done
    wait_for_new_worker(server, old)

    assert history(server, "durable") == sent


def test_acked_messages_reach_the_database_file_within_the_interval(
    start_server, tmp_path
):
    server = start_server(CHAT_SQLITE_SYNC_INTERVAL="0.2")
    sent = [f"synced {number}" for number in range(5)]
    for message in sent:
        post(server, "synced", message)

    deadline = time.monotonic() + 10  # a bound for a slow machine, not a target
    while (found := in_the_file_alone(tmp_path / "chat.db", tmp_path)) != sent:
        assert time.monotonic() < deadline, f"the file holds {found}"
        time.sleep(0.1)


def test_the_log_starts_again_once_checkpointed(start_server, tmp_path):
    server = start_server(CHAT_SQLITE_SYNC_INTERVAL="0.2")
    for number in range(50):
        post(server, "rolling", f"message {number}")
    grown = (tmp_path / "chat.db-wal").stat().st_size
    time.sleep(1)  # a few checkpoints; then the next commit writes from the start

    post(server, "rolling", "after the checkpoints")

    with sqlite3.connect(tmp_path / "chat.db") as connection:
        for _ in range(50):  # busy while the server's own checkpoint runs
            busy, frames, _copied = connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            if not busy:
                break
            time.sleep(0.05)
    assert busy == 0
    assert 0 < frames < grown // 4096  # the log holds the last commit alone


def test_other_writes_reach_the_database_file_from_the_start(start_server, tmp_path):
    server = start_server(CHAT_SQLITE_SYNC_INTERVAL="0.2", CHAT_API_KEY=API_KEY)

    status, _ = post_json(  # no message posted: a ban alone
        server, "/api/users/spammer/ban", {"reason": "spam"}, {"X-API-Key": API_KEY}
    )

    assert status == 200
    deadline = time.monotonic() + 10
    query = "SELECT user_id FROM bans"
    while in_the_file_alone(tmp_path / "chat.db", tmp_path, query) != ["spammer"]:
        assert time.monotonic() < deadline, "the ban is not in the file"
        time.sleep(0.1)


@pytest.mark.parametrize("interval, mode", [(1.0, 1), (0.0, 2)])
def test_the_sync_interval_picks_how_commits_reach_the_disk(
    make_app, tmp_path, interval, mode
):
    app = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'chat.db'}",
        CHAT_SQLITE_SYNC_INTERVAL=interval,
    )

    assert synchronous(app) == mode


@pytest.mark.parametrize("interval", [-1.0, float("nan"), float("inf")])
def test_a_sync_interval_that_is_no_duration_refuses_to_start(make_app, interval):
    with pytest.raises(RuntimeError, match="CHAT_SQLITE_SYNC_INTERVAL"):
        make_app(CHAT_SQLITE_SYNC_INTERVAL=interval)
