"""What the chat accepts: channel names, message text, display names, `since`.

Each function takes a value as it arrived (any JSON type, or None) and returns
it in canonical form, or raises ChatError saying what is wrong with it.
"""

import functools
import random
import re
import unicodedata

from app.chat.errors import ChatError

CHANNEL_MAX_LENGTH = 64
NAME_MAX_LENGTH = 32
_CHANNEL_PUNCTUATION = frozenset("-_.")
# Control characters other than newline and tab, and lone surrogates, which
# no database can store as text (PostgreSQL refuses NUL outright).
_FORBIDDEN_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def fields(payload):
    """The payload of an event or request body, which must be a JSON object."""
    if not isinstance(payload, dict):
        raise ChatError("invalid_payload", "payload must be a JSON object")
    return payload


PRIVATE_MARK = "$"


def channel_name(value):
    """A channel name: 1-64 Unicode letters, digits, '-', '_' or '.', in NFC;
    a private channel's starts with `$` (app.chat.identity)."""
    if not isinstance(value, str):
        raise ChatError("invalid_channel", "channel must be a string")
    return _valid_channel_name(value)


@functools.lru_cache(maxsize=4096)  # every event names a channel, mostly the same
def _valid_channel_name(value):
    name = unicodedata.normalize("NFC", value)
    if not 1 <= len(name) <= CHANNEL_MAX_LENGTH:
        raise ChatError(
            "invalid_channel",
            f"channel must be 1 to {CHANNEL_MAX_LENGTH} characters long",
        )
    if not all(_is_channel_character(char) for char in name.removeprefix("$")):
        raise ChatError(
            "invalid_channel",
            "channel may hold only letters, digits, '-', '_' and '.'"
            " (and a leading '$' for a private channel)",
        )
    if name == PRIVATE_MARK:
        raise ChatError("invalid_channel", "a private channel needs a name after '$'")
    return name


def is_private(channel):
    """Whether a (valid) channel name is a private channel's."""
    return channel.startswith(PRIVATE_MARK)


def _is_channel_character(char):
    # Marks (M*) count as part of letters: many scripts, such as Devanagari,
    # cannot write a word without them.
    category = unicodedata.category(char)
    return char in _CHANNEL_PUNCTUATION or category[0] in "LM" or category == "Nd"


def message_text(value, max_length):
    """Message text: a string, non-empty once trimmed, at most max_length long."""
    if not isinstance(value, str):
        raise ChatError("invalid_message", "message must be a string")
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n")).strip()
    if not text:
        raise ChatError("invalid_message", "message must not be empty")
    if len(text) > max_length:
        raise ChatError(
            "message_too_long",
            f"message must be at most {max_length} characters long",
        )
    if _FORBIDDEN_IN_TEXT.search(text):
        raise ChatError("invalid_message", "message must not hold control characters")
    return text


def display_name(value):
    """An optional display name: 1-32 characters once trimmed, no control ones."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChatError("invalid_name", "name must be a string")
    name = unicodedata.normalize("NFC", value).strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ChatError(
            "invalid_name", f"name must be 1 to {NAME_MAX_LENGTH} characters long"
        )
    if _FORBIDDEN_IN_NAME.search(name):
        raise ChatError("invalid_name", "name must not hold control characters")
    return name


PERSON_MAX_LENGTH = 64
_PERSON = re.compile(r"[A-Za-z0-9_-]+")


def person_key(value):
    """An optional person key: the random key a browser keeps for the person
    using it, so that their tabs count once in presence; 1-64 ASCII letters,
    digits, '-' or '_'."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > PERSON_MAX_LENGTH
        or not _PERSON.fullmatch(value)
    ):
        raise ChatError(
            "invalid_person",
            f"person must be 1 to {PERSON_MAX_LENGTH} ASCII letters, digits, "
            "'-' or '_'",
        )
    return value


_GUEST_ADJECTIVES = (
    "Amber Brave Calm Clever Eager Gentle Happy Jolly Kind Lucky Mellow Nimble "
    "Quiet Rapid Sunny Witty"
).split()
_GUEST_ANIMALS = (
    "Badger Crane Dolphin Falcon Fox Heron Koala Lynx Marten Otter Owl Panda "
    "Puffin Robin Seal Tiger"
).split()


def guest_name():
    """A readable name for someone who gave none, such as "Quiet Otter 42"."""
    adjective = random.choice(_GUEST_ADJECTIVES)
    animal = random.choice(_GUEST_ANIMALS)
    return f"{adjective} {animal} {random.randint(10, 99)}"


CHANNELS_PER_PAGE = 50
MAX_CHANNELS_PER_PAGE = 200


def whole_number(value, name, low, high):
    """A whole number from `low` to `high`, or `invalid_<name>`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChatError(f"invalid_{name}", f"{name} must be a whole number")
    if not low <= value <= high:
        raise ChatError(f"invalid_{name}", f"{name} must be from {low} to {high}")
    return value


def page_size(value):
    """How many channels a page of the list holds: 1-200, 50 by default."""
    if value is None:
        return CHANNELS_PER_PAGE
    return whole_number(value, "limit", 1, MAX_CHANNELS_PER_PAGE)


# The largest seq a channel can reach: the database stores it in 32 bits.
MAX_SEQ = 2**31 - 1


def since_seq(value):
    """The optional `since`: the last seq a client has, a whole number from
    0 to MAX_SEQ."""
    if value is None:
        return None
    return whole_number(value, "since", 0, MAX_SEQ)


def since_change(value):
    """The optional `changes_since`: the last change a client has, a whole
    number from 0 to MAX_SEQ."""
    if value is None:
        return None
    return whole_number(value, "changes_since", 0, MAX_SEQ)


def seq(value):
    """The seq of a message: a whole number from 1 to MAX_SEQ."""
    return whole_number(value, "seq", 1, MAX_SEQ)


CLIENT_ID_MAX_LENGTH = 64


def client_id(value):
    """An optional client_id: the sender's own name for a message, 1-64
    characters without control ones, which a retry sends again."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_ID_MAX_LENGTH:
        raise ChatError(
            "invalid_client_id",
            f"client_id must be a string of 1 to {CLIENT_ID_MAX_LENGTH} characters",
        )
    if _FORBIDDEN_IN_NAME.search(value):
        raise ChatError(
            "invalid_client_id", "client_id must not hold control characters"
        )
    return value
