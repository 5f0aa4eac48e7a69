"""Flask-Migrate revisions: they build the schema, and the models agree."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app.extensions import db


@pytest.fixture
def migrated_app(make_app, tmp_path):
    """An app on an empty SQLite file, upgraded to the newest revision."""
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'chat.db'}")
    with app.app_context():
        upgrade()
        yield app
        db.engine.dispose()


def test_upgrade_of_an_empty_database_creates_the_tables(migrated_app):
    tables = set(inspect(db.engine).get_table_names())

    assert {"channels", "messages", "alembic_version"} <= tables


def test_models_agree_with_the_migrations(migrated_app):
    with db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), db.metadata
        )

    assert differences == []


def test_downgrade_removes_the_tables(migrated_app):
    downgrade(revision="base")

    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}


def test_migrated_database_stores_messages(migrated_app):
    client = migrated_app.test_client()

    response = client.post("/api/channels/lobby/messages", json={"message": "hi"})

    assert response.status_code == 201
