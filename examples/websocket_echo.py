"""A WebSocket echo server: every message sent to /ws comes back; / serves a page that uses it.

Usage: python examples/websocket_echo.py [--host HOST] [--port PORT]   (port 0: any free port)

Then open http://localhost:PORT/ in a browser, or from a shell:
    python -m websockets ws://localhost:PORT/ws
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import prefork.server
from prefork import websocket
from prefork.headers import Headers

PAGE = b"""<!doctype html>
<title>prefork WebSocket echo</title>
<p>Messages typed here go to <code>/ws</code> and come back.</p>
<form id="f"><input id="m" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (line) => document.getElementById("log").textContent += line + "\\n";
const ws = new WebSocket(location.href.replace(/^http/, "ws") + "ws", ["echo"]);
ws.onopen = () => log("open, subprotocol: " + (ws.protocol || "none"));
ws.onmessage = (e) => log("< " + e.data);
ws.onclose = (e) => log("closed: " + e.code + " " + e.reason);
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById("m");
  ws.send(m.value); log("> " + m.value); m.value = "";
};
</script>
"""


async def onstream(server, stream):
    req = await stream.get_headers()
    if req.get(":path") == "/ws":
        await echo(stream, req)
        return
    res = Headers()
    res.append(":status", "200")
    res.append("content-type", "text/html; charset=utf-8")
    res.append("content-length", str(len(PAGE)))
    await stream.write_headers(res, req.get(":method") == "HEAD")
    if req.get(":method") != "HEAD":
        await stream.write_chunk(PAGE, True)


async def echo(stream, req):
    try:
        ws = await websocket.new_from_stream(stream, req, max_message_size=1 << 20)
    except websocket.HandshakeError as exc:  # already answered with 400 or 426
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        return
    async with ws:  # closes with 1000 at the end of the block (1011 if it raises)
        await ws.accept(protocols=["echo"])
        async for message in ws:  # ends when the client closes or goes away
            await ws.send(message)
    print(f"closed: {ws.close_code} {ws.close_reason}", file=sys.stderr, flush=True)


def onerror(server, context, op, err, errno):
    print(f"{op} on {context!r} failed: {err!r}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    server = prefork.server.listen(
        host=args.host, port=args.port, tls=False, onstream=onstream, onerror=onerror
    )
    server.listen()  # bind now, so that localname() knows the port
    print(f"Now listening on port {server.localname()[2]}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.loop()


if __name__ == "__main__":
    main()
