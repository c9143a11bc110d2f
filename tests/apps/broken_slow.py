"""Test app that fails to import after 1.5 s: every worker fails at about the same time, so a
test can stop the master (SIGSTOP) until all of them have exited."""

import time

time.sleep(1.5)

import prefork_no_such_module_for_tests  # noqa: E402, F401


async def onstream(server, stream):
    raise AssertionError("never loaded")
