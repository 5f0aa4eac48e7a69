"""Entry point of the chat server.

`python wsgi.py` serves the chat on HOST:PORT with Socket.IO on gevent and
WebSocket support; gunicorn imports `app` from here. gevent patches the
standard library first, before anything else imports it.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402
from app.extensions import socketio  # noqa: E402

app = create_app()

if __name__ == "__main__":
    print(
        f"Channel Chat on http://{app.config['HOST']}:{app.config['PORT']}/",
        flush=True,
    )
    socketio.run(app, host=app.config["HOST"], port=app.config["PORT"])
