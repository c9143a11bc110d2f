"""ASGI lifespan (prefork.asgi.Lifespan): startup, shutdown, state, failures, unsupported apps;
then a server of one's own with lifespan (no master), and a master whose workers run it.

The unit tests run on a fresh loop (``run_async``, bounded); the applications record the
messages they get. Nothing sleeps: a timeout test waits on an application that never answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

import prefork.asgi
import prefork.server
from prefork.asgi import Lifespan, LifespanFailure
from tests.conftest import run_async
from tests.helpers import wait_until
from tests.master_helpers import APPS, clean_env, get

TIMEOUT = 10.0


def lifespan_app(events: list[Any], *, startup: str = "complete", shutdown: str = "complete"):
    """Answers startup and shutdown as told (``complete``, ``failed``, ``raise``, ``return``,
    ``hang``); ``state["ready"]`` is set at startup."""

    async def answer(send: Any, event: str, how: str) -> None:
        if how == "raise":
            raise RuntimeError(f"{event} exploded")
        if how == "hang":
            await asyncio.Event().wait()
        message: dict[str, Any] = {"type": f"lifespan.{event}.{how}"}
        if how == "failed":
            message["message"] = f"no {event} today"
        await send(message)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        events.append(("scope", scope["asgi"]))
        message = await receive()
        events.append(message["type"])
        if startup == "return":
            return
        scope["state"]["ready"] = True
        await answer(send, "startup", startup)
        message = await receive()
        events.append(message["type"])
        await answer(send, "shutdown", shutdown)

    return app


def test_startup_shutdown_and_state() -> None:
    events: list[Any] = []
    lifespan = Lifespan(lifespan_app(events))

    async def main() -> None:
        await lifespan.startup()
        assert lifespan.supported and lifespan.state == {"ready": True}
        assert events == [("scope", {"version": "3.0", "spec_version": "2.0"}), "lifespan.startup"]
        await lifespan.shutdown()

    run_async(main())
    assert events[2:] == ["lifespan.shutdown"]


def test_startup_failed_raises_with_the_app_message() -> None:
    lifespan = Lifespan(lifespan_app([], startup="failed"), "on")
    with pytest.raises(LifespanFailure, match="application startup failed: no startup today"):
        run_async(lifespan.startup())


def test_shutdown_failed_raises() -> None:
    lifespan = Lifespan(lifespan_app([], shutdown="failed"))

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    with pytest.raises(LifespanFailure, match="no shutdown today"):
        run_async(main())


@pytest.mark.parametrize("how", ["raise", "return"])
def test_auto_takes_an_app_that_refuses_as_unsupported(how: str, caplog) -> None:
    events: list[Any] = []
    lifespan = Lifespan(lifespan_app(events, startup=how))

    async def main() -> None:
        with caplog.at_level(logging.INFO, "prefork.asgi"):
            await lifespan.startup()
        assert not lifespan.supported
        await lifespan.shutdown()  # nothing to do

    run_async(main())
    assert "ASGI 'lifespan' protocol appears unsupported" in caplog.text
    assert events[1:] == ["lifespan.startup"]  # no shutdown sent


def test_on_makes_an_exception_an_error() -> None:
    lifespan = Lifespan(lifespan_app([], startup="raise"), "on")
    with pytest.raises(LifespanFailure, match="startup exploded") as info:
        run_async(lifespan.startup())
    assert isinstance(info.value.__cause__, RuntimeError)


def test_an_exception_at_shutdown_is_an_error() -> None:
    lifespan = Lifespan(lifespan_app([], shutdown="raise"))

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    with pytest.raises(LifespanFailure, match="shutdown exploded"):
        run_async(main())


def test_off_never_calls_the_app() -> None:
    events: list[Any] = []
    lifespan = Lifespan(lifespan_app(events), "off")

    async def main() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    run_async(main())
    assert (events, lifespan.supported, lifespan.state) == ([], False, {})


def test_startup_timeout() -> None:
    lifespan = Lifespan(lifespan_app([], startup="hang"))

    async def main() -> None:
        with pytest.raises(LifespanFailure, match=r"did not complete within 0\.05 s"):
            await lifespan.startup(timeout=0.05)
        await lifespan.shutdown(timeout=0.05)  # the app still hangs in startup: same failure

    with pytest.raises(LifespanFailure):
        run_async(main())


def test_misuse() -> None:
    with pytest.raises(ValueError, match="lifespan mode"):
        Lifespan(lifespan_app([]), "sometimes")
    lifespan = Lifespan(lifespan_app([]))

    async def main() -> None:
        await lifespan.startup()
        with pytest.raises(RuntimeError, match="runs once"):
            await lifespan.startup()
        await lifespan.shutdown()

    run_async(main())


def test_an_app_that_raises_after_startup_is_logged(caplog) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        raise RuntimeError("crashed while serving")

    lifespan = Lifespan(app)

    async def main() -> None:
        with caplog.at_level(logging.ERROR, "prefork.asgi"):
            await lifespan.startup()
            await asyncio.sleep(0)  # one loop step: the task's end is reported
        await lifespan.shutdown()  # its lifespan is over: nothing to send

    run_async(main())
    assert "raised after startup" in caplog.text and "crashed while serving" in caplog.text


def test_a_server_of_ones_own_with_lifespan() -> None:
    """Without the master: startup, serve, requests see a copy of the state, shutdown."""
    events: list[Any] = []
    inner = lifespan_app(events)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await inner(scope, receive, send)
            return
        body = json.dumps(scope["state"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main() -> str:
        lifespan = Lifespan(app, "on")
        await lifespan.startup()
        handler = prefork.asgi.onstream(app, state=lifespan.state)
        server = prefork.server.listen(host="127.0.0.1", port=0, tls=False, onstream=handler)
        server.listen()  # bind now: localname() knows the port
        serving = asyncio.ensure_future(server.serve())
        port = server.localname()[2]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/")).text
        server.close()
        await serving
        await lifespan.shutdown()
        return text

    assert json.loads(run_async(main())) == {"ready": True}
    assert events[1:] == ["lifespan.startup", "lifespan.shutdown"]


# -- under the master ---------------------------------------------------------------------------


def test_workers_start_and_stop_the_app(start_master, tmp_path: Path) -> None:
    """Each worker runs startup before it is ready (its requests see the state) and shutdown
    after its last connection when the master stops gracefully."""
    record = tmp_path / "lifespan.log"
    master = start_master(
        None,
        "--lifespan",
        "on",
        f"{APPS / 'asgi_lifespan.py'}:app",
        env=clean_env(ASGI_LIFESPAN_LOG=str(record)),
    )
    pids = master.wait_workers(2)
    status, body = get(master.port, "/")
    assert status == 200
    state = json.loads(body)
    assert state["started_by"] in pids and state["copy"] is True
    master.signal(signal.SIGTERM)
    assert master.wait(TIMEOUT * 2) == 0
    lines = record.read_text().split()
    assert sorted(lines) == sorted([f"startup:{p}" for p in pids] + [f"shutdown:{p}" for p in pids])


def test_a_failing_startup_keeps_the_master_from_serving(start_master) -> None:
    master = start_master(
        None,
        "--lifespan",
        "on",
        f"{APPS / 'asgi_lifespan.py'}:failing",
        wait=False,
    )
    assert master.wait(TIMEOUT * 2) != 0
    assert "the database is not there" in master.stderr() + master.log()


def test_a_reload_whose_startup_fails_keeps_the_old_generation(start_master, tmp_path) -> None:
    """HUP with a startup that fails: the new workers never become ready, the failure is
    logged, and the old worker serves on; once the cause is gone, the next HUP takes."""
    flag = tmp_path / "fail"
    master = start_master(
        None,
        "--lifespan",
        "on",
        f"{APPS / 'asgi_lifespan.py'}:app",
        workers=1,
        env=clean_env(ASGI_LIFESPAN_FAIL_IF=str(flag)),
    )
    (old,) = master.wait_workers(1)
    flag.write_text("")
    master.signal(signal.SIGHUP)
    wait_until(
        lambda: "reload: generation 1 failed" in master.log(),
        timeout=TIMEOUT * 3,
        what="the failed reload",
    )
    assert "no database 7d1c" in master.log()
    assert master.wait_workers(1) == [old]
    status, body = get(master.port, "/")
    assert (status, json.loads(body)["started_by"]) == (200, old)
    flag.unlink()
    master.signal(signal.SIGHUP)
    wait_until(
        lambda: old not in master.workers() and len(master.ready_workers()) == 1,
        timeout=TIMEOUT * 3,
        what="the next reload",
    )
    status, body = get(master.port, "/")
    assert status == 200 and json.loads(body)["started_by"] != old
