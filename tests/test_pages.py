"""The pages people open, through the Flask test client."""


def test_index_offers_a_channel_picker(client):
    response = client.get("/")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'action="/chat"' in page
    assert 'name="channel"' in page
    assert "No messages yet" in page


def test_index_lists_active_channels(client):
    client.post("/api/channels/lobby/messages", json={"message": "hi"})

    page = client.get("/").get_data(as_text=True)

    assert 'href="/chat?channel=lobby"' in page
    assert "1 message" in page


def test_channel_page_keeps_the_documents_hooks(client):
    response = client.get("/chat?channel=lobby")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'class="chat-room"' in page
    assert "<form" in page
    assert 'id="messageInput"' in page
    assert 'data-channel="lobby"' in page


def test_channel_page_loads_socketio_from_this_server(client):
    page = client.get("/chat?channel=lobby").get_data(as_text=True)

    assert '<script src="/vendor/socket.io.min.js">' in page
    assert "//cdn" not in page


def test_socketio_client_is_served(client):
    response = client.get("/vendor/socket.io.min.js")

    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"Socket.IO" in response.data[:200]


def test_korean_channel_page(client):
    response = client.get("/chat?channel=한국어")

    assert response.status_code == 200
    assert 'data-channel="한국어"' in response.get_data(as_text=True)


def test_channel_page_without_channel_says_so(client):
    response = client.get("/chat")

    assert response.status_code == 400
    assert "Channel not specified" in response.get_data(as_text=True)


def test_channel_page_with_invalid_channel_explains_and_escapes_it(client):
    response = client.get('/chat?channel="><script>alert(1)</script>')

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "channel may hold only letters" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_channel_page_normalises_the_name(client):
    page = client.get("/chat?channel=\u1100\u1161").get_data(as_text=True)

    assert 'data-channel="가"' in page
