"""What a channel chat is: its rules, its tables, and the services that post
messages, read history, list channels, track presence, limit rates and
carry a connection through its channels.

Nothing here knows of requests or sockets, nor imports the layers above:
each service is handed what it works with (the channel rooms of
app.realtime.rooms, presence's store, the rate limits) when the app is
built, and committed messages reach the rooms through what it was handed.
"""
