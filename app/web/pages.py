"""The pages people open: the channel picker and a channel's chat page."""

from flask import Blueprint, current_app, render_template, request, send_from_directory

from app.chat import channels, rules
from app.chat.errors import ChatError

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """The channel picker, with the channels that have messages."""
    return render_template("index.html", channels=channels.active_channels().channels)


@bp.get("/chat")
def channel_page():
    """A channel's page: `/chat?channel=NAME`, the document's URL."""
    try:
        channel = rules.channel_name(request.args.get("channel"))
    except ChatError as error:
        if request.args.get("channel") is None:
            error.message = "Channel not specified"
        return (
            render_template(
                "index.html", channels=channels.active_channels().channels, error=error
            ),
            400,
        )
    return render_template("chat.html", channel=channel)


@bp.get("/vendor/socket.io.min.js")
def socketio_client():
    """The browser's socket.io client, as installed from the npm registry."""
    return send_from_directory(
        current_app.config["SOCKETIO_CLIENT_DIR"],
        "socket.io.min.js",
        mimetype="text/javascript",
        max_age=3600,
    )
