"""Group commit: callers that write at the same time share one transaction.

Batches are kept per key (the chat keys them by channel), so that one slow
write, such as one waiting for a lock in the database, holds up only the
callers of its own key.

The first caller of a batch leads it. When no batch is being written it
pauses once, so that the others who are ready to run can add their items,
then writes the batch in one go; callers that arrive meanwhile join the next
batch, whose leader waits for its turn. The callers of a batch wait on one
event, set once when it is written, and each takes its own result. One
caller alone pays only the pause, which yields to other greenlets for no
time at all.

threading's primitives and time.sleep serve both the threaded test server
and gevent, which patches them into greenlet-aware ones.
"""

import threading
import time


class _Batch:
    """Items written together, and what their callers wait for: the batch's
    leader for its turn, everyone for the batch to be written (one wake-up
    for all of them)."""

    __slots__ = ("items", "results", "error", "turn", "written", "orphaned")

    def __init__(self):
        self.items = []
        self.results = None
        self.error = None
        self.turn = threading.Event()  # its leader may write it
        self.written = threading.Event()
        self.orphaned = False  # its leader stopped while it waited

    def fail(self, error):
        self.error = error
        self.written.set()


class Batcher:
    """Runs `write(items) -> results` for batches of concurrently submitted items."""

    def __init__(self, write, max_size=1000):
        self.write = write
        self.max_size = max_size
        self._lock = threading.Lock()
        self._queued = []  # batches not yet written, the open one last
        self._writing = False  # a leader has the turn

    def submit(self, item):
        """Write `item` in the next batch; return its result or raise its error."""
        with self._lock:
            queued = self._queued
            if queued and len(queued[-1].items) < self.max_size:
                batch, leads = queued[-1], False
            else:  # the first caller of a batch leads it
                batch, leads = _Batch(), True
                queued.append(batch)
            index = len(batch.items)
            batch.items.append(item)
            if leads and not self._writing:
                self._writing = True
                batch.turn.set()
        if leads:
            try:
                batch.turn.wait()  # for the batch before it to be written
            except BaseException as error:
                self._abandon(batch, error)
                raise
            self._lead(batch)
        else:
            batch.written.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def _lead(self, batch):
        """Write `batch` (and any batch whose leader stopped waiting), then
        hand the turn to the next batch's leader."""
        while batch is not None:
            try:
                time.sleep(0)  # let every caller that is ready join this batch
                with self._lock:
                    self._queued.remove(batch)  # closed: others start another
                self._write_batch(batch)
            except BaseException as error:  # stopped: answer, pass the turn
                with self._lock:
                    if batch in self._queued:
                        self._queued.remove(batch)
                if not batch.written.is_set():
                    batch.fail(error)
                self._pass_turn(error)
                raise
            batch = self._pass_turn()

    def _abandon(self, batch, error):
        """Its leader stopped (GreenletExit, gevent.Timeout) while it waited
        for its turn: the leader before it writes the batch; or, if the
        turn had come already, its callers get the error and the turn goes
        on."""
        with self._lock:
            if not batch.turn.is_set():
                batch.orphaned = True
                return
            self._queued.remove(batch)
        batch.fail(error)
        self._pass_turn(error)

    def _pass_turn(self, error=None):
        """Give the turn to the next batch's leader. A batch without one is
        returned, for the caller to write; or, when the caller is stopping
        with `error`, failed with it."""
        while True:
            with self._lock:
                following = self._queued[0] if self._queued else None
                self._writing = following is not None
                if following is None:
                    return None
                if not following.orphaned:
                    following.turn.set()
                    return None
                if error is None:
                    return following
                self._queued.remove(following)
            following.fail(error)

    def _write_batch(self, batch):
        """Write a batch and wake its callers with their results. If the
        write fails, every caller of the batch learns of it; if the leader
        itself is stopped meanwhile (GreenletExit, gevent.Timeout), the
        others are still woken, with that error, before the leader stops."""
        try:
            batch.results = self.write(batch.items)
        except BaseException as error:
            batch.fail(error)
            if not isinstance(error, Exception):
                raise
            return
        batch.written.set()


class BatcherPool:
    """One Batcher per key, created on demand and dropped once idle, and one
    for the key None that stays.

    `keyed` tells callers whether to key their items (the chat keys by
    channel on PostgreSQL) or to share one batch (None) for everything.
    """

    def __init__(self, write, max_size=1000, keyed=True):
        self.write = write
        self.max_size = max_size
        self.keyed = keyed
        self._shared = Batcher(write, max_size)
        self._lock = threading.Lock()
        self._batchers = {}
        self._users = {}

    def submit(self, key, item):
        """Write `item` in the next batch of `key`."""
        if key is None:
            return self._shared.submit(item)
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = Batcher(self.write, self.max_size)
            self._users[key] = self._users.get(key, 0) + 1
        try:
            return batcher.submit(item)
        finally:
            with self._lock:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                    del self._batchers[key]
