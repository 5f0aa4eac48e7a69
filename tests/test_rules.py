"""What the chat accepts as channel names, messages, authors and `since`."""

import pytest

from app.chat import rules
from app.chat.errors import ChatError


@pytest.mark.parametrize(
    "name",
    [
        "lobby",
        "a",
        "x" * 64,
        "dev-ops_2.0",
        "한국어",
        "日本語",
        "Ελληνικά",
        "हिन्दी",
        "$team",
        "$" + "x" * 63,
    ],
)
def test_valid_channel_names(name):
    assert rules.channel_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 65,
        "two words",
        "a/b",
        "<b>",
        "emoji😀",
        "tab\t",
        "a:b",
        None,
        3,
        "$",
        "$$team",
        "team$",
        "$" + "x" * 64,
    ],
)
def test_invalid_channel_names(name):
    with pytest.raises(ChatError) as refused:
        rules.channel_name(name)

    assert refused.value.code == "invalid_channel"


def test_message_length_counts_characters_not_bytes():
    assert rules.message_text("가" * 10, max_length=10) == "가" * 10
    with pytest.raises(ChatError):
        rules.message_text("가" * 11, max_length=10)


def test_message_keeps_newlines_and_tabs():
    assert rules.message_text("a\n\tb", max_length=10) == "a\n\tb"


def test_display_name_is_trimmed_and_optional():
    assert rules.display_name("  kim ") == "kim"
    assert rules.display_name(None) is None


@pytest.mark.parametrize("since", [0, 5, None])
def test_valid_since(since):
    assert rules.since_seq(since) == since
