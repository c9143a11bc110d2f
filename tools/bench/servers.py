"""How each server is started: ServerDef and the servers of the single, master and tls suites."""

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
        (*UVICORN_ARGV, "--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
        needs="{venv}/bin/uvicorn",
        peer=True,
        https=True,
    ),
    # ALPN h2 and http/1.1 (hypercorn's defaults)
    H2_BASELINE: ServerDef(
        (*HYPERCORN_ARGV, *CERT_ARGS), needs="{venv}/bin/hypercorn", peer=True, https=True
    ),
}
