"""The application factory and its settings."""

import pytest

import config
from app import create_app
from app.wire import versions


def test_factory_uses_the_given_settings(app):
    assert app.testing is True
    assert app.config["CHAT_HISTORY_LIMIT"] == 10


def test_default_settings_need_no_environment():
    assert config.Config.CHAT_HISTORY_LIMIT == 10
    assert config.Config.CHAT_MAX_MESSAGE_LENGTH == 2000
    assert config.Config.HOST == "127.0.0.1"
    assert config.Config.PORT == 5000
    assert config.Config.SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")


def test_chat_env_picks_the_settings_class(monkeypatch):
    monkeypatch.setenv("CHAT_ENV", "testing")

    assert create_app().config["TESTING"] is True


def test_cors_origins_are_parsed():
    assert config._origins(None) is None
    assert config._origins("*") == "*"
    assert config._origins("https://a.example, https://b.example") == [
        "https://a.example",
        "https://b.example",
    ]


def test_production_refuses_the_development_secret_key():
    unsafe = type("Unsafe", (config.ProductionConfig,), {"SECRET_KEY": ""})

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(unsafe)


def test_production_starts_with_a_real_secret_key():
    safe = type("Safe", (config.ProductionConfig,), {"SECRET_KEY": "x" * 32})

    assert create_app(safe).config["REQUIRE_SECRET_KEY"] is True


@pytest.mark.parametrize(
    "given, used",
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/chat.db", "sqlite:////tmp/chat.db"),
    ],
)
def test_database_url_uses_psycopg_for_postgresql(given, used):
    assert config.database_url(given) == used


def test_postgresql_gets_a_sized_pool_with_pre_ping(make_app):
    app = make_app(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://u@h/db", DATABASE_POOL_SIZE=7
    )

    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 7
    assert options["pool_pre_ping"] is True


def test_the_library_versions_are_the_ones_the_wire_was_written_against():
    versions.check()  # what constraints.txt installs


def test_another_library_version_refuses_to_start_naming_it():
    written_against = {**versions.WRITTEN_AGAINST, "python-engineio": "0.0.1"}

    with pytest.raises(RuntimeError) as refusal:
        versions.check(written_against)

    message = str(refusal.value)
    assert "python-engineio 4.15.1 (written against 0.0.1)" in message
    assert "app/wire/versions.py" in message
