"""The doors people and programs use over HTTP: the pages, the JSON API, the
`flask chat` commands, and the cross-site and header rules they share."""

from flask import current_app


def chat():
    """The current app's services (app.chat.services.Chat)."""
    return current_app.extensions["chat"]
