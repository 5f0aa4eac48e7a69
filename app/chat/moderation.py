"""Moderation: authors edit and delete their messages, moderators and
operators delete any; every change reaches each member that has the message,
after it, once (app.realtime.delivery), and history serves only what stands.
"""

from datetime import UTC, datetime, timedelta

from app.chat import rules, storage
from app.chat.errors import ChatError


def forbidden(message):
    return ChatError("forbidden", message, status=403)


class Moderation:
    """Edits and deletes, published through `publish_change` (the rooms'
    change(), or a queue's outside the servers)."""

    def __init__(self, publish_change, config):
        self.publish_change = publish_change
        self.edit_window = timedelta(seconds=config["CHAT_EDIT_WINDOW"])
        self.max_length = config["CHAT_MAX_MESSAGE_LENGTH"]

    def edit(self, person, channel, seq, text):
        """The verified author edits message `seq` within CHAT_EDIT_WINDOW
        of posting it. Returns the change."""
        channel, seq = rules.channel_name(channel), rules.seq(seq)
        text = rules.message_text(text, self.max_length)
        if not person.verified:
            raise forbidden("guests cannot edit messages: sign in")
        window = self.edit_window

        def authorize(message):
            if message.user_id != person.user_id:
                raise forbidden("only its author can edit a message")
            created_at = message.created_at
            if created_at.tzinfo is None:  # SQLite hands back naive UTC
                created_at = created_at.replace(tzinfo=UTC)
            if datetime.now(UTC) - created_at > window:
                minutes = int(window.total_seconds() // 60)
                raise forbidden(
                    f"a message can be edited for {minutes} minutes after posting"
                )

        change = storage.change_message(channel, seq, authorize, text=text)
        self.publish_change(change)
        return change

    def delete(self, person, channel, seq, actor=None):
        """Delete message `seq`: its verified author, a moderator, or an
        operator (`person` None, with `actor` saying who). Every delete is
        recorded in the audit log. Returns the change."""
        channel, seq = rules.channel_name(channel), rules.seq(seq)
        if person is not None and not person.verified:
            raise forbidden("guests cannot delete messages: sign in")
        if person is not None:
            actor = f"user:{person.user_id}"

        def authorize(message):
            if person is None or person.moderator:
                return
            if message.user_id != person.user_id:
                raise forbidden("only its author or a moderator can delete a message")

        audit = {"actor": actor, "action": "delete_message"}
        change = storage.change_message(channel, seq, authorize, audit=audit)
        self.publish_change(change)
        return change
