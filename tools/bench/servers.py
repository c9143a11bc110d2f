"""How each server is started: ServerDef and the servers of the single, master, tls and apps
suites."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # never anything else
BASELINE = "uvicorn-h11"


ASGI_APP = "tools.peers.asgi_hello:app"
KEEPALIVE_S = "300"  # peers' idle timeout (default 5 s) so idle-memory sockets stay open


@dataclass(frozen=True)
class ServerDef:
    """How to start one server; argv templates use {python} {venv} {repo} {host} {port}."""

    argv: tuple[str, ...]
    needs: str  # file that must exist, else the server is skipped (not an error)
    peer: bool = False  # installed in the peers venv
    pythonpath: bool = False  # put the repo on PYTHONPATH (prefork is not pip-installed)
    workers: int = 1  # processes that serve requests
    counts: bool = False  # the app is tools/peers/work.py's: /burn, /pid, per-process counts
    https: bool = False  # serves TLS only: the readiness probe is an HTTPS GET (not verified)
    baseline: str | None = None  # the server its ratios are against, when not the suite's
    unpinned: bool = False  # runs on --mp-server-cpus (both cores), as the master suite's do
    debian: tuple[str, ...] = ()  # Debian packages it needs: apt-get installs the missing ones
    # (the argv template of a help command, an option its output must list): a server whose
    # program lacks the option is skipped, as one whose `needs` file is missing
    needs_option: tuple[tuple[str, ...], str] | None = None

    def render(self, **values: str) -> list[str]:
        return [part.format(**values) for part in self.argv]


SERVERS: dict[str, ServerDef] = {
    "prefork": ServerDef(
        ("{python}", "examples/hello.py", "--host", "{host}", "--port", "{port}", "--quiet"),
        needs="{repo}/examples/hello.py",
        pythonpath=True,
    ),
    "uvicorn-h11": ServerDef(
        (
            "{venv}/bin/uvicorn",
            "--http",
            "h11",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            KEEPALIVE_S,
            "--app-dir",
            "{repo}",
            ASGI_APP,
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        needs="{venv}/bin/uvicorn",
        peer=True,
    ),
    "hypercorn": ServerDef(  # --workers 0 serves in-process (--workers 1 forks a worker)
        (
            "{venv}/bin/hypercorn",
            "--bind",
            "{host}:{port}",
            "--log-level",
            "warning",
            "--workers",
            "0",
            "--keep-alive",
            KEEPALIVE_S,
            ASGI_APP,
        ),
        needs="{venv}/bin/hypercorn",
        peer=True,
    ),
}


# --suite master: multi-process servers, 2 workers each ------------------------------------------

WORKERS = "2"
MASTER_BASELINE = "uvicorn-w2"


SHARED_ACCEPT = "gunicorn-asgi-w2"  # the skewed load's reference: blocked workers stop accepting
ROUND_ROBIN = "prefork-rr-w2"
BALANCED = "prefork-w2"
PREFORK_ARGV = ("{python}", "-m", "prefork", "--workers", WORKERS, "--bind", "{host}:{port}")
PREFORK_APP = "tools/peers/prefork_hello.py:onstream"
GUNICORN_ARGV = ("{venv}/bin/gunicorn", "-w", WORKERS, "--bind", "{host}:{port}")
GUNICORN_TAIL = ("--log-level", "warning", "--chdir", "{repo}")


MASTER_SERVERS: dict[str, ServerDef] = {
    BALANCED: ServerDef(
        (*PREFORK_ARGV, "--log-level", "warning", PREFORK_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    ROUND_ROBIN: ServerDef(
        (*PREFORK_ARGV, "--dispatch", "round-robin", "--log-level", "warning", PREFORK_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    # The example as shipped: it prints a log line per request (to the row's log file). It has
    # no /burn or /pid, so only the keep-alive and close rows.
    "prefork-example-w2": ServerDef(
        (*PREFORK_ARGV, "--log-level", "warning", "examples/hello.py:reply"),
        needs="{repo}/examples/hello.py",
        pythonpath=True,
        workers=2,
    ),
    MASTER_BASELINE: ServerDef(
        (
            "{venv}/bin/uvicorn",
            "--workers",
            WORKERS,
            "--http",
            "h11",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            "{repo}",
            "tools.peers.asgi_routed:app",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        needs="{venv}/bin/uvicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    "gunicorn-gthread-w2": ServerDef(
        (
            *GUNICORN_ARGV,
            "-k",
            "gthread",
            "--threads",
            "4",
            *GUNICORN_TAIL,
            "tools.peers.wsgi_hello:app",
        ),
        needs="{venv}/bin/gunicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    # gunicorn's own asyncio ASGI worker (gunicorn/workers/gasgi.py), on the shared socket
    SHARED_ACCEPT: ServerDef(
        (
            *GUNICORN_ARGV,
            "-k",
            "asgi",
            "--asgi-loop",
            "asyncio",
            *GUNICORN_TAIL,
            "tools.peers.asgi_routed:app",
        ),
        needs="{venv}/bin/gunicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
}
# A gunicorn without its own asgi worker: uvicorn's worker class, also a shared accept socket.
SHARED_ACCEPT_FALLBACK = ServerDef(
    (
        *GUNICORN_ARGV,
        "-k",
        "uvicorn.workers.UvicornWorker",
        *GUNICORN_TAIL,
        "tools.peers.asgi_routed:app",
    ),
    needs="{venv}/bin/gunicorn",
    peer=True,
    pythonpath=True,
    workers=2,
    counts=True,
)


# --suite tls: HTTP/2 (h2c, h2 over TLS) and HTTPS HTTP/1.1, one process per server ---------------

H2C_BASELINE = "hypercorn-h2c"
H2_BASELINE = "hypercorn-tls"
TLS_BASELINE = "uvicorn-h11-tls"
PREFORK_SERVE = ("{python}", "tools/peers/prefork_serve.py", "--host", "{host}", "--port", "{port}")
CERT_ARGS = ("--certfile", "{certfile}", "--keyfile", "{keyfile}")  # prefork's and hypercorn's
UVICORN_CERT_ARGS = ("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}")
# no limit on requests per connection (hypercorn's default, 1000, ends h2load's connections)
HYPERCORN_ARGV = (*SERVERS["hypercorn"].argv[:-1], "-c", "tools/peers/hypercorn.toml", ASGI_APP)
UVICORN_ARGV = SERVERS["uvicorn-h11"].argv

TLS_SERVERS: dict[str, ServerDef] = {
    # tls=False, version=None: HTTP/1 and HTTP/2 prior knowledge on one plaintext port
    "prefork-h2c": ServerDef(
        (*PREFORK_SERVE, "--tls", "false"),
        needs="{repo}/tools/peers/prefork_serve.py",
        pythonpath=True,
    ),
    # hypercorn sniffs the HTTP/2 preface on plain TCP (h2c prior knowledge)
    H2C_BASELINE: ServerDef(HYPERCORN_ARGV, needs="{venv}/bin/hypercorn", peer=True),
    # tls=True, version=None, the bench's certificate; ALPN h2, http/1.1, http/1.0
    "prefork-tls": ServerDef(
        (*PREFORK_SERVE, "--tls", "true", *CERT_ARGS),
        needs="{repo}/tools/peers/prefork_serve.py",
        pythonpath=True,
        https=True,
    ),
    TLS_BASELINE: ServerDef(
        (*UVICORN_ARGV, *UVICORN_CERT_ARGS),
        needs="{venv}/bin/uvicorn",
        peer=True,
        https=True,
    ),
    # ALPN h2 and http/1.1 (hypercorn's defaults)
    H2_BASELINE: ServerDef(
        (*HYPERCORN_ARGV, *CERT_ARGS), needs="{venv}/bin/hypercorn", peer=True, https=True
    ),
}


# --suite apps: application interfaces (issue 10 item 7), one worker, master and worker pinned ----
# together on --server-cpu. The same app module on prefork and on the peer it is compared with.

FASTAPI_BASELINE = "uvicorn-h11-fastapi"
FLASK_BASELINE = "gunicorn-gthread-flask"
FASTAPI_APP = "tools.peers.fastapi_hello:app"
FLASK_APP = "tools.peers.flask_hello:app"
PREFORK_W1 = (
    "{python}",
    "-m",
    "prefork",
    "--workers",
    "1",
    "--bind",
    "{host}:{port}",
    "--log-level",
    "warning",
    "--intra-stream-timeout",  # the idle keep-alive timeout, as the peers' KEEPALIVE_S
    KEEPALIVE_S,
)
# The raw stream API hello: tools/peers/prefork_hello.py answers as examples/hello.py does
# (same head and body) but logs nothing; examples/hello.py:reply prints and flushes a line per
# request, which would be measured instead of the API.
STREAM_APP = "tools/peers/prefork_hello.py:onstream"


def _apps_prefork(*tail: str, baseline: str | None = None) -> ServerDef:
    return ServerDef(
        (*PREFORK_W1, *tail),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        baseline=baseline,
    )


APPS_SERVERS: dict[str, ServerDef] = {
    "prefork-stream": _apps_prefork(STREAM_APP),
    "prefork-asgi": _apps_prefork("--interface", "asgi", ASGI_APP),
    BASELINE: SERVERS[BASELINE],
    "hypercorn": SERVERS["hypercorn"],
    "prefork-fastapi": _apps_prefork("--interface", "asgi", FASTAPI_APP, baseline=FASTAPI_BASELINE),
    FASTAPI_BASELINE: ServerDef(
        tuple(FASTAPI_APP if part == ASGI_APP else part for part in SERVERS[BASELINE].argv),
        needs="{venv}/bin/uvicorn",
        peer=True,
        baseline=FASTAPI_BASELINE,
    ),
    "prefork-flask": _apps_prefork(
        "--interface", "wsgi", "--threads", "4", FLASK_APP, baseline=FLASK_BASELINE
    ),
    FLASK_BASELINE: ServerDef(
        (
            "{venv}/bin/gunicorn",
            "-w",
            "1",
            "-k",
            "gthread",
            "--threads",
            "4",
            "--bind",
            "{host}:{port}",
            "--keep-alive",  # default 2 s: idle-memory's connections would be closed
            KEEPALIVE_S,
            "--worker-connections",  # default 1000: idle-memory's --idle 1000 plus the probe
            "100000",
            *GUNICORN_TAIL,
            FLASK_APP,
        ),
        needs="{venv}/bin/gunicorn",
        peer=True,
        baseline=FLASK_BASELINE,
    ),
}
