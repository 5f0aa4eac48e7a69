"""The library versions the wire and realtime packages were written against.

Both replace private or undocumented parts of these libraries (the "Library
internals" table of docs/internals.md lists each). A release that changes one
of those parts could break the chat, or only slow it down, without any test
of the library's own failing; so the app refuses to start on any other
version until the overrides have been checked against it and this table
updated (docs/internals.md's upgrade checklist says how).
"""

from importlib.metadata import PackageNotFoundError, version

WRITTEN_AGAINST = {
    "python-engineio": "4.15.1",
    "python-socketio": "5.18.1",
    "Flask-SocketIO": "5.7.0",
    # realtime/namespace.py reads the active app context from flask.globals
    "Flask": "3.1.3",
    "gevent-websocket": "0.10.1",
    "gevent": "26.9.0",
    # gunicorn.conf.py's worker sets the handler of gevent-websocket's worker
    "gunicorn": "27.0.1",
}


def installed(package):
    """The installed version of `package`, or None."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check(expected=WRITTEN_AGAINST):
    """Raise RuntimeError naming every package whose version is not the one
    the chat was written against."""
    wrong = {
        package: installed(package)
        for package, wanted in expected.items()
        if installed(package) != wanted
    }
    if wrong:
        found = ", ".join(
            f"{package} {found or 'missing'} (written against {expected[package]})"
            for package, found in wrong.items()
        )
        raise RuntimeError(
            "the chat replaces internals of these libraries and was not checked "
            f"against the versions installed: {found}. Install the versions in "
            "constraints.txt, or check app/wire and app/realtime against the new "
            "ones and update app/wire/versions.py"
        )
