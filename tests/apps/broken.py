"""Test app that cannot be imported: the import error must reach the master's stderr."""

import prefork_no_such_module_for_tests  # noqa: F401


async def onstream(server, stream):
    raise AssertionError("never loaded")
