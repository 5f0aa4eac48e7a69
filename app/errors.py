"""The one exception the chat raises when it refuses an event or a request."""


class ChatError(Exception):
    """A refusal with a machine-readable ``code`` and a sentence for people.

    ``status`` is the HTTP status the API answers with; socket events carry
    the same code and message in their ack and in ``chat_error``.
    """

    def __init__(self, code, message, status=400):
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self):
        return self.message

    def as_dict(self):
        """The ``{code, message}`` pair every door reports."""
        return {"code": self.code, "message": self.message}
