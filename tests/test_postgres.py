"""PostgreSQL: migrations, and the storage guarantees under concurrent senders."""

import random
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import inspect

from app.chat import channels, messages, storage
from app.chat.errors import ChatError
from app.extensions import db
from config import database_url


@pytest.fixture
def app(make_app, postgres_url):
    """The chat app on an empty PostgreSQL database, migrated to the newest
    revision; every fixture built on `app` uses it in this module."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url(postgres_url))
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_upgrade_of_an_empty_database_creates_the_tables(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())

    assert {"channels", "messages", "alembic_version"} <= tables


def test_models_agree_with_the_migrations(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), db.metadata
        )

    assert differences == []


def test_the_driver_is_psycopg_3(app):
    with app.app_context():
        assert db.engine.dialect.driver == "psycopg"


def test_concurrent_senders_get_distinct_contiguous_seqs(app, broadcasts):
    def send(number):
        with app.app_context():
            return app.extensions["chat"].messages.post("race", f"message {number}")[
                "seq"
            ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = list(pool.map(send, range(60)))

    assert sorted(seqs) == list(range(1, 61))
    with app.app_context():
        found = messages.history("race")
    assert [m["seq"] for m in found.messages] == list(range(51, 61))
    assert sorted(m["seq"] for m in broadcasts) == list(range(1, 61))


def test_broadcasts_follow_seq_order_under_concurrency(app):
    published = []

    class SlowBroadcaster:
        """Takes a varying while to publish, as a Redis round trip does."""

        def message(self, message):
            time.sleep(random.uniform(0, 0.01))
            published.append(message)

    app.extensions["chat"].messages.publish = SlowBroadcaster().message

    def send(number):
        with app.app_context():
            app.extensions["chat"].messages.post("ordered", f"message {number}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(40)))

    assert [m["seq"] for m in published] == list(range(1, 41))


def test_postgres_rejects_nothing_the_rules_accept(app, broadcasts):
    with app.app_context():
        stored = app.extensions["chat"].messages.post(
            "한국어", "안녕하세요 👋\ttab\nline", author="김"
        )

    assert stored["message"] == "안녕하세요 👋\ttab\nline"
    assert stored["author"] == "김"


def test_the_channel_list_pages_through_every_channel(app, broadcasts):
    with app.app_context():
        for number in range(7):
            app.extensions["chat"].messages.post(f"c{number}", "hi")
        for number in (2, 5):  # active again: first in the list now
            app.extensions["chat"].messages.post(f"c{number}", "again")
        pages = [channels.active_channels(limit=3)]
        while pages[-1].next_before:
            pages.append(channels.active_channels(3, pages[-1].next_before))

    names = [channel["name"] for page in pages for channel in page.channels]
    assert names == ["c5", "c2", "c6", "c4", "c3", "c1", "c0"]
    assert [c["message_count"] for c in pages[0].channels] == [2, 2, 1]


def test_migrating_counts_the_messages_channels_already_hold(make_app, postgres_url):
    app = make_app(SQLALCHEMY_DATABASE_URI=database_url(postgres_url))
    with app.app_context():
        upgrade(revision="0002")
        db.session.execute(
            db.text(
                "INSERT INTO channels (name, last_seq) VALUES ('lobby', 2);"
                "INSERT INTO messages (channel, seq, body, created_at)"
                " VALUES ('lobby', 1, 'a', now()), ('lobby', 2, 'b', now())"
            )
        )
        db.session.commit()
        upgrade()
        count = db.session.scalar(
            db.text("SELECT message_count FROM channels WHERE name = 'lobby'")
        )
        db.session.rollback()
        db.engine.dispose()

    assert count == 2


def test_a_stored_message_is_acked_though_its_turn_could_not_be_given_back(
    app, postgres_url, caplog
):
    class Disconnecting:
        """Publishes, then the database drops the writer's connection."""

        def message(self, message):
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    app.extensions["chat"].messages.publish = Disconnecting().message

    with app.app_context():
        stored = app.extensions["chat"].messages.post("lobby", "hello")
        found = messages.history("lobby")

    assert stored["seq"] == 1
    assert [m["message"] for m in found.messages] == ["hello"]
    assert "kept its turns" in caplog.text


def test_a_value_the_database_refuses_is_a_bug_not_unavailable(app, broadcasts):
    with app.app_context(), pytest.raises(psycopg.DataError):  # the driver's own
        storage.write_messages(
            [storage.Draft("x" * 65, "hello", None, None)], 10, broadcasts.append
        )


def test_a_turn_not_taken_in_time_leaves_no_turn_held(make_app, postgres_url):
    app = make_app(
        SQLALCHEMY_DATABASE_URI=database_url(postgres_url),
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": "-c lock_timeout=100"}},
    )
    with app.app_context():
        upgrade()
    first, second = sorted(["north", "south"], key=storage._lock_key)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [storage._lock_key(second)])
        with app.app_context(), pytest.raises(ChatError) as refused:
            storage.write_messages(
                [
                    storage.Draft(first, "a", None, None),
                    storage.Draft(second, "b", None, None),
                ],
                10,
                publish=lambda message: None,
            )
        taken = other.execute(
            "SELECT pg_try_advisory_lock(%s)", [storage._lock_key(first)]
        ).fetchone()[0]
    with app.app_context():
        db.engine.dispose()

    assert refused.value.code == "unavailable"
    assert taken
