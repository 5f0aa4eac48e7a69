"""Who is in each channel, and who is typing: the chat's presence service.

A member is one connection (a Socket.IO sid) with a display name and a
person: the key its browser keeps for whoever uses it (all tabs of one browser
share it), or the connection itself when it gave none. Presence of a channel
counts people, not names or tabs: two people both called Sam count two, two
tabs of one person count one. It lists one name per person, sorted.
Without Redis it lives in this process; with REDIS_URL it lives in Redis,
where every process refreshes its own members' entries and removes those
whose process stopped refreshing them (a crashed process's members expire).
"""

import json
import time

# A presence event names at most this many members (it always counts all).
LISTED_MEMBERS = 100


class Presence:
    """Who is in each channel and who is typing, kept in a `store`
    (LocalPresence or RedisPresence) and announced through `rooms`
    (app.realtime.rooms.Rooms: its presence() and typing())."""

    def __init__(self, store, rooms, presence_interval, typing_interval):
        self.store = store
        self.rooms = rooms
        self.presence_interval = presence_interval
        self.typing_interval = typing_interval

    def connect(self, member, name, person=None):
        """A connection opened with this display name and person key (or
        changed its name, keeping its person). Without a key it is a person
        of its own."""
        store = self.store
        store.connections[member] = name
        if person is not None or member not in store.persons:
            store.persons[member] = person or member

    def rename(self, member, name):
        """A connection changed its display name, keeping its person."""
        if member in self.store.connections:
            self.store.connections[member] = name

    def name_of(self, member):
        """The display name of a connection (None once it has ended)."""
        return self.store.connections.get(member)

    def person_of(self, member):
        """The person key of a connection: `user:<sub>`, its browser's key,
        or itself."""
        return self.store.persons.get(member, member)

    def disconnect(self, member):
        """A connection ended: leave every channel it was in, forget its name."""
        store = self.store
        for channel in store.channels_of(member):
            self.leave(channel, member)
        store.connections.pop(member, None)
        store.persons.pop(member, None)
        store.typed.pop(member, None)

    def enter(self, channel, member):
        """A member joined a channel: record it, tell the room; return presence.

        A connection that has already ended is not recorded.
        """
        store = self.store
        if member in store.connections:
            store.enter(
                channel, member, (store.persons[member], store.connections[member])
            )
            announced = self._announce(channel)
            if announced is not None:
                return announced
        return self.current(channel)

    def leave(self, channel, member):
        """A member left a channel: forget it and tell the room (at once
        when it was the channel's last member here, whose throttle is
        forgotten)."""
        store = self.store
        if store.leave(channel, member):
            self._announce(channel, force=channel not in store.members)

    def roster(self, channel):
        """`{channel, count, members: [{name, user_id}]}`: one entry per
        person, with the id a token gave them (null for a guest)."""
        people = {}
        for person, name in self.store.entries(channel):
            if person not in people or name < people[person]["name"]:
                user_id = person[5:] if person.startswith("user:") else None
                people[person] = {"name": name, "user_id": user_id}
        members = sorted(people.values(), key=lambda m: (m["name"], m["user_id"] or ""))
        return {"channel": channel, "count": len(members), "members": members}

    def current(self, channel):
        """`{channel, count, members}` of a channel."""
        names = self.store.names(channel)
        return {
            "channel": channel,
            "count": len(names),
            "members": names[:LISTED_MEMBERS],
        }

    def may_type(self, channel, member):
        """Whether a member's typing notice passes the throttle, counting it
        if so."""
        store = self.store
        return member in store.connections and store.pace_typing(
            channel, member, self.typing_interval
        )

    def sent(self, channel, member):
        """A member's message went out: whatever they type next is news, so
        their next typing notice passes the throttle at once."""
        self.store.unpace_typing(channel, member)

    def typing(self, channel, member):
        """Tell a channel's other members that `member` is typing."""
        notice = {"channel": channel, "author": self.name_of(member)}
        self.rooms.typing(notice, skip=member)

    def refresh(self):
        """Keep this process's members alive; announce channels whose
        members expired or whose announcement was held back. Run every
        second or so."""
        store = self.store
        for channel in store.refresh() | store.take_held():
            self._announce(channel, force=True)

    def _announce(self, channel, force=False):
        """Tell a channel's room who is in it, at most once per interval.

        A channel with many members joining at once would otherwise send
        every member a list per join; a held-back announcement goes out on
        refresh(). Returns what was announced, or None when held back.
        """
        if not (force or self.store.pace_presence(channel, self.presence_interval)):
            return None
        snapshot = self.current(channel)
        self.rooms.presence(snapshot)
        return snapshot


def one_name_per_person(entries):
    """Sorted names, one per person, from (person, name) pairs; a person
    whose tabs go by several names is listed by the first in sort order."""
    names = {}
    for person, name in entries:
        if person not in names or name < names[person]:
            names[person] = name
    return sorted(names.values())


class LocalPresence:
    """Presence kept in this process: for one process without Redis."""

    def __init__(self):
        self.connections = {}  # member -> display name
        self.persons = {}  # member -> person key (itself without one)
        self.members = {}  # channel -> {member: (person, name)}
        self.joined = {}  # member -> set of channels
        # Monotonic times of the last announcement let through, per channel,
        # and of the last typing notice, per member and channel.
        self.announced = {}  # channel -> time
        self.typed = {}  # member -> {channel: time}
        self.held = set()  # channels whose announcement waits for refresh()

    def enter(self, channel, member, entry):
        self.members.setdefault(channel, {})[member] = entry
        self.joined.setdefault(member, set()).add(channel)

    def leave(self, channel, member):
        names = self.members.get(channel, {})
        if names.pop(member, None) is None:
            return False
        if not names:
            del self.members[channel]
            self.announced.pop(channel, None)
        self.joined.get(member, set()).discard(channel)
        self.unpace_typing(channel, member)
        if not self.joined.get(member):
            self.joined.pop(member, None)
        return True

    def channels_of(self, member):
        return sorted(self.joined.get(member, ()))

    def names(self, channel):
        return one_name_per_person(self.entries(channel))

    def entries(self, channel):
        """(person, name) of each member of a channel."""
        return list(self.members.get(channel, {}).values())

    def pace_presence(self, channel, interval):
        """True at most once per `interval` seconds for a channel; when
        refused, the channel waits for take_held()."""
        if _pace(self.announced, channel, interval):
            return True
        self.held.add(channel)
        return False

    def pace_typing(self, channel, member, interval):
        """True at most once per `interval` seconds for a member in a channel."""
        return _pace(self.typed.setdefault(member, {}), channel, interval)

    def unpace_typing(self, channel, member):
        """Let the member's next typing notice in the channel through at once."""
        typed = self.typed.get(member)
        if typed is not None:
            typed.pop(channel, None)
            if not typed:
                del self.typed[member]

    def take_held(self):
        held, self.held = self.held, set()
        return held

    def refresh(self):
        return set()


def _pace(times, key, interval):
    """True, noting the time, if `interval` seconds passed since the last
    time noted for `key`."""
    now = time.monotonic()
    if now - times.get(key, float("-inf")) >= interval:
        times[key] = now
        return True
    return False


class RedisPresence(LocalPresence):
    """Presence shared by every process through Redis.

    Per channel, a sorted set scores each member (sid) with the time its
    entry expires, and a hash maps it to `[person, name]` in JSON. Each
    process re-writes its own members' entries on refresh(); entries nobody re-writes (their
    process died) expire after `ttl` seconds and are removed by whichever
    process notices. While Redis is down a process knows only its own
    members; the refreshes after it comes back (empty, perhaps) rebuild the
    rest within `ttl`.
    """

    def __init__(self, link, prefix, ttl):
        super().__init__()
        self.link = link
        self.prefix = prefix
        self.ttl = ttl
        self._announce_all = False
        link.on_back.append(self._after_outage)

    def _keys(self, channel):
        return f"{self.prefix}:presence:{channel}", f"{self.prefix}:names:{channel}"

    def enter(self, channel, member, entry):
        super().enter(channel, member, entry)
        self.link.run(
            "presence", lambda client: self._write(client, channel, {member: entry})
        )

    def leave(self, channel, member):
        was_local = super().leave(channel, member)
        expiring, names = self._keys(channel)

        def remove(client):
            with client.pipeline() as pipe:
                pipe.zrem(expiring, member)
                pipe.hdel(names, member)
                removed, _ = pipe.execute()
            return removed

        return was_local or bool(self.link.run("presence", remove, fallback=0))

    def entries(self, channel):
        """(person, name) of each member of a channel, on every process
        (this process's alone while Redis does not answer)."""
        found = self.link.run("presence", lambda client: self._entries(client, channel))
        return super().entries(channel) if found is None else found

    def _entries(self, client, channel):
        expiring, names = self._keys(channel)
        alive = client.zrangebyscore(expiring, time.time(), "+inf")
        if not alive:
            return []
        entries = client.hmget(names, alive)
        return [_entry(member, value) for member, value in zip(alive, entries) if value]

    def _write(self, client, channel, members):
        """Score and name members of a channel."""
        expiring, names = self._keys(channel)
        expires = time.time() + self.ttl
        with client.pipeline() as pipe:
            pipe.zadd(expiring, {member: expires for member in members})
            pipe.hset(
                names,
                mapping={
                    member: json.dumps(entry) for member, entry in members.items()
                },
            )
            pipe.execute()

    def _rewrite(self, client, channel):
        """Write this process's members of a channel again (Redis may have
        lost them) and remove expired entries; True if any had expired."""
        members = self.members.get(channel)
        if members:
            self._write(client, channel, members)
        expiring, names = self._keys(channel)
        expired = client.zrangebyscore(expiring, "-inf", time.time())
        if expired:
            with client.pipeline() as pipe:
                pipe.zrem(expiring, *expired)
                pipe.hdel(names, *expired)
                pipe.execute()
        return bool(expired)

    def refresh(self):
        """Re-write this process's members; remove expired ones anywhere we
        have members. Returns the channels to announce: those that lost
        expired members, and after an outage every channel served here."""
        changed = self.link.run(
            "presence",
            lambda client: {
                channel
                for channel in list(self.members)
                if self._rewrite(client, channel)
            },
            fallback=set(),
        )
        if self._announce_all and self.link.up:
            self._announce_all = False
            changed |= set(self.members)
        return changed

    def _after_outage(self):
        self._announce_all = True


def _entry(member, value):
    """A (person, name) pair as stored in Redis; a bare name (as stored before
    persons were counted) is a person of its own."""
    try:
        person, name = json.loads(value)
        return str(person), str(name)
    except (ValueError, TypeError):
        return member, value.decode(errors="replace")
