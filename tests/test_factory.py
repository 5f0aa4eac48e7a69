"""The application factory and its settings."""

import config
from app import create_app


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
