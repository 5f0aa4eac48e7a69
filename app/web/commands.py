"""`flask chat ...`: the chat from the command line."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.chat.errors import ChatError
from app.realtime.rooms import QueuePublisher
from app.web import chat

chat_cli = AppGroup("chat", help="The chat from the command line: post, mint tokens.")


@chat_cli.command("post")
@click.argument("channel")
@click.argument("message")
@click.option("--author", default=None, help="Display name to post as.")
def post(channel, message, author):
    """Store MESSAGE in CHANNEL and broadcast it to the running chat.

    With REDIS_URL set, connected clients of every server process get it at
    once through the message queue; without it, the server finds it in the
    database within CHAT_REPAIR_INTERVAL seconds and delivers it then.
    """
    link = current_app.extensions["chat_redis"]
    posting = chat().messages
    if link:
        queue = QueuePublisher(link, current_app.config["REDIS_CHANNEL"])
        posting.publish = queue.message
    try:
        stored = posting.post(channel, message, author)
    except ChatError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None
    click.echo(f"posted #{stored['seq']} to {stored['channel']}")
    if not link:
        click.echo(
            "REDIS_URL is not set: the server delivers it from the database"
            " within CHAT_REPAIR_INTERVAL"
        )
    elif not link.up:
        click.echo("Redis did not answer: the servers deliver it from the database")


@chat_cli.command("token")
@click.argument("sub")
@click.option("--name", default=None, help="Display name (default: SUB).")
@click.option(
    "--channels",
    default="",
    help="Private channels granted, comma-separated: names or prefixes ending in *.",
)
@click.option(
    "--role", type=click.Choice(["moderator"]), default=None, help="A moderator."
)
@click.option(
    "--ttl",
    type=click.IntRange(1, 366 * 86400),
    default=3600,
    show_default=True,
    help="Seconds until it expires.",
)
def token(sub, name, channels, role, ttl):
    """Print a token for SUB, signed with CHAT_TOKEN_SECRET, as a host site
    would mint it for its signed-in person."""
    grants = [grant.strip() for grant in channels.split(",") if grant.strip()]
    try:
        click.echo(chat().tokens.mint(sub, name, grants, role, ttl))
    except (ChatError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
