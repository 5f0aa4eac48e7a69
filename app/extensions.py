"""Flask extensions, created unbound here and bound to an app in create_app."""

import sqlite3

from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints, so that migrations can alter them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
socketio = SocketIO()


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, _record):
    """SQLite: write-ahead log, commits that do not wait for the disk,
    foreign keys, wait on locks.

    Commits reach the disk at the next checkpoint, which a thread takes
    every CHAT_SQLITE_SYNC_INTERVAL seconds (app.chat.storage.Checkpoints);
    a commit checkpoints itself only once the log has grown past 10,000
    pages (40 MB), should that thread fall behind.
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA journal_size_limit=67108864")  # the log file, once reset
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def sync_every_commit(dbapi_connection, _record):
    """SQLite with CHAT_SQLITE_SYNC_INTERVAL=0: each commit is synced to the
    disk before it returns (after _tune_sqlite, as an engine's own
    listeners run after those of every engine)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=FULL")


def database_options(config):
    """Engine options for the configured database.

    PostgreSQL gets a sized pool whose connections are checked before use, so
    a restarted database costs one retry rather than an error per connection.
    """
    if not config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return {}
    return {
        "pool_size": config["DATABASE_POOL_SIZE"],
        "max_overflow": config["DATABASE_MAX_OVERFLOW"],
        "pool_pre_ping": True,
        "pool_timeout": 10,
        "pool_recycle": 1800,
    }
