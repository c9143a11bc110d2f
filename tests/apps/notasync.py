"""Test app whose onstream is a plain function, not ``async def``."""


def onstream(server, stream):
    raise AssertionError("never called")
