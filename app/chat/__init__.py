"""What a channel chat is: its rules, its tables, and the services that post
messages, read history, list channels, track presence and limit rates.

Nothing here knows of requests or sockets; committed messages reach the
room through the broadcaster (app.realtime.broadcaster).
"""
