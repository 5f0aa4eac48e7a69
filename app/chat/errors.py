"""The one exception the chat raises when it refuses an event or a request."""


class ChatError(Exception):
    """A refusal with a machine-readable ``code`` and a sentence for people.

    ``status`` is the HTTP status the API answers with; socket events carry
    the same code and message in their ack and in ``chat_error``. A refusal
    that passes with time says after how many seconds (``retry_after``). A
    refusal that ``closes`` ends the connection once it is reported.
    """

    closes = False
    details = None  # more fields of the refusal, such as a ban's `until`

    def __init__(self, code, message, status=400, retry_after=None):
        super().__init__(code, message, status, retry_after)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self):
        return self.message

    def as_dict(self):
        """The ``{code, message}`` every door reports, with ``retry_after``
        when there is one, and any details."""
        refusal = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            refusal["retry_after"] = self.retry_after
        if self.details:
            refusal.update(self.details)
        return refusal
