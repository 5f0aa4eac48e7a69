"""What delivery reads when Redis did not bring a message: the database.

The chat's managers (app.realtime.delivery) deliver by room; the archive reads the
stored messages of the room's channel through the message service.
"""

from app.chat import messages
from app.realtime.rooms import channel_of, room_of

# Channels whose last_seq one query asks for at most.
CHANNELS_AT_ONCE = 500


class Archive:
    """Stored messages, read for the managers in the app's context."""

    # Messages one read brings at most; a room further behind takes several.
    READ_AT_ONCE = 1000

    def __init__(self, app):
        self.app = app

    def after(self, room, seq):
        """The retained messages of a room's channel with seq > `seq`,
        oldest first; raises ChatError when the database cannot be read."""
        with self.app.app_context():
            return messages.history(
                channel_of(room), seq, limit=self.READ_AT_ONCE
            ).messages

    def newest(self, rooms):
        """`{room: (last_seq, last_change)}` of the rooms whose channel exists."""
        channels = [channel_of(room) for room in rooms]
        newest = {}
        with self.app.app_context():
            for start in range(0, len(channels), CHANNELS_AT_ONCE):
                batch = channels[start : start + CHANNELS_AT_ONCE]
                newest.update(messages.newest(batch))
        return {room_of(channel): counters for channel, counters in newest.items()}

    def changes_after(self, room, change):
        """The edits and deletes of a room's channel after its `change`."""
        with self.app.app_context():
            return messages.changes_after(channel_of(room), change)
