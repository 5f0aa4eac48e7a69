"""One task per server pinging every Engine.IO socket when due.

python-engineio gives each socket a greenlet that sleeps out its ping
interval, and scans every socket once per ping timeout for silent ones. The
Pinger is one task for all of them: it sends each socket of protocol 4 its
PING when due and closes the socket that has not answered within the ping
timeout, and closes each socket of protocol 3 (whose clients ping) not heard
within the ping interval and timeout.
"""

import heapq
import itertools
import logging
import time
from collections import deque
from weakref import ref

logger = logging.getLogger(__name__)

# Sockets whose pings fall due this close together are pinged together.
_PING_GRANULARITY = 0.1


class Pinger:
    """One task sending each socket of a server its PING when due, and
    closing each socket that has not answered it within the ping timeout;
    and closing each socket of protocol 3 (whose clients ping) not heard
    within the ping interval and timeout.

    Every socket waits the same interval for its ping, and the same timeout
    for the answer, so sockets come due in the order they were scheduled,
    and a deque for each keeps them in that order. (Engine.IO's own check
    goes round all sockets once per ping timeout, which let a silent one
    stay up to a whole timeout longer.)

    A socket of protocol 3 has one deadline in a heap at most, however
    often its client pings: when that deadline comes, the socket's current
    one (moved by every PING since) is checked, or put back in the heap.

    It holds the sockets weakly: a socket that closes is freed as soon as
    its server lets go of it, not when its ping or deadline falls due (up
    to the ping interval and timeout later, by which time thousands of
    short visits would have piled up), and its entry is skipped then.
    """

    def __init__(self, server, joined, connect_timeout):
        self.server = server
        self.joined = joined  # whether an Engine.IO sid has a namespace
        self.connect_timeout = connect_timeout
        self.due = deque()  # (when to ping, socket's weak reference)
        self.answers = deque()  # (when the answer is late, socket's weak reference)
        # Heap of (a protocol 3 socket's deadline, n, socket's weak reference).
        self.silences = []
        self._order = itertools.count()  # ties in the heap, sockets unordered
        self.task = None

    def stray(self, socket):
        """Whether `socket` has had its time to join a namespace, and has none."""
        in_time = time.monotonic() - socket.opened < self.connect_timeout
        return not in_time and not self.joined(socket.sid)

    def schedule(self, socket):
        """Ping `socket` one interval from now."""
        self.due.append((time.monotonic() + self.server.ping_interval, ref(socket)))
        self._start()

    def expect(self, socket):
        """Close `socket` unless it is heard again by its deadline."""
        if not socket.watched:
            socket.watched = True
            self._watch(socket)
            self._start()

    def _watch(self, socket):
        entry = (socket.deadline, next(self._order), ref(socket))
        heapq.heappush(self.silences, entry)

    def _start(self):
        if self.task is None:
            self.task = self.server.start_background_task(self._run)

    def _run(self):
        while True:
            self._wait()
            horizon = time.monotonic() + _PING_GRANULARITY
            while self.due and self.due[0][0] <= horizon:
                _, weak = self.due.popleft()
                socket = weak()
                if socket is None:
                    continue  # closed and freed
                self._attempt(socket.ping, socket)
                if socket.last_ping is not None:  # sent: expect the answer
                    late = self.server.ping_timeout + _PING_GRANULARITY
                    self.answers.append((time.monotonic() + late, weak))
            now = time.monotonic()
            answers, silences = self.answers, self.silences
            while answers and answers[0][0] <= now:
                socket = answers.popleft()[1]()
                if socket is not None and not socket.closing and not socket.closed:
                    self._attempt(socket.check_ping_timeout, socket)
            while silences and silences[0][0] <= now:
                socket = heapq.heappop(silences)[2]()
                if socket is None:
                    continue
                if socket.closing or socket.closed:
                    socket.watched = False
                elif socket.deadline > now:  # heard since
                    self._watch(socket)
                else:
                    socket.watched = False
                    self._attempt(socket.check_ping_timeout, socket)

    def _wait(self):
        """Sleep until the next ping or answer falls due."""
        queues = (self.due, self.answers, self.silences)
        heads = [queue[0][0] for queue in queues if queue]
        if not heads:
            self.server.sleep(self.server.ping_interval)
        elif (delay := min(heads) - time.monotonic()) > 0:
            self.server.sleep(max(delay, _PING_GRANULARITY))

    @staticmethod
    def _attempt(action, socket):
        try:
            action()
        except Exception:
            logger.exception("ping of %s failed", socket.sid)
