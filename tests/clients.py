"""Chat members for the tests: one interface, whichever door they use.

A Member speaks Socket.IO through Flask-SocketIO's test client, in the test's
own process; a Tab is python-socketio's client talking to a real server.
Both `call` an event and return its ack, `join` and `send`.
"""

import threading

import socketio


class ChatClient:
    """What a test does as a member of the chat."""

    def call(self, event, *args):
        """Emit an event and return the server's ack."""
        raise NotImplementedError

    def join(self, channel, **fields):
        """Join a channel and return the ack, which must be ok."""
        ack = self.call("join", {"channel": channel, **fields})
        assert ack["ok"] is True, ack
        return ack

    def send(self, channel, message, **fields):
        """Send a message and return the ack."""
        return self.call(
            "send_message", {"channel": channel, "message": message, **fields}
        )


class Member(ChatClient):
    """One member's browser tab, speaking Socket.IO through the test client,
    which delivers every event before `call` returns."""

    def __init__(self, client):
        self.client = client
        self.inbox = []

    def call(self, event, *args):
        return self.client.emit(event, *args, callback=True)

    def emit(self, event, *args):
        """Emit an event without asking for an ack."""
        self.client.emit(event, *args)

    def received(self, event):
        """Payloads of the `event` events received and not yet looked at."""
        self.inbox.extend(self.client.get_received())
        matching = [packet for packet in self.inbox if packet["name"] == event]
        self.inbox = [packet for packet in self.inbox if packet["name"] != event]
        return [_payload(packet) for packet in matching]

    def drain(self):
        """Forget everything received so far."""
        self.client.get_received()
        self.inbox.clear()


def _payload(packet):
    # The test client keeps the payload of `message` events as is, and the
    # arguments of every other event as a list.
    if packet["name"] == "message":
        return packet["args"]
    return packet["args"][0] if packet["args"] else None


class Tab(ChatClient):
    """python-socketio's client on a real server, recording the `message`
    events (and presence, typing, chat_error) as they arrive."""

    def __init__(self, url, transports=("websocket",), name=None):
        self.messages = []
        self.events = {"presence": [], "typing": [], "chat_error": []}
        self.arrived = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("message", lambda data: self._record(self.messages, data))
        for event, received in self.events.items():
            self.client.on(event, lambda data, to=received: self._record(to, data))
        self.client.connect(
            url,
            transports=list(transports),
            auth={"name": name} if name else None,
            wait_timeout=10,
        )

    def _record(self, received, data):
        with self.arrived:
            received.append(data)
            self.arrived.notify_all()

    def call(self, event, payload=None, timeout=10):
        return self.client.call(event, payload, timeout=timeout)

    def wait_event(self, event, done, timeout=15):
        """Wait until done(payload) holds for some `event`; return that payload."""
        with self.arrived:
            self.arrived.wait_for(
                lambda: any(done(data) for data in self.events[event]), timeout
            )
            return next((data for data in self.events[event] if done(data)), None)

    def wait_for(self, count, timeout=15):
        """Wait until `count` messages arrived; return all of them."""
        return self.wait_until(lambda messages: len(messages) >= count, timeout)

    def wait_until(self, done, timeout=15):
        """Wait until done(messages) holds; return all messages."""
        with self.arrived:
            self.arrived.wait_for(lambda: done(self.messages), timeout)
            return list(self.messages)

    def texts(self, count, timeout=15):
        """Wait for `count` messages; return their texts."""
        return [message["message"] for message in self.wait_for(count, timeout)]

    def close(self):
        self.client.disconnect()
