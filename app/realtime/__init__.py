"""Socket.IO: the chat's namespace (the events' door), the broadcaster that
services hand committed messages to, and the managers that deliver them to
every member of a room, in order, once, repairing gaps from the database."""
