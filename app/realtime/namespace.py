"""Socket.IO events of the chat, on the default namespace `/`.

Each handler parses its payload, calls a service, and answers: with an ack
when the client asked for one, and with `chat_error` to the sender alone
whenever it refuses the event, so clients without acks learn why too.
"""

from functools import wraps

from flask.globals import _cv_app
from flask_socketio import ConnectionRefusedError, Namespace

from app.chat.errors import ChatError
from app.chat.rate_limits import Sender


def answered(handler):
    """Report a ChatError as `chat_error` and a failed ack; accept any arity."""
    event = handler.__name__.removeprefix("on_")

    @wraps(handler)
    def answer(self, sid, *args):
        try:
            return handler(self, sid, *args[:1])
        except ChatError as error:
            self.refused(error.code)
            self.tell(sid, "chat_error", {"event": event, **error.as_dict()})
            if error.closes:
                self.disconnect(sid)
            return {"ok": False, **error.as_dict()}

    return answer


class ChatNamespace(Namespace):
    """The chat's events: join, send_message, typing and leave, each handed
    to the membership service (app.chat.membership) with the sender's sid.

    Handlers run in an application context. Flask-SocketIO would build a
    whole request context for every event, URL matching included, which
    none of them needs; the wire acts on the messages of one WebSocket
    wake-up in one app context.
    """

    def __init__(self, namespace, app, membership, refused=lambda code: None):
        super().__init__(namespace)
        self.app = app
        self.membership = membership
        self.refused = refused  # counts refusals by code (app.metrics)

    def trigger_event(self, event, *args):
        """Call on_<event>(sid, ...) in the app's context, if there is one:
        the context the wire acts on a WebSocket's messages in, or one of
        its own."""
        handler = getattr(self, f"on_{event}", None)
        if handler is None:
            return None
        # Flask's own record of the active context: cheaper, per event, than
        # has_app_context() and current_app's proxy.
        active = _cv_app.get(None)
        if active is not None and active.app is self.app:
            return handler(*args)
        with self.app.app_context():
            return handler(*args)

    def tell(self, sid, event, data):
        """Send an event to one connection of this process."""
        self.server.emit(
            event, data, to=sid, namespace=self.namespace, ignore_queue=True
        )

    def on_connect(self, sid, environ, auth=None):
        """A page connects with `auth: {token}`, or as a guest with
        optionally `auth: {name, person}`. A refusal reaches the client's
        `connect_error`: the reason as its `message`, `{code, message}` as
        its `data`."""
        try:
            self.membership.connect(sid, auth)
        except ChatError as error:
            self.refused(error.code)
            raise ConnectionRefusedError(error.message, error.as_dict()) from None
        if not self._still_open(sid):
            # The connection ended while this waited (on the database, for
            # a person's ban): python-socketio skipped its disconnect, as it
            # was not connected yet, and would now register it for good.
            self.membership.disconnect(sid)
            return False
        return True

    def _still_open(self, sid):
        """Whether the connection behind `sid` has not ended: its Engine.IO
        disconnect not handled (python-socketio then drops its environ),
        nor under way (its session closing)."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid not in self.server.environ:
            return False
        session = self.server.eio.sockets.get(eio_sid)  # none for a test client
        return session is None or not (session.closing or session.closed)

    def on_disconnect(self, sid, reason=None):
        self.membership.disconnect(sid)

    @answered
    def on_join(self, sid, payload=None):
        """`join {channel, since?, name?}`, sent by a page on every
        (re)connect: the joiner gets the retained messages after `since`,
        then the ack; the room gets the new `presence`."""
        joined = self.membership.join(sid, self._sender(sid), payload)
        return None if joined is None else {"ok": True, **joined}

    @answered
    def on_send_message(self, sid, payload=None):
        """`send_message {channel, message, client_id?}`, sent again with the
        same client_id until it is acked: acked with the stored message's id
        and seq once it is committed (a retry with the first send's)."""
        stored = self.membership.send(sid, self._sender(sid), payload)
        return {"ok": True, "id": stored["id"], "seq": stored["seq"]}

    @answered
    def on_edit_message(self, sid, payload=None):
        """`edit_message {channel, seq, message}`: the room gets
        `message_edited`; acked with the seq and `edited_at`."""
        change = self.membership.edit(sid, self._sender(sid), payload)
        return {"ok": True, "seq": change["seq"], "edited_at": change["edited_at"]}

    @answered
    def on_delete_message(self, sid, payload=None):
        """`delete_message {channel, seq}`: the room gets `message_deleted`."""
        change = self.membership.delete(sid, self._sender(sid), payload)
        return {"ok": True, "seq": change["seq"]}

    @answered
    def on_typing(self, sid, payload=None):
        """`typing {channel}`, sent by a page while its person types."""
        self.membership.typing(sid, self._sender(sid), payload)
        return {"ok": True}

    @answered
    def on_refresh(self, sid, payload=None):
        """`refresh {token}`, sent before the token's exp: acked with the new
        `exp` and the channels `left` that the new token no longer grants."""
        refreshed = self.membership.refresh(sid, payload)
        return None if refreshed is None else {"ok": True, **refreshed}

    @answered
    def on_leave(self, sid, payload=None):
        """`leave {channel}`: stop receiving a channel."""
        self.membership.leave(sid, payload)
        return {"ok": True}

    def _sender(self, sid):
        """Who sent an event, for the rate limits: the connection and its
        address (the client's own behind a proxy, see PROXY_COUNT)."""
        environ = self.server.get_environ(sid, self.namespace) or {}
        return Sender(sid, environ.get("REMOTE_ADDR"))
