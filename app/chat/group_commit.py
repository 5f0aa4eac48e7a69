"""Group commit: callers that write at the same time share one transaction.

Batches are kept per key (the chat keys them by channel), so that one slow
write, such as one waiting for a lock in the database, holds up only the
callers of its own key.

The first caller to arrive while no batch is being written leads. It pauses
once, so that the others who are ready to run can add their items, then
writes everything waiting in one go and hands each caller its own result.
Callers that arrive during a write wait for the next batch, which the first
of them leads. One caller alone pays only the pause, which yields to other
greenlets for no time at all.

threading's primitives and time.sleep serve both the threaded test server
and gevent, which patches them into greenlet-aware ones.
"""

import threading
import time


class _Request:
    def __init__(self, item):
        self.item = item
        self.result = None
        self.error = None
        self.done = False
        self.wake = threading.Event()


class Batcher:
    """Runs `write(items) -> results` for batches of concurrently submitted items."""

    def __init__(self, write, max_size=1000):
        self.write = write
        self.max_size = max_size
        self._lock = threading.Lock()
        self._waiting = []
        self._writing = False

    def submit(self, item):
        """Write `item` in the next batch; return its result or raise its error."""
        request = _Request(item)
        with self._lock:
            self._waiting.append(request)
        while True:
            with self._lock:
                if request.done:
                    break
                lead = not self._writing
                self._writing = True
            if lead:
                self._lead()
            else:
                request.wake.wait()
                request.wake.clear()
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self):
        try:
            time.sleep(0)  # let every caller that is ready join this batch
            with self._lock:
                batch = self._waiting[: self.max_size]
                del self._waiting[: self.max_size]
            self._write_batch(batch)
        finally:
            with self._lock:
                self._writing = False
                successor = self._waiting[0] if self._waiting else None
            if successor is not None:
                successor.wake.set()

    def _write_batch(self, batch):
        """Write a batch and hand each caller its result. If the write fails,
        every caller of the batch learns of it; if the leader itself is
        stopped meanwhile (GreenletExit, gevent.Timeout), the others are
        still woken, with that error, before the leader stops."""
        try:
            results = self.write([request.item for request in batch])
        except BaseException as error:
            for request in batch:
                request.error = error
            self._wake(batch)
            if not isinstance(error, Exception):
                raise
            return
        for request, result in zip(batch, results, strict=True):
            request.result = result
        self._wake(batch)

    @staticmethod
    def _wake(batch):
        for request in batch:
            request.done = True
            request.wake.set()


class BatcherPool:
    """One Batcher per key, created on demand and dropped once idle."""

    def __init__(self, write, max_size=1000):
        self.write = write
        self.max_size = max_size
        self._lock = threading.Lock()
        self._batchers = {}
        self._users = {}

    def submit(self, key, item):
        """Write `item` in the next batch of `key`."""
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
