"""The service layer on its own, publishing to a fake."""

import pytest

from app.chat import channels, health, messages, storage
from app.chat.errors import ChatError


@pytest.fixture
def context(app):
    with app.app_context():
        yield


@pytest.mark.usefixtures("context")
class TestPostMessage:
    def test_returns_the_stored_message(self, broadcasts, posting):
        message = posting.post("lobby", "  hello  ", author="kim")

        assert message["seq"] == 1
        assert message["message"] == "hello"
        assert message["author"] == "kim"

    def test_broadcasts_what_it_stored_once(self, broadcasts, posting):
        message = posting.post("lobby", "hello")

        assert broadcasts == [message]

    def test_numbers_each_channel_on_its_own(self, broadcasts, posting):
        seqs = [
            posting.post(channel, "hi")["seq"] for channel in ["a", "b", "a", "a", "b"]
        ]

        assert seqs == [1, 1, 2, 3, 2]

    def test_ids_are_unique_across_channels(self, broadcasts, posting):
        ids = {posting.post(channel, "hi")["id"] for channel in "abcabc"}

        assert len(ids) == 6

    def test_prunes_to_the_history_limit(self, broadcasts, posting):
        for number in range(30):
            posting.post("lobby", f"m{number}")

        found = messages.history("lobby")
        assert [m["seq"] for m in found.messages] == list(range(21, 31))

    def test_refused_message_is_neither_stored_nor_broadcast(self, broadcasts, posting):
        with pytest.raises(ChatError) as refused:
            posting.post("lobby", "")

        assert refused.value.code == "invalid_message"
        assert broadcasts == []
        assert messages.history("lobby").last_seq == 0

    def test_normalises_line_breaks_and_keeps_them(self, broadcasts, posting):
        message = posting.post("lobby", "line one\r\nline two")

        assert message["message"] == "line one\nline two"


@pytest.mark.usefixtures("context")
class TestHistory:
    def test_of_a_new_channel_is_empty_and_recovered(self):
        found = messages.history("fresh", since=0)

        assert (found.messages, found.last_seq, found.recovered) == ([], 0, True)

    def test_since_the_last_seq_is_empty_and_recovered(self, broadcasts, posting):
        posting.post("lobby", "hi")

        found = messages.history("lobby", since=1)

        assert (found.messages, found.recovered) == ([], True)

    def test_since_a_pruned_seq_is_not_recovered(self, broadcasts, posting):
        for number in range(12):
            posting.post("lobby", f"m{number}")

        assert messages.history("lobby", since=2).recovered is True
        assert messages.history("lobby", since=1).recovered is False

    def test_known_history_refuses_unknown_channels(self):
        with pytest.raises(ChatError) as refused:
            messages.known_history("nobody")

        assert (refused.value.code, refused.value.status) == ("unknown_channel", 404)


@pytest.mark.usefixtures("context")
def test_active_channels_count_retained_messages(broadcasts, posting):
    for number in range(11):
        posting.post("lobby", f"m{number}")

    (channel,) = channels.active_channels().channels

    assert (channel["name"], channel["message_count"], channel["last_seq"]) == (
        "lobby",
        10,
        11,
    )


@pytest.mark.usefixtures("context")
def test_database_answers(app):
    assert health.database_answers() is True


@pytest.mark.usefixtures("context")
def test_a_batch_larger_than_the_limit_keeps_only_the_newest(broadcasts):
    pending = [storage.Draft("lobby", f"m{number}", None, None) for number in range(25)]

    stored = storage.write_messages(pending, 10, broadcasts.append)

    assert [m["seq"] for m in stored] == list(range(1, 26))
    assert [m["seq"] for m in messages.history("lobby").messages] == list(range(16, 26))
    assert [m["seq"] for m in broadcasts] == list(range(1, 26))


@pytest.mark.usefixtures("context")
def test_a_batch_numbers_each_channel_in_order(broadcasts):
    pending = [storage.Draft(channel, "hi", None, None) for channel in "abab"]

    stored = storage.write_messages(pending, 10, broadcasts.append)

    assert [(m["channel"], m["seq"]) for m in stored] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
    ]
    assert len({m["id"] for m in stored}) == 4
