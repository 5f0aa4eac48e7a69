"""Channel Chat: real-time channel chat on Flask-SocketIO."""

import math
import os

from flask import Flask, jsonify, request
from sqlalchemy import event
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from app import wire
from app.chat.errors import ChatError
from app.chat.identity import Tokens
from app.chat.membership import Membership
from app.chat.messages import Messages
from app.chat.moderation import Bans, Moderation, SlowMode
from app.chat.presence import LocalPresence, Presence, RedisPresence
from app.chat.rate_limits import Rates
from app.chat.services import Chat
from app.extensions import (
    database_options,
    db,
    migrate,
    socketio,
    sync_every_commit,
)
from app.metrics import Metrics, networks
from app.realtime.admin import AdminPanel
from app.realtime.archive import Archive
from app.realtime.delivery import ChatManager, ChatRedisManager
from app.realtime.namespace import ChatNamespace
from app.realtime.rooms import Rooms
from app.redis_link import RedisLink
from app.web import admin, api, operator_api, pages, security
from app.web.commands import chat_cli
from app.wire.packets import CheckedPacket, TolerantJSON, TolerantJSONProvider
from config import BASE_DIR, DEV_SECRET_KEY, config_from_env


def create_app(config_class=None):
    """Build the chat app with the given settings class (default: CHAT_ENV)."""
    app = Flask(
        __name__,
        template_folder=str(BASE_DIR / "templates"),
        static_folder=str(BASE_DIR / "static"),
        instance_path=str(BASE_DIR / "instance"),
    )
    app.config.from_object(config_class or config_from_env())
    check_secret_key(app)
    app.json = TolerantJSONProvider(app)
    register_extensions(app)
    register_metrics(app)
    register_proxies(app)
    register_services(app)
    register_blueprints(app)
    security.init_app(app)
    register_errorhandlers(app)
    register_socket_events(app)
    register_admin(app)
    register_commands(app)
    return app


def check_secret_key(app):
    """Refuse to run in production without a real SECRET_KEY: set, not the
    development one, and at least security.MIN_SECRET_KEY_LENGTH long."""
    key = app.config["SECRET_KEY"]
    if not app.config["REQUIRE_SECRET_KEY"]:
        return
    if key in (None, "", DEV_SECRET_KEY):
        raise RuntimeError("set SECRET_KEY to a long random string before serving")
    if len(key) < security.MIN_SECRET_KEY_LENGTH:
        raise RuntimeError(
            f"SECRET_KEY has {len(key)} characters; production needs at least "
            f"{security.MIN_SECRET_KEY_LENGTH}, such as the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def register_extensions(app):
    """Bind the database, migrations and Socket.IO to the app."""
    # The default SQLite database lives in instance/.
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", database_options(app.config))
    db.init_app(app)
    sync_interval = app.config["CHAT_SQLITE_SYNC_INTERVAL"]
    if not 0 <= sync_interval < math.inf:
        raise RuntimeError(
            "CHAT_SQLITE_SYNC_INTERVAL must be 0 (sync every commit) or a"
            " number of seconds"
        )
    if sync_interval == 0:
        with app.app_context():
            event.listen(db.engine, "connect", sync_every_commit)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"))
    app.extensions["chat_redis"] = _redis_link(app.config)
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        client_manager=_client_manager(app),
        cors_allowed_origins=app.config["CORS_ALLOWED_ORIGINS"],
        max_http_buffer_size=app.config["MAX_CONTENT_LENGTH"],
        ping_interval=app.config["PING_INTERVAL"],
        ping_timeout=app.config["PING_TIMEOUT"],
        serializer=CheckedPacket,
        json=TolerantJSON,
        # Events of one socket are handled in the order they arrive.
        async_handlers=False,
        # Handlers use no Flask session; skip copying it for every event.
        manage_session=False,
    )
    socketio.server.manager.archive = Archive(app)
    wire.install(app, socketio)


def register_metrics(app):
    """Count what an operator watches (app.metrics), per process."""
    metrics = Metrics(allowed=networks(app.config["CHAT_METRICS_ALLOW"]))
    server = socketio.server
    metrics.watch(lambda: len(server.eio.sockets), app.extensions["chat_redis"])
    server.manager.metrics = metrics
    server.eio.dispatch.timed["send_message"] = metrics.send_seconds.observe
    app.extensions["chat_metrics"] = metrics


def register_proxies(app):
    """Trust X-Forwarded-For and -Proto from PROXY_COUNT proxies in front,
    so that rate limits count the client's address, not the proxy's."""
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def register_services(app):
    """Build the chat's services, each handed what it works with: the
    channel rooms, presence's store, the token keys, the rate limits and
    each other."""
    config = app.config
    tokens = Tokens(config)
    rooms = Rooms(socketio)
    rates = Rates(config, app.extensions["chat_redis"])
    # PostgreSQL writes channels side by side, so one slow channel must not
    # hold up the others; SQLite writes one transaction at a time, blocking
    # the process meanwhile, so there every channel shares each batch.
    per_channel = config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    posting = Messages(
        rooms.message,
        rates,
        config,
        per_channel=per_channel,
        metrics=app.extensions["chat_metrics"],
    )
    presence = Presence(
        _presence_store(app),
        rooms,
        config["CHAT_PRESENCE_INTERVAL"],
        config["CHAT_TYPING_INTERVAL"],
    )
    moderation = Moderation(rooms.change, config)
    bans = Bans(rooms.command)
    slow = SlowMode(
        rooms.command, app.extensions["chat_redis"], config["REDIS_CHANNEL"]
    )
    membership = Membership(
        rooms, posting, moderation, presence, rates, tokens, config, bans, slow
    )
    socketio.server.manager.on_command = membership.obey
    app.extensions["chat"] = Chat(
        tokens, rates, posting, moderation, bans, slow, presence, membership
    )


def _redis_link(config):
    """The link to Redis when there is one (REDIS_URL), or None."""
    if config["REDIS_URL"]:
        return RedisLink(config["REDIS_URL"], config["REDIS_TIMEOUT"])
    return None


def _client_manager(app):
    """Rooms in this process alone, or across processes through Redis."""
    link = app.extensions["chat_redis"]
    interval = app.config["CHAT_REPAIR_INTERVAL"]
    if link:
        return ChatRedisManager(
            link, app.config["REDIS_CHANNEL"], repair_interval=interval
        )
    return ChatManager(repair_interval=interval)


def _presence_store(app):
    """Presence in this process, or shared by every process through Redis."""
    link = app.extensions["chat_redis"]
    if link:
        return RedisPresence(
            link, app.config["REDIS_CHANNEL"], app.config["CHAT_PRESENCE_TTL"]
        )
    return LocalPresence()


def register_blueprints(app):
    """Mount the pages, the HTTP API and the operator API."""
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(operator_api.bp)
    app.register_blueprint(admin.bp)


def register_errorhandlers(app):
    """Answer refusals as JSON `{error: {code, message}}` on the API."""

    @app.errorhandler(ChatError)
    def refused(error):
        app.extensions["chat_metrics"].refused(error.code)
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        return jsonify(error=error.as_dict()), error.status, headers

    @app.errorhandler(HTTPException)
    def http_error(error):
        if request.path.startswith("/api/"):
            code = (error.name or "error").lower().replace(" ", "_")
            body = {"code": code, "message": error.description}
            return jsonify(error=body), error.code
        return error


def register_admin(app):
    """The socket.io Admin UI's namespace, with CHAT_ADMIN_PASSWORD."""
    password = app.config["CHAT_ADMIN_PASSWORD"]
    if password:
        app.extensions["chat_admin"] = AdminPanel(
            socketio.server,
            password,
            app.extensions["chat"].rates,
            allowed=networks(app.config["CHAT_ADMIN_ALLOW"], "CHAT_ADMIN_ALLOW"),
            person_of=app.extensions["chat"].membership.person_of,
            stats_interval=app.config["CHAT_ADMIN_STATS_INTERVAL"],
        )


def register_commands(app):
    """Add `flask chat ...`."""
    app.cli.add_command(chat_cli)


def register_socket_events(app):
    """Serve the chat's events on the default namespace."""
    membership = app.extensions["chat"].membership
    refused = app.extensions["chat_metrics"].refused
    socketio.on_namespace(ChatNamespace("/", app, membership, refused))
