"""Socket.IO: the chat's namespace (the events' door), the channel rooms the
services are handed (app.realtime.rooms), and the managers that deliver
messages to every member of a room, in order, once, repairing gaps from the
database."""
