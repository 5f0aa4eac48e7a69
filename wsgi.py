"""Entry point of the chat server.

`python wsgi.py` serves the chat on HOST:PORT with Socket.IO on gevent and
WebSocket support; gunicorn imports `app` from here. gevent patches the
standard library first, before anything else imports it.
"""

from gevent import monkey

monkey.patch_all()

import redis  # noqa: E402

from app import create_app, presence  # noqa: E402
from app.extensions import socketio  # noqa: E402

app = create_app()


def refresh_presence():
    """Every second: keep this process's members listed, announce changes."""
    while True:
        socketio.sleep(1)
        with app.app_context():
            try:
                presence.refresh()
            except redis.RedisError as error:
                app.logger.warning("presence refresh failed: %s", error)


socketio.start_background_task(refresh_presence)

if __name__ == "__main__":
    print(
        f"Channel Chat on http://{app.config['HOST']}:{app.config['PORT']}/",
        flush=True,
    )
    socketio.run(app, host=app.config["HOST"], port=app.config["PORT"])
