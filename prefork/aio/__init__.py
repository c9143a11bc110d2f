"""Thin asyncio glue: sockets, timers and back-pressure around the sans-I/O protocol code."""
