"""The servers of --suite peers (issue 13 item 7): prefork beside uvicorn (h11, and httptools
with uvloop), gunicorn's asgi worker, granian and lua-http, the seed whose API prefork follows.

One core each: every process of a server (prefork's master and worker, gunicorn's and granian's
main process and worker) is pinned to --server-cpu; the -w2 rows run two workers on
--mp-server-cpus. Every server answers the same hello: 200 text/plain "Hello world!\\n" with a
content-length (prefork through the raw stream API, as lua-http's example does; the Python
peers through tools/peers/asgi_hello.py; lua-http through tools/hello.lua).
"""

from __future__ import annotations

from tools.bench.servers import (
    ASGI_APP,
    BASELINE,
    CERT_ARGS,
    KEEPALIVE_S,
    PREFORK_SERVE,
    SERVERS,
    STREAM_APP,
    UVICORN_CERT_ARGS,
    ServerDef,
)

FAST = "uvicorn-fast"  # uvicorn --http httptools --loop uvloop: the suite's baseline
FAST_W2 = "uvicorn-fast-w2"
LUA = "lua-http"
PURE = "prefork-pure"
# Lua 5.2: the newest Lua for which Debian 12 packages every module lua-http needs (its 5.3
# build lacks lua-fifo and lua-basexx). LuaJIT (lua-http-jit) is about twice as fast.
LUA_BIN, LUA_SHARE = "/usr/bin/lua5.2", "/usr/share/lua/5.2/http/server.lua"
LUAJIT_BIN, LUAJIT_SHARE = "/usr/bin/luajit", "/usr/share/lua/5.1/http/server.lua"

PREFORK = (
    "{python}",
    "-m",
    "prefork",
    "--bind",
    "{host}:{port}",
    "--log-level",
    "warning",
    "--intra-stream-timeout",  # the idle keep-alive timeout, as the peers' KEEPALIVE_S
    KEEPALIVE_S,
)
# "pure": the asyncio loop and the h11 parser, whatever is installed. An older prefork has no
# --loop (nor --http): prefork-pure is then skipped and prefork runs its only path, this one.
PURE_ARGS = ("--loop", "asyncio", "--http", "h11")
HAS_LOOP = (("{python}", "-m", "prefork", "--help"), "--loop")
UVICORN_FAST = tuple(
    {"h11": "httptools", "asyncio": "uvloop"}.get(part, part) for part in SERVERS[BASELINE].argv
)
GUNICORN_ASGI = (
    "{venv}/bin/gunicorn",
    "-k",
    "asgi",  # gunicorn's own asyncio worker; --asgi-loop auto: uvloop, installed with uvicorn
    "--bind",
    "{host}:{port}",
    "--keep-alive",  # default 2 s: idle-memory's connections would be closed
    KEEPALIVE_S,
    "--worker-connections",  # default 1000: idle-memory's --idle 1000 plus the probe
    "100000",
    "--log-level",
    "warning",
    "--chdir",
    "{repo}",
)
GUNICORN_H2C = ("--http-protocols", "h2,h1", "--http2-cleartext", "both")
GRANIAN = (
    "{venv}/bin/granian",
    "--interface",
    "asgi",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--log-level",
    "warning",
    "--working-dir",
    "{repo}",
)


def _prefork(*args: str, workers: int = 1) -> ServerDef:
    return ServerDef(
        (*PREFORK, "--workers", str(workers), *args, STREAM_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        workers=workers,
        unpinned=workers > 1,
        needs_option=HAS_LOOP if args else None,
    )


def _peer(argv: tuple[str, ...], workers: int = 1) -> ServerDef:
    return ServerDef(argv, needs=argv[0], peer=True, workers=workers, unpinned=workers > 1)


def _lua(binary: str, share: str, package: str, workers: int = 1, tls: bool = False) -> ServerDef:
    one = f"{binary} tools/hello.lua {{host}} {{port}}"
    if workers == 1:
        argv: tuple[str, ...] = (binary, "tools/hello.lua", "{host}", "{port}")
        argv += ("tls",) if tls else ()
    else:  # lua-http has no workers: copies of the server share the port with SO_REUSEPORT
        argv = ("sh", "-c", f"{one} reuseport & " * (workers - 1) + f"exec {one} reuseport")
    return ServerDef(
        argv,
        needs=share,
        debian=("lua-http", package),
        workers=workers,
        unpinned=workers > 1,
        https=tls,
    )


PEERS_SERVERS: dict[str, ServerDef] = {
    "prefork": _prefork(),
    PURE: _prefork(*PURE_ARGS),
    BASELINE: SERVERS[BASELINE],  # uvicorn --http h11 --loop asyncio
    FAST: _peer(UVICORN_FAST),
    "gunicorn-asgi": _peer((*GUNICORN_ASGI, "-w", "1", ASGI_APP)),
    "granian": _peer((*GRANIAN, "--workers", "1", ASGI_APP)),
    LUA: _lua(LUA_BIN, LUA_SHARE, "lua5.2"),
    # h2c: gunicorn serves it only when asked (it then sniffs every connection for the preface,
    # as prefork, granian and lua-http always do), so it is a server of its own
    "gunicorn-asgi-h2c": _peer((*GUNICORN_ASGI, "-w", "1", *GUNICORN_H2C, ASGI_APP)),
    # two workers, unpinned
    "prefork-w2": _prefork(workers=2),
    "prefork-pure-w2": _prefork(*PURE_ARGS, workers=2),
    "uvicorn-h11-w2": _peer((*SERVERS[BASELINE].argv, "--workers", "2"), workers=2),
    FAST_W2: _peer((*UVICORN_FAST, "--workers", "2"), workers=2),
    "gunicorn-asgi-w2": _peer((*GUNICORN_ASGI, "-w", "2", ASGI_APP), workers=2),
    "granian-w2": _peer((*GRANIAN, "--workers", "2", ASGI_APP), workers=2),
    "lua-http-w2": _lua(LUA_BIN, LUA_SHARE, "lua5.2", workers=2),
    # not run unless named
    "prefork-asgi": ServerDef(
        (*PREFORK, "--workers", "1", "--interface", "asgi", ASGI_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
    ),
    "lua-http-jit": _lua(LUAJIT_BIN, LUAJIT_SHARE, "luajit"),
}
EXTRA = ("prefork-asgi", "lua-http-jit")
ONE_CORE = ("prefork", PURE, BASELINE, FAST, "gunicorn-asgi", "granian", LUA, *EXTRA)
H2C = ("prefork", PURE, "gunicorn-asgi-h2c", "granian", LUA, *EXTRA)
TWO_WORKERS = tuple(name for name in PEERS_SERVERS if name.endswith("-w2"))

# --suite tls: the peers of issue 13 item 6 beside the suite's own (tools/bench/servers.py)
TLS_PEERS: dict[str, ServerDef] = {
    "prefork-tls-fast": ServerDef(
        (*PREFORK_SERVE, "--tls", "true", *CERT_ARGS, "--loop", "uvloop"),
        needs="{repo}/tools/peers/prefork_serve.py",
        pythonpath=True,
        https=True,
    ),
    "uvicorn-fast-tls": ServerDef(
        (*UVICORN_FAST, *UVICORN_CERT_ARGS),
        needs="{venv}/bin/uvicorn",
        peer=True,
        https=True,
    ),
    # its own self-signed RSA-2048 certificate (lua-http's default): fine for the keep-alive
    # and h2 rows, where handshakes are few; not run for https-close
    "lua-http-tls": _lua(LUA_BIN, LUA_SHARE, "lua5.2", tls=True),
}
