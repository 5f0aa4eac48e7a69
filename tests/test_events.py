"""Socket.IO events read the short way (app.wire.events), over a real
WebSocket: answered as python-socketio answers them, and everything of
another shape handed to python-socketio."""

import pytest
import websocket


@pytest.fixture
def raw(start_thread_server):
    server = start_thread_server()
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    connection = websocket.create_connection(url, timeout=10)
    assert connection.recv().startswith("0")
    connection.send("40")
    assert connection.recv().startswith("40")
    yield connection
    connection.close()


def next_packet(raw, prefix):
    """The next frame starting with `prefix`, past pings and others."""
    while not (frame := raw.recv()).startswith(prefix):
        pass
    return frame


def test_an_event_is_acked_with_its_id(raw):
    raw.send('4217["leave",{"channel":"lobby"}]')

    assert next_packet(raw, "43") == '4317[{"ok":true}]'


def test_an_event_without_an_id_is_not_acked(raw):
    raw.send('42["leave",{"channel":"lobby"}]')
    raw.send('421["leave",{"channel":"lobby"}]')

    assert next_packet(raw, "43") == '431[{"ok":true}]'  # only the second


def test_a_refused_event_is_acked_and_told_as_before(raw):
    raw.send('425["join",{"channel":"two words"}]')

    assert next_packet(raw, "42").startswith('42["chat_error",{"event":"join"')
    assert next_packet(raw, "43").startswith('435[{"ok":false,"code":"invalid_channel"')


@pytest.mark.parametrize(
    "packet",
    [
        '42/,9["leave",{"channel":"lobby"}]',  # the namespace written out
        '4209["leave",{"channel":"lobby"}]',  # a leading zero
    ],
)
def test_other_shapes_are_answered_alike(raw, packet):
    raw.send(packet)

    assert next_packet(raw, "43") in ('439[{"ok":true}]', '43/,9[{"ok":true}]')


@pytest.mark.parametrize(
    "packet",
    ['42["connect"]', '427["leave"', "42[1,2]", "42[]", '42{"a":1}'],
)
def test_an_event_that_breaks_the_protocol_closes_the_connection(raw, packet):
    raw.send(packet)

    raw.settimeout(5)
    while True:
        frame = raw.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            break
