"""The body of a long-polling POST, checked before Engine.IO decodes it."""

import io

from app.wire.packets import ENGINEIO_MESSAGE, MALFORMED_MESSAGE

# Packets of a long-polling body are separated by the record separator.
_SEPARATOR = "\x1e"
# Engine.IO refuses (with a traceback) bodies of more packets than this.
_MOST_PACKETS = 16


def guard_body(environ, max_message):
    """Replace what is not Engine.IO in a long-polling POST body.

    ChatHandler has read the body already, refusing one over the limit; a
    body still announced as longer is left unread for Engine.IO to refuse.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # Engine.IO answers 400 itself
    if length > max_message:
        return
    body = environ["wsgi.input"].read(length)
    try:
        packets = body.decode("utf-8").split(_SEPARATOR)
    except UnicodeDecodeError:
        packets = [MALFORMED_MESSAGE]
    if len(packets) > _MOST_PACKETS:
        packets = [MALFORMED_MESSAGE]
    packets = [p if ENGINEIO_MESSAGE.match(p) else MALFORMED_MESSAGE for p in packets]
    guarded = _SEPARATOR.join(packets).encode()
    environ["wsgi.input"] = io.BytesIO(guarded)
    environ["CONTENT_LENGTH"] = str(len(guarded))
