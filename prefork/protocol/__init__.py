"""Sans-I/O protocol logic: bytes in, events out, bytes to send returned to the caller.

Nothing in this package imports asyncio, socket, os or time: the glue in ``prefork.aio`` owns
sockets, clocks and deadlines.
"""
