"""The embedded default's storage: what an acked message survives on SQLite.

Commits do not wait for the disk; a thread syncs and checkpoints the log
every CHAT_SQLITE_SYNC_INTERVAL seconds (app.chat.storage.Checkpoints). An
acked message is safe from a crash of the process at once, and in the
database file itself within the interval. CHAT_SQLITE_SYNC_INTERVAL=0
syncs each commit before its ack.
"""

import shutil
import sqlite3
import time

import pytest
import requests
from faults import kill_worker, wait_for_new_worker
from servers import eventually
from sqlalchemy import text

from app.extensions import db

API_KEY = "an operator key for the durability tests"


def post(server, channel, message):
    """POST a message through the HTTP API; its 201 is the ack."""
    response = requests.post(
        f"{server.url}/api/channels/{channel}/messages",
        json={"message": message},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def history(server, channel):
    response = requests.get(f"{server.url}/api/channels/{channel}/messages", timeout=10)
    return [message["message"] for message in response.json()["messages"]]


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

    eventually(
        lambda: in_the_file_alone(tmp_path / "chat.db", tmp_path) == sent,
        "the messages in the file",
    )


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

    response = requests.post(  # no message posted: a ban alone
        f"{server.url}/api/users/spammer/ban",
        json={"reason": "spam"},
        headers={"X-API-Key": API_KEY},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    query = "SELECT user_id FROM bans"
    eventually(
        lambda: in_the_file_alone(tmp_path / "chat.db", tmp_path, query) == ["spammer"],
        "the ban in the file",
    )


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
