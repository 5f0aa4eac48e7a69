"""Who in this process was sent which messages of each channel: delivery's
ordering, as a structure that does no I/O.

Each room with members here has a cursor (the highest seq delivered to its
settled members) and its members, each in one of two states:

* held: its history is being read; live messages wait in `held`, to follow
  the history in seq order;
* settled: `position` is the highest seq it was sent; it gets each later
  message once, in seq order, and `resync` before one that skips seqs
  (those were pruned before they could be delivered).

Edits and deletes ("changes") are numbered per channel too. A room's
`change` is the last one applied here; a change goes to the members that
were sent its message. One whose message is not delivered here yet waits in
the room's `pending` until it is, and a held member keeps the changes that
arrive while its history is read, to follow it.

A room is forgotten with its last member, cursor and all. app.realtime.delivery
does the I/O: it reads the database, encodes messages and writes them.
"""

# The position of a member that left: past every seq.
GONE = float("inf")


class Member:
    """One member of one room: held, or settled at `position`."""

    __slots__ = ("eio_sid", "position", "held", "held_changes")

    def __init__(self, eio_sid):
        self.eio_sid = eio_sid  # its Engine.IO connection, where messages go
        self.position = 0  # the highest seq it was sent, once settled
        self.held = []  # live messages waiting for its history; None once settled
        self.held_changes = []  # live changes waiting for its history


class Room:
    """The members of one room here, and its cursor (None until a first
    member settles)."""

    __slots__ = ("members", "cursor", "change", "pending")

    def __init__(self):
        self.members = {}  # sid -> Member
        self.cursor = None
        self.change = None  # the last change applied here, once known
        self.pending = []  # changes whose message is not delivered here yet


class Ledger:
    """The rooms with members in this process."""

    def __init__(self):
        self.rooms = {}
        self.pending = set()  # rooms with changes waiting for their message

    def hold(self, sid, eio_sid, room):
        """A member joins `room`: hold live messages while its history is read."""
        state = self.rooms.get(room)
        if state is None:
            state = self.rooms[room] = Room()
        state.members[sid] = Member(eio_sid)

    def member(self, sid, room):
        """The Member `sid` of `room`, or None."""
        state = self.rooms.get(room)
        return state.members.get(sid) if state is not None else None

    def settle(self, sid, room, position, change=None):
        """A member's history is sent up to `position`, as it stood at
        `change`: it gets live messages from now on. Returns the changes
        held meanwhile that concern what it was sent. The room's first
        settled member sets its cursors."""
        state = self.rooms[room]
        member = state.members[sid]
        held = member.held_changes
        member.held, member.held_changes, member.position = None, [], position
        if state.cursor is None:
            state.cursor = position
        if state.change is None and change is not None:
            state.change = change
        return [
            held_change
            for held_change in held
            if held_change["seq"] <= position
            and (change is None or held_change["change"] > change)
        ]

    def leave(self, sid, room):
        """A member leaves `room` (or disconnects): the room goes with its
        last member."""
        state = self.rooms.get(room)
        member = state.members.pop(sid, None) if state is not None else None
        if member is None:
            return
        # A delivery under way (a send can run a disconnect) skips it.
        member.held, member.held_changes, member.position = None, [], GONE
        if not state.members:
            del self.rooms[room]
            self.pending.discard(room)

    def cursor(self, room):
        """The highest seq delivered to `room` here, or None."""
        state = self.rooms.get(room)
        return state.cursor if state is not None else None

    def cursors(self):
        """`{room: cursor}` of every room with a cursor."""
        return {
            room: state.cursor
            for room, state in self.rooms.items()
            if state.cursor is not None
        }

    def deliver(self, room, messages, encode, send, resync):
        """Hand each settled member of `room` the messages (ascending seq)
        it was not sent: `send(eio_sid, encode(message))`, each message
        encoded once, at its first member; `resync(eio_sid, last_seq)`
        first for a member whose next seq skips. Held members keep them.
        Messages at or below the room's cursor were delivered already.
        Returns how many sends it made."""
        state = self.rooms.get(room)
        if state is None:
            return 0
        sent = 0
        members = list(state.members.values())
        last_seq = messages[-1]["seq"] if messages else None
        for message in messages:
            seq = message["seq"]
            cursor = state.cursor
            if cursor is not None and seq <= cursor:
                continue
            encoded = None
            for member in members:
                held = member.held
                if held is not None:
                    held.append(message)
                    continue
                position = member.position
                if seq <= position:
                    continue
                if seq > position + 1:
                    resync(member.eio_sid, last_seq)
                member.position = seq
                if encoded is None:
                    encoded = encode(message)
                send(member.eio_sid, encoded)
                sent += 1
            if cursor is not None:
                state.cursor = seq
        return sent

    def change(self, room, change, send, repairing=False):
        """Apply a change (ascending `change` numbers): `send(eio_sid)` for
        each settled member that was sent its message; held members keep
        it; it waits in `pending` while its message is ahead of the cursor.
        Returns False when changes before it are missing here (read them
        from the database first), True otherwise (a change applied already
        is ignored). A repair's changes skip the numbers of changes that
        later ones superseded."""
        state = self.rooms.get(room)
        if state is None:
            return True
        number = change["change"]
        if state.change is not None:
            if number <= state.change:
                return True
            if number > state.change + 1 and not repairing:
                return False
        state.change = number
        if state.cursor is not None and change["seq"] > state.cursor:
            state.pending.append(change)
            self.pending.add(room)
            for member in state.members.values():
                if member.held is not None:
                    member.held_changes.append(change)
            return True
        self._apply(state, change, send)
        return True

    def due(self, room):
        """The pending changes whose message has been delivered here since,
        taken out of `pending`."""
        if not self.pending:  # the common case, checked before anything
            return ()
        state = self.rooms.get(room)
        if state is None or not state.pending or state.cursor is None:
            return ()
        due = [change for change in state.pending if change["seq"] <= state.cursor]
        state.pending = [c for c in state.pending if c["seq"] > state.cursor]
        if not state.pending:
            self.pending.discard(room)
        return due

    def apply_due(self, room, changes, send):
        """Apply changes that waited for their message (see due())."""
        state = self.rooms.get(room)
        if state is not None:
            for change in changes:
                self._apply(state, change, send)

    @staticmethod
    def _apply(state, change, send):
        seq = change["seq"]
        for member in list(state.members.values()):
            if member.held is not None:
                if change not in member.held_changes:
                    member.held_changes.append(change)
            elif member.position >= seq:
                send(member.eio_sid)

    def changes(self):
        """`{room: change}` of every room whose last change is known."""
        return {
            room: state.change
            for room, state in self.rooms.items()
            if state.change is not None
        }

    def rewind(self, room, last_seq, resync):
        """The channel's database was reset behind what was delivered:
        number again from `last_seq`, and `resync(eio_sid, last_seq)` each
        member that was sent more."""
        state = self.rooms.get(room)
        if state is None or state.cursor is None:
            return
        state.cursor = last_seq
        for member in state.members.values():
            if member.held is None and member.position > last_seq:
                member.position = last_seq
                resync(member.eio_sid, last_seq)
