"""Settings of the chat server.

Every setting reads an environment variable with a safe default, so this module
imports with nothing set. Tests and tools pass a class of their own to
``create_app``.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DEV_SECRET_KEY = "dev-only-not-secret"


def _origins(value):
    """Parse ``CORS_ALLOWED_ORIGINS``: unset means same origin only."""
    if value is None or not value.strip():
        return None
    if value.strip() == "*":
        return "*"
    return [origin.strip() for origin in value.split(",") if origin.strip()]


def _switch(value):
    """An on/off setting: "off", "false", "0" and "no" are off."""
    return value.strip().lower() not in ("off", "false", "0", "no")


def database_url(value):
    """``DATABASE_URL`` as SQLAlchemy wants it: PostgreSQL through psycopg 3."""
    if value is None or not value.strip():
        return f"sqlite:///{BASE_DIR / 'instance' / 'chat.sqlite3'}"
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value.removeprefix(prefix)
    return value


class Config:
    """Settings shared by every environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
    # Production refuses to start with no SECRET_KEY or the development one.
    REQUIRE_SECRET_KEY = False
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # Connections each process keeps to PostgreSQL (and may add under load).
    DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE", "10"))
    DATABASE_MAX_OVERFLOW = int(os.environ.get("DATABASE_MAX_OVERFLOW", "20"))
    # SQLite: seconds within which an acked message is synced to the disk
    # (it is safe from a crash of the process at once); 0 syncs every commit
    # before its ack.
    CHAT_SQLITE_SYNC_INTERVAL = float(os.environ.get("CHAT_SQLITE_SYNC_INTERVAL", "1"))
    REDIS_URL = os.environ.get("REDIS_URL") or None
    # The Redis pub/sub channel shared by every process of one deployment.
    REDIS_CHANNEL = os.environ.get("REDIS_CHANNEL", "flask-socketio")
    CHAT_HISTORY_LIMIT = int(os.environ.get("CHAT_HISTORY_LIMIT", "10"))
    CHAT_MAX_MESSAGE_LENGTH = int(os.environ.get("CHAT_MAX_MESSAGE_LENGTH", "2000"))
    # Seconds a process's members stay listed after it stops refreshing them.
    CHAT_PRESENCE_TTL = float(os.environ.get("CHAT_PRESENCE_TTL", "30"))
    # Least seconds between two presence events of a channel, and between two
    # typing notices of one member.
    CHAT_PRESENCE_INTERVAL = float(os.environ.get("CHAT_PRESENCE_INTERVAL", "1"))
    CHAT_TYPING_INTERVAL = float(os.environ.get("CHAT_TYPING_INTERVAL", "1"))
    # Hours a client_id is remembered: a retry within them stores nothing new.
    CHAT_RETRY_HOURS = float(os.environ.get("CHAT_RETRY_HOURS", "24"))
    # Seconds between two checks of the channels this process serves against
    # the database, which deliver any message Redis did not bring.
    CHAT_REPAIR_INTERVAL = float(os.environ.get("CHAT_REPAIR_INTERVAL", "1"))
    # Seconds a publish to Redis may take before Redis counts as unavailable.
    REDIS_TIMEOUT = float(os.environ.get("REDIS_TIMEOUT", "0.5"))
    # Rate limits, as `limits` writes them ("10/second;120/minute"; "off"
    # for none), per connection and per address. A person typing fast never
    # reaches them; a script does. CHAT_RATE_LIMITS=off turns all of them off.
    CHAT_RATE_LIMITS = _switch(os.environ.get("CHAT_RATE_LIMITS", "on"))
    CHAT_RATE_SEND = os.environ.get("CHAT_RATE_SEND", "10/second;120/minute")
    CHAT_RATE_SEND_PER_ADDRESS = os.environ.get(
        "CHAT_RATE_SEND_PER_ADDRESS", "50/second;1200/minute"
    )
    CHAT_RATE_JOIN = os.environ.get("CHAT_RATE_JOIN", "10/second;120/minute")
    CHAT_RATE_JOIN_PER_ADDRESS = os.environ.get(
        "CHAT_RATE_JOIN_PER_ADDRESS", "50/second;1200/minute"
    )
    CHAT_RATE_TYPING = os.environ.get("CHAT_RATE_TYPING", "10/second")
    CHAT_RATE_TYPING_PER_ADDRESS = os.environ.get(
        "CHAT_RATE_TYPING_PER_ADDRESS", "100/second"
    )
    CHAT_RATE_NEW_CHANNEL = os.environ.get("CHAT_RATE_NEW_CHANNEL", "10/minute")
    CHAT_RATE_NEW_CHANNEL_PER_ADDRESS = os.environ.get(
        "CHAT_RATE_NEW_CHANNEL_PER_ADDRESS", "30/minute;300/day"
    )
    # Wrong X-API-Key answers an address may get (CHAT_RATE_API_KEY counts
    # nothing: the operator API has no connections).
    CHAT_RATE_API_KEY = os.environ.get("CHAT_RATE_API_KEY", "off")
    CHAT_RATE_API_KEY_PER_ADDRESS = os.environ.get(
        "CHAT_RATE_API_KEY_PER_ADDRESS", "10/minute;100/day"
    )
    # Proxies in front whose X-Forwarded-For and -Proto are trusted: 1
    # behind deploy/nginx.conf, 0 when clients connect straight to gunicorn.
    PROXY_COUNT = int(os.environ.get("PROXY_COUNT", "0"))
    # Channels one connection may be in at once.
    CHAT_MAX_CHANNELS_PER_CONNECTION = int(
        os.environ.get("CHAT_MAX_CHANNELS_PER_CONNECTION", "50")
    )
    # Who may read /metrics besides loopback and the operator API's key:
    # comma-separated CIDR networks, such as "10.0.0.0/8".
    CHAT_METRICS_ALLOW = os.environ.get("CHAT_METRICS_ALLOW", "")
    # The operator API's key (X-API-Key); unset, the operator API is off.
    CHAT_API_KEY = os.environ.get("CHAT_API_KEY") or None
    # The socket.io Admin UI's password (user `admin`); unset, /admin/ and
    # the /admin namespace are off.
    CHAT_ADMIN_PASSWORD = os.environ.get("CHAT_ADMIN_PASSWORD") or None
    # Who may reach the Admin UI besides loopback: comma-separated CIDR
    # networks; never through a proxy (a request with X-Forwarded-For).
    CHAT_ADMIN_ALLOW = os.environ.get("CHAT_ADMIN_ALLOW", "")
    # Seconds between two server_stats sent to the Admin UI.
    CHAT_ADMIN_STATS_INTERVAL = float(os.environ.get("CHAT_ADMIN_STATS_INTERVAL", "2"))
    # Seconds after posting that a verified author may still edit a message.
    CHAT_EDIT_WINDOW = float(os.environ.get("CHAT_EDIT_WINDOW", "900"))
    # Who may use the chat (app.chat.identity): "open" admits guests beside
    # people verified by a token; "required" admits only the verified.
    CHAT_AUTH = os.environ.get("CHAT_AUTH", "open")
    # How tokens are verified: HS256 with a shared secret (32 characters at
    # least), or RS256/ES256 with the host site's public key (PEM text).
    CHAT_TOKEN_SECRET = os.environ.get("CHAT_TOKEN_SECRET") or None
    CHAT_TOKEN_PUBLIC_KEY = os.environ.get("CHAT_TOKEN_PUBLIC_KEY") or None
    # Seconds of clock difference with the host site a token's exp allows.
    CHAT_TOKEN_LEEWAY = float(os.environ.get("CHAT_TOKEN_LEEWAY", "5"))
    # Seconds after exp that a connection whose token was not refreshed
    # is told `token_expired` and disconnected.
    CHAT_TOKEN_GRACE = float(os.environ.get("CHAT_TOKEN_GRACE", "25"))
    # Where the page fetches {token} (with the browser's cookies) from the
    # host site; unset, the page is a guest page.
    CHAT_TOKEN_URL = os.environ.get("CHAT_TOKEN_URL") or None
    HOST = os.environ.get("HOST", "127.0.0.1")
    PORT = int(os.environ.get("PORT", "5000"))
    CORS_ALLOWED_ORIGINS = _origins(os.environ.get("CORS_ALLOWED_ORIGINS"))
    # Where `npm ci` puts the browser's socket.io client, which the app serves.
    SOCKETIO_CLIENT_DIR = BASE_DIR / "node_modules" / "socket.io-client" / "dist"
    # Where `npm ci` puts the socket.io Admin UI's built page and its fonts.
    ADMIN_UI_DIR = BASE_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
    ADMIN_ICONS_DIR = BASE_DIR / "node_modules" / "@mdi" / "font"
    ADMIN_FONT_DIR = BASE_DIR / "node_modules" / "@fontsource" / "roboto"
    SOCKETIO_ASYNC_MODE = "gevent"
    # Whole seconds between the server's pings of a connection, and seconds
    # it waits for the answer before dropping the connection. Keep the
    # interval below the idle timeout of any proxy in front.
    PING_INTERVAL = int(os.environ.get("PING_INTERVAL", "25"))
    PING_TIMEOUT = int(os.environ.get("PING_TIMEOUT", "20"))
    # A whole request body or Socket.IO packet larger than this is refused.
    MAX_CONTENT_LENGTH = 64 * 1024
    # Who may show the chat's pages in a frame: a CSP frame-ancestors source
    # list, such as "'self' https://intranet.example". 'none' (the default)
    # also sends X-Frame-Options: DENY for browsers that predate CSP.
    CHAT_FRAME_ANCESTORS = os.environ.get("CHAT_FRAME_ANCESTORS", "'none'")
    # What one client may hold on the wire (app.wire.http, app.wire.connections).
    # Seconds a client has to send a whole request (line, headers, body),
    # from connecting or from the first byte of its next request.
    REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "10"))
    # Seconds a kept-alive HTTP connection may wait idle for its next request.
    KEEPALIVE_TIMEOUT = float(os.environ.get("KEEPALIVE_TIMEOUT", "5"))
    # Most connections open at once from one address; 0 for no limit. Behind
    # a proxy every connection comes from the proxy: set 0 and limit there.
    MAX_CONNECTIONS_PER_ADDRESS = int(
        os.environ.get("MAX_CONNECTIONS_PER_ADDRESS", "200")
    )
    # Most connections one process holds at once (gunicorn's worker reads it
    # too); more are refused with 503.
    WORKER_CONNECTIONS = int(os.environ.get("WORKER_CONNECTIONS", "20000"))
    # Seconds an Engine.IO connection has to connect to the Socket.IO
    # namespace; it is closed at its next ping after that.
    CONNECT_TIMEOUT = float(os.environ.get("CONNECT_TIMEOUT", "45"))
    # Each connection's budget of inbound events (WebSocket frames,
    # long-polling packets), app.wire.budget: read no faster than
    # INBOUND_RATE a second (0: no budget) after a burst of INBOUND_BURST,
    # and closed after INBOUND_CLOSE_AFTER seconds over it without a pause.
    INBOUND_RATE = float(os.environ.get("INBOUND_RATE", "100"))
    INBOUND_BURST = float(os.environ.get("INBOUND_BURST", "200"))
    INBOUND_CLOSE_AFTER = float(os.environ.get("INBOUND_CLOSE_AFTER", "10"))
    # Serve clients of Engine.IO protocol 3 (socket.io-client 1.x and 2.x,
    # and SDKs of their time) beside protocol 4 on the same endpoint.
    ALLOW_EIO3 = _switch(os.environ.get("ALLOW_EIO3", "on"))


class DevelopmentConfig(Config):
    """`make run`: one process, SQLite under instance/."""


class ProductionConfig(Config):
    """`make serve`: gunicorn with gevent-websocket workers."""

    REQUIRE_SECRET_KEY = True


class TestingConfig(Config):
    """In-process tests: an in-memory database, handlers run inline."""

    TESTING = True
    SECRET_KEY = "testing"
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    REDIS_URL = None
    CHAT_HISTORY_LIMIT = 10
    CHAT_MAX_MESSAGE_LENGTH = 2000
    CHAT_PRESENCE_INTERVAL = 0
    # Tests repair delivery by calling the manager's check() themselves.
    CHAT_REPAIR_INTERVAL = 0
    # Tests of the limits turn them on; others send as fast as they like.
    CHAT_RATE_LIMITS = False
    CORS_ALLOWED_ORIGINS = None
    SOCKETIO_ASYNC_MODE = "threading"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}


def config_from_env():
    """The settings class named by ``CHAT_ENV`` (default: development)."""
    name = os.environ.get("CHAT_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"CHAT_ENV={name!r} is not one of {', '.join(CONFIGS)}"
        ) from None
