"""The socket.io Admin UI's page, /admin/: the built page of the npm package
`@socket.io/admin-ui`, served from node_modules with the fonts it would
otherwise load from other hosts (its icons and Roboto, from their own npm
packages). It talks to the `/admin` namespace (app.realtime.admin); both
are off (404) without CHAT_ADMIN_PASSWORD, and refused (403) outside the
networks the namespace admits.
"""

import re
from functools import cache

from flask import Blueprint, abort, current_app, request, send_from_directory

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The built page's stylesheets from other hosts, and what replaces each,
# by what the link names: Roboto's weights and the icon font's stylesheet,
# as paths below /admin/.
_REMOTE_STYLESHEET = re.compile(r'<link rel="?stylesheet"? href="?https?://[^">]+"?>')
_LOCAL_STYLESHEETS = {
    "family=Roboto": [f"fonts/roboto/{weight}.css" for weight in (300, 400, 500, 700)],
    "materialdesignicons": ["fonts/icons/css/materialdesignicons.min.css"],
}
# Vue and Vuetify write style attributes and a <style> of the theme's
# colours; chart.js one of its own. Everything else is this server's.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@bp.before_request
def require_operator():
    """Nothing here without CHAT_ADMIN_PASSWORD; and only for the networks
    its namespace admits (loopback and CHAT_ADMIN_ALLOW, not through a
    proxy)."""
    if not current_app.config["CHAT_ADMIN_PASSWORD"]:
        abort(404)
    if not current_app.extensions["chat_admin"].reachable(request.environ):
        abort(403, "the Admin UI is open to this process's operators only")


@bp.get("/")
def page():
    """The Admin UI, its stylesheets from other hosts replaced by ours."""
    answer = current_app.response_class(
        _page(str(current_app.config["ADMIN_UI_DIR"])), mimetype="text/html"
    )
    answer.headers["Content-Security-Policy"] = POLICY
    answer.headers["Cache-Control"] = "no-cache"
    return answer


@bp.get("/fonts/roboto/<path:name>")
def roboto(name):
    return _file(current_app.config["ADMIN_FONT_DIR"], name)


@bp.get("/fonts/icons/<path:name>")
def icons(name):
    return _file(current_app.config["ADMIN_ICONS_DIR"], name)


@bp.get("/<path:name>")
def asset(name):
    """The page's scripts, styles and images (names carry their hash)."""
    return _file(current_app.config["ADMIN_UI_DIR"], name)


def _file(directory, name):
    answer = send_from_directory(directory, name, max_age=86400)
    answer.headers["Content-Security-Policy"] = POLICY
    return answer


@cache
def _page(directory):
    with open(f"{directory}/index.html", encoding="utf-8") as built:
        return _REMOTE_STYLESHEET.sub(_local_stylesheets, built.read())


def _local_stylesheets(link):
    """The links to this server's copies of a remote stylesheet; nothing
    for one we have no copy of (the page then lacks it, rather than
    loading it from another host)."""
    for names, paths in _LOCAL_STYLESHEETS.items():
        if names in link.group(0):
            return "".join(f'<link rel="stylesheet" href="{path}">' for path in paths)
    return ""
