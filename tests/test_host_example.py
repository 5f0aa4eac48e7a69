"""examples/host_site.py: the few lines a host site adds, minting tokens
the chat accepts for its signed-in people."""

import importlib.util

import pytest

from servers import ROOT
from tokens import SECRET


@pytest.fixture
def host_site(monkeypatch):
    """The example site, as a Flask test client."""
    monkeypatch.setenv("HOST_SECRET_KEY", "host-site-key")
    monkeypatch.setenv("CHAT_TOKEN_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location(
        "host_site", ROOT / "examples" / "host_site.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.test_client()


@pytest.fixture
def app_settings():
    return {"CHAT_TOKEN_SECRET": SECRET}


def test_a_signed_in_person_gets_a_token_the_chat_accepts(host_site, connect):
    host_site.post("/login", data={"id": "u-1", "name": "Ann", "channel": "$staff"})

    answer = host_site.get("/chat-token")
    ann = connect(auth={"token": answer.get_json()["token"]})

    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    joined = ann.join("$staff")
    assert (joined["name"], joined["user_id"]) == ("Ann", "u-1")


def test_anyone_not_signed_in_gets_no_token(host_site):
    answer = host_site.get("/chat-token")

    assert answer.status_code == 401
    assert "token" not in answer.get_json()
