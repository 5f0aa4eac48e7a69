"""A connection that ends while its `connect` waits on the database.

A verified person's connect reads their ban from the database; on gevent
that read lets other greenlets run, the connection's end among them.
python-socketio skips the disconnect of a socket still connecting, and would
then register it as connected for good: its rooms and the person's entries
kept until a restart. The chat refuses it instead.

The wait is made real on `make serve` with PostgreSQL: the test locks the
bans table, so the read waits until the lock is released, while the client
vanishes and the server's pings close its session.
"""

import json

import psycopg
import pytest
import socketio
import websocket
from servers import eventually
from test_admin import ADMIN, PASSWORD, Admin, listed
from test_metrics import scrape, value
from tokens import SECRET, token


def connections(server):
    """The Engine.IO connections the server holds (its /metrics)."""
    return value(scrape(server.url), "chat_connections")


def waiting_on_a_lock(connection):
    """Whether another session of the database waits on a lock."""
    return connection.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


@pytest.fixture
def server(start_server, postgres_url):
    return start_server(
        production=True,
        DATABASE_URL=postgres_url,
        CHAT_TOKEN_SECRET=SECRET,
        CHAT_ADMIN_PASSWORD=PASSWORD,
        PING_INTERVAL="1",  # a vanished client's session closes within 2 s
        PING_TIMEOUT="1",
    )


def connect_and_vanish(server, sub):
    """Open a WebSocket, send Socket.IO's CONNECT with a token for `sub`,
    and drop the TCP connection without a word."""
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    connection = websocket.create_connection(url, timeout=5)
    assert connection.recv().startswith("0")  # Engine.IO's open
    connection.send("40" + json.dumps({"token": token(sub)}))
    connection.shutdown()


def test_a_connection_gone_while_its_connect_waited_is_not_kept(server, postgres_url):
    with psycopg.connect(postgres_url) as lock:
        lock.execute("LOCK TABLE bans IN ACCESS EXCLUSIVE MODE")
        connect_and_vanish(server, "leaving")
        eventually(lambda: waiting_on_a_lock(lock), "its ban check waiting")
        eventually(lambda: connections(server) == 0, "its session's end")
        lock.rollback()  # the connect's read goes on

    staying = socketio.Client(reconnection=False)
    staying.connect(server.url, auth={"token": token("staying")}, wait_timeout=10)
    try:  # its read came after the first's
        admin = Admin(server.url, ADMIN)
        (sockets,) = admin.wait("all_sockets")
        admin.close()
    finally:
        staying.disconnect()

    people = [socket["data"].get("user_id") for socket in listed(sockets).values()]
    assert people == ["staying"]
    assert "Traceback" not in server.log()
