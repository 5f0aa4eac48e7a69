"""`flask chat ...`: the chat from the command line."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.chat.errors import ChatError
from app.realtime.rooms import QueuePublisher
from app.web import chat

chat_cli = AppGroup(
    "chat", help="The chat from the command line: post, moderate, mint tokens."
)


OPERATOR = "cli"  # who the audit log says acted


def _services():
    """The chat's services, publishing to the running servers: through
    Redis when there is one; without it, the servers find what was stored
    in the database within CHAT_REPAIR_INTERVAL."""
    services = chat()
    link = current_app.extensions["chat_redis"]
    if link:
        queue = QueuePublisher(link, current_app.config["REDIS_CHANNEL"])
        services.messages.publish = queue.message
        services.moderation.publish_change = queue.change
        services.bans.command = services.slow_mode.command = queue.command
    return services


def _done(what):
    """Say what was done, and how the running servers learn of it."""
    click.echo(what)
    link = current_app.extensions["chat_redis"]
    if not link:
        click.echo(
            "REDIS_URL is not set: the server finds it in the database"
            " within CHAT_REPAIR_INTERVAL"
        )
    elif not link.up:
        click.echo("Redis did not answer: the servers find it in the database")


def _refused(error):
    return click.ClickException(f"{error.code}: {error.message}")


@chat_cli.command("post")
@click.argument("channel")
@click.argument("message")
@click.option("--author", default=None, help="Display name to post as.")
def post(channel, message, author):
    """Store MESSAGE in CHANNEL and broadcast it to the running chat."""
    try:
        stored = _services().messages.post(channel, message, author)
    except ChatError as error:
        raise _refused(error) from None
    _done(f"posted #{stored['seq']} to {stored['channel']}")


@chat_cli.command("delete")
@click.argument("channel")
@click.argument("seq", type=int)
def delete(channel, seq):
    """Delete message SEQ of CHANNEL: it stays a tombstone."""
    try:
        _services().moderation.delete(None, channel, seq, actor=OPERATOR)
    except ChatError as error:
        raise _refused(error) from None
    _done(f"deleted #{seq} of {channel}")


@chat_cli.command("ban")
@click.argument("sub")
@click.option("--seconds", type=int, default=None, help="How long (default: for good).")
@click.option("--reason", default=None, help="Why, as the person is told.")
def ban(sub, seconds, reason):
    """Ban SUB (a token's sub): their connections close everywhere."""
    try:
        banned = _services().bans.ban(OPERATOR, sub, seconds, reason)
    except ChatError as error:
        raise _refused(error) from None
    _done(f"banned {sub} until {banned['until']}")


@chat_cli.command("unban")
@click.argument("sub")
def unban(sub):
    """End the ban of SUB."""
    try:
        ended = _services().bans.unban(OPERATOR, sub)
    except ChatError as error:
        raise _refused(error) from None
    if not ended:
        raise click.ClickException(f"{sub} is not banned")
    click.echo(f"unbanned {sub}")


@chat_cli.command("slow-mode")
@click.argument("channel")
@click.argument("seconds", type=int)
def slow_mode(channel, seconds):
    """Allow one message per SECONDS per person in CHANNEL (0: off)."""
    try:
        _services().slow_mode.set(OPERATOR, channel, seconds)
    except ChatError as error:
        raise _refused(error) from None
    _done(f"slow mode of {channel}: {seconds} s")


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
