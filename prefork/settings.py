"""Every setting of prefork in one table: name, kind, default, flags, TOML key, help, layer.

The table is the single source of:

- the options of ``prefork.server.new()``/``listen()``: their defaults (the fields of
  ``ServerOptions``/``ListenOptions`` in prefork/options.py) and their checks;
- the ``prefork`` command's parser (prefork/cliargs.py) and its ``--config`` TOML loader
  (prefork/config.py), which check every value with the same kinds (prefork/kinds.py);
- docs/settings.md, written by ``tools/settings_doc.py`` (a test fails when it is stale).

The *layer* says who reads a setting: ``server`` (an option of ``new()`` and ``listen()``; the
command hands it to every worker's server), ``new`` or ``listen`` (of that function only),
``master`` (the command and its master process only) or ``both`` (a server option the master
uses too, e.g. ``backlog`` for the sockets it binds).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from prefork.kinds import (
    Bool,
    Choice,
    Function,
    Implementation,
    Instance,
    Int,
    Kind,
    Number,
    Octal,
    Str,
    UrlPath,
)
from prefork.netkinds import Addresses, Family, Peers
from prefork.protocol.trust import DEFAULT as DEFAULT_PEERS
from prefork.protocol.trust import TrustedPeers

SERVER, NEW, LISTEN, MASTER, BOTH = "server", "new", "listen", "master", "both"
LAYERS = {
    SERVER: "`prefork.server.new()` and `listen()`; the command passes it to every worker",
    NEW: "`prefork.server.new()` only",
    LISTEN: "`prefork.server.listen()` only",
    MASTER: "the `prefork` command and its master",
    BOTH: "`prefork.server.new()`/`listen()`, and the master too",
}
_SAME = object()


@dataclass(frozen=True)
class Setting:
    """One setting.

    ``flags``: the command line's (none: library only; ``positional``: the command's APP).
    ``shown``: the default in words, when the value says too little (``the CPU count``).
    ``command_default``: the command's default, where it differs from the library's on purpose.
    ``in_config``: whether ``--config`` files may set it (derived key: the long flag's name).
    ``env``: an environment variable that, when set, replaces both defaults.
    """

    name: str
    kind: Kind
    default: Any
    layer: str
    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    shown: str | None = None
    command_default: Any = _SAME
    positional: bool = False
    in_config: bool = True
    env: str | None = None

    @property
    def toml_key(self) -> str | None:
        """The key in a ``--config`` file (dashes; underscores are accepted too), if any."""
        if not self.in_config:
            return None
        if self.flags:
            return self.flags[-1].removeprefix("--")
        return self.name if self.positional else None

    @property
    def flag(self) -> str:
        """How errors name it on the command line: the long flag, or the metavar."""
        return self.flags[-1] if self.flags else (self.metavar or self.name)

    @property
    def for_command(self) -> Any:
        """The default when neither the command line nor the config file sets it."""
        if self.env and os.environ.get(self.env):
            return os.environ[self.env]
        return self.default if self.command_default is _SAME else self.command_default

    @property
    def for_library(self) -> Any:
        """The default of the ``new()``/``listen()`` keyword argument."""
        if self.env and os.environ.get(self.env):
            return os.environ[self.env]
        return self.default

    @property
    def command_differs(self) -> bool:
        """Whether the command's default differs from the library's on purpose."""
        return self.command_default is not _SAME and self.command_default != self.default

    def show_default(self) -> str:
        """The command's default as the command line would spell it (or in words)."""
        if self.shown is not None:
            return self.shown
        return "none" if self.for_command is None else self.kind.show(self.for_command)

    def check(self, value: Any, label: str | None = None) -> Any:
        """A keyword argument of ``new()``/``listen()``; ``None`` is the default, if that is."""
        if value is None and self.default is None:
            return None
        return self.kind.check(value, label or f"option {self.name!r}")

    def load(self, value: Any, label: str) -> Any:
        """A value from the command line or a ``--config`` file, named ``label`` in errors."""
        return self.kind.load(value, label)


class Section(NamedTuple):
    title: str
    group: str | None  # the title of its group in ``prefork --help``; None: no group
    settings: tuple[Setting, ...]


SECONDS = Number(0, seconds=True)
TLS = Choice({"on": True, "off": False, "auto": None}, error=TypeError)
TLS_ENGINE = Choice({n: n for n in ("auto", "pyopenssl", "ssl")})
VERSION = Choice({"1.0": 1.0, "1.1": 1.1, "2": 2.0})
LOG_LEVELS = Choice({n: n for n in ("debug", "info", "warning", "error", "critical")})
DISPATCH = Choice({"balanced": "balanced", "round-robin": "round-robin"})
INTERFACE = Choice({n: n for n in ("auto", "stream", "asgi", "wsgi")})
LIFESPAN = Choice({n: n for n in ("auto", "on", "off")})
FORWARDED_HEADERS = Choice({n: n for n in ("x-forwarded", "forwarded", "off")})
H2_MAX = 2**31 - 1  # RFC 9113 section 6.5.2: the ranges each HTTP/2 setting may take

# fmt: off

COMMAND = (
    Setting("app", Str(), None, MASTER, "module:callable or path/to/file.py:callable: the "
            "`async def onstream(server, stream)` every worker runs", metavar="APP",
            positional=True, shown="required"),
    Setting("config", Str(), None, MASTER, "TOML file with these settings (the command line "
            "wins)", ("-c", "--config"), "FILE", in_config=False),
    Setting("bind", Addresses(), ("127.0.0.1:8080",), MASTER, "HOST:PORT, [IPV6]:PORT, "
            "unix:PATH (a stale socket is replaced, removed at exit) or fd://N (an inherited "
            "socket), each perhaps prefixed proxy+ (its connections start with a PROXY "
            "protocol header); repeatable; ignored under systemd socket activation",
            ("-b", "--bind"), "ADDRESS"),
    Setting("workers", Int(1), os.cpu_count() or 1, MASTER, "worker processes",
            ("-w", "--workers"), "N", shown="the CPU count"),
    Setting("preload", Bool(), False, MASTER, "import APP in the master before forking (a "
            "reload then needs a restart)", ("--preload",)),
    Setting("interface", INTERFACE, "auto", MASTER, "how APP is called: stream (async "
            "onstream(server, stream)), asgi (ASGI 3), wsgi (PEP 3333); auto tells them apart "
            "by the callable's signature", ("--interface",)),
    Setting("factory", Bool(), False, MASTER, "APP names a function that returns the "
            "application: each worker calls it", ("--factory",)),
    Setting("app_dir", Str(), None, MASTER, "directory put first on the import path for APP",
            ("--app-dir",), "DIR", shown="the current directory"),
    Setting("root_path", Str(empty_ok=True), "", MASTER, "the path prefix the app is mounted "
            "at behind a proxy: ASGI root_path, WSGI SCRIPT_NAME", ("--root-path",), "PATH",
            shown="none"),
    Setting("lifespan", LIFESPAN, "auto", MASTER, "ASGI lifespan events, once per worker before "
            "it takes connections: on, off, or auto (on unless the app refuses them)",
            ("--lifespan",)),
    Setting("threads", Int(1), 8, MASTER, "threads per worker that run a WSGI app",
            ("--threads",), "N"),
    Setting("ws_max_size", Int(1), 16777216, MASTER, "largest WebSocket message an ASGI app "
            "receives, in bytes; larger closes with 1009", ("--ws-max-size",), "BYTES"),
    Setting("ws_ping_interval", SECONDS, 20.0, MASTER, "seconds between the keep-alive Pings "
            "of an ASGI app's WebSockets (inf: none)", ("--ws-ping-interval",), "S"),
    Setting("ws_ping_timeout", SECONDS, 20.0, MASTER, "seconds a keep-alive Ping waits for its "
            "Pong, then the WebSocket closes with 1011 (inf: forever)", ("--ws-ping-timeout",),
            "S"),
)

SERVER_OPTIONS = (
    Setting("tls", TLS, None, BOTH, "on: TLS only; off: plaintext only; auto: sniff each "
            "connection. Without --certfile the master makes one self-signed certificate",
            ("--tls",), command_default=False),
    Setting("certfile", Str(), None, MASTER, "PEM certificate chain (implies --tls on)",
            ("--certfile",), "FILE"),
    Setting("keyfile", Str(), None, MASTER, "PEM private key for --certfile (default: the "
            "certfile itself)", ("--keyfile",), "FILE"),
    Setting("tls_engine", TLS_ENGINE, "auto", BOTH, "the TLS library: ssl (the standard "
            "library's ssl module, the faster), pyopenssl, or auto: pyopenssl when ctx is an "
            "OpenSSL.SSL.Context, else ssl. checktls() returns an ssl.SSLObject or an "
            "OpenSSL.SSL.Connection (docs/tls.md)", ("--tls-engine",)),
    Setting("version", VERSION, None, BOTH, "pin the HTTP version the server speaks (and offers "
            "in ALPN)", ("--http-version",), shown="any: HTTP/1.x and HTTP/2"),
    Setting("loop", Implementation("asyncio", "uvloop"), "asyncio", SERVER, "the event loop: "
            "asyncio's, or uvloop's (faster; `pollfd()` is then None); auto: uvloop when it is "
            "installed. Each worker makes one so; the library's own loop too (`cq` wins)",
            ("--loop",), command_default="auto", env="PREFORK_LOOP",
            shown="`auto`, or $PREFORK_LOOP"),
    Setting("http", Implementation("h11", "httptools"), "auto", SERVER, "the HTTP/1 request "
            "parser: pure Python (h11, uvicorn's name for it) or httptools (llhttp) splitting "
            "the field lines, under the same checks; auto: httptools when it is installed",
            ("--http",), env="PREFORK_HTTP", shown="`auto`, or $PREFORK_HTTP"),
    # PREFORK_LOOP and PREFORK_HTTP: tools/test runs the whole suite with each pair
    Setting("connection_setup_timeout", SECONDS, 10.0, SERVER, "seconds from accept to the "
            "first byte (and for the TLS handshake)", ("--connection-setup-timeout",), "S"),
    Setting("intra_stream_timeout", SECONDS, 10.0, SERVER, "seconds to deliver a request head; "
            "also how long an idle keep-alive connection is kept", ("--intra-stream-timeout",),
            "S"),
    Setting("max_concurrent", Number(1), math.inf, BOTH, "connections per worker; the master "
            "stops accepting while every worker is at it", ("--max-concurrent",), "N"),
    Setting("max_request_line", Int(1), 8190, SERVER, "longest request line in bytes (414)",
            ("--max-request-line",), "BYTES"),
    Setting("max_header_count", Int(1), 100, SERVER, "most header (or trailer) fields in a "
            "request (431)", ("--max-header-count",), "N"),
    Setting("max_head_size", Int(1), 65536, SERVER, "largest request head (or trailer "
            "section) in bytes (431)", ("--max-head-size",), "BYTES"),
    Setting("max_body_size", Int(0), None, SERVER, "largest request body in bytes (413)",
            ("--max-body-size",), "BYTES", shown="unlimited"),
    Setting("max_buffered_body", Int(1), 2621440, SERVER, "largest request body that the "
            "whole-body reads (get_body_as_string, get_body_until) hold in memory (413); "
            "streamed reads are not limited by it", ("--max-buffered-body",), "BYTES",
            shown="2621440 (2.5 MiB)"),
    Setting("write_timeout", SECONDS, 30.0, SERVER, "seconds a response may make no progress "
            "because the client reads nothing (or opens no HTTP/2 window): then the HTTP/1 "
            "connection is aborted, the HTTP/2 stream reset", ("--write-timeout",), "S"),
    Setting("backlog", Int(1), 2048, BOTH, "listen() backlog: where clients wait while no "
            "worker can take them", ("--backlog",), "N"),
    Setting("h2_max_concurrent_streams", Int(1, H2_MAX), 100, SERVER, "HTTP/2 "
            "SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open on one connection",
            ("--h2-max-concurrent-streams",), "N"),
    Setting("h2_initial_window_size", Int(65535, H2_MAX), 65535, SERVER, "HTTP/2 "
            "SETTINGS_INITIAL_WINDOW_SIZE: request body bytes buffered per stream",
            ("--h2-initial-window-size",), "BYTES"),
    Setting("h2_max_frame_size", Int(16384, 2**24 - 1), 16384, SERVER, "HTTP/2 "
            "SETTINGS_MAX_FRAME_SIZE: the largest frame payload accepted",
            ("--h2-max-frame-size",), "BYTES"),
    Setting("h2_max_header_list_size", Int(1024, H2_MAX), 65536, SERVER, "HTTP/2 "
            "SETTINGS_MAX_HEADER_LIST_SIZE: larger header lists end the connection",
            ("--h2-max-header-list-size",), "BYTES"),
)

MASTER_SETTINGS = (
    Setting("control_socket", Str(), None, MASTER, "a Unix socket (mode 0600) for `prefork ctl "
            "--control-socket PATH COMMAND`", ("--control-socket",), "PATH"),
    Setting("attach_socket", Str(), None, MASTER, "let processes the master did not fork join "
            "as workers (a Unix socket, mode 0600)", ("--attach-socket",), "PATH"),
    Setting("max_requests", Int(0), 0, MASTER, "replace a worker after N requests",
            ("--max-requests",), "N", shown="0 (never)"),
    Setting("max_requests_jitter", Int(0), 0, MASTER, "add up to N to each worker's "
            "--max-requests", ("--max-requests-jitter",), "N"),
    Setting("max_memory", Int(0), 0, MASTER, "replace a worker whose RSS exceeds MIB mebibytes",
            ("--max-memory",), "MIB", shown="0 (never)"),
    Setting("dispatch", DISPATCH, "balanced", MASTER, "how connections are shared: balanced "
            "(least outstanding, busy workers last) or round-robin (blind to load, for "
            "comparison)", ("--dispatch",)),
    Setting("timeout", SECONDS, 30.0, MASTER, "kill and replace a worker whose event loop is "
            "silent this long", ("-t", "--timeout"), "S"),
    Setting("graceful_timeout", SECONDS, 30.0, MASTER, "time in-flight requests get on stop "
            "and reload", ("--graceful-timeout",), "S"),
    Setting("pidfile", Str(), None, MASTER, "write the master's pid here (removed at exit)",
            ("-p", "--pidfile"), "FILE"),
    Setting("user", Str(), None, MASTER, "switch to this user (name or uid) after binding",
            ("-u", "--user")),
    Setting("group", Str(), None, MASTER, "switch to this group (name or gid) after binding",
            ("-g", "--group")),
    Setting("umask", Octal(0o777, int_ok=False), None, MASTER, 'octal umask, e.g. "027"',
            ("--umask",), shown="inherited"),
    Setting("log_level", LOG_LEVELS, "info", MASTER, "the error log's level",
            ("--log-level",)),
    Setting("access_log", Str(), None, MASTER, "combined-format access log (- for stdout)",
            ("--access-log",), "FILE"),
    Setting("error_log", Str(), "-", MASTER, "error log (- for stderr)", ("--error-log",),
            "FILE"),
)

EDGE = (
    Setting("forwarded_allow_ips", Peers(), TrustedPeers(os.environ.get("FORWARDED_ALLOW_IPS")
            or DEFAULT_PEERS), SERVER, "peers trusted to name the client: with a PROXY "
            "protocol header, X-Forwarded-For/-Proto/-Host/-Port and Forwarded; addresses, "
            "CIDR networks, `unix` (Unix-socket peers) or `*`, comma-separated",
            ("--forwarded-allow-ips",), "LIST",
            shown=f"`{DEFAULT_PEERS}`, or $FORWARDED_ALLOW_IPS"),
    Setting("health_path", UrlPath(), None, SERVER, "answer GET and HEAD of this path in the "
            "worker, before the app and not logged: 200 `ok` while serving, 503 `draining` once "
            "draining or closing (any query string is ignored)", ("--health-path",), "PATH",
            shown="none (off)"),
    Setting("drain_time", SECONDS, 0.0, MASTER, "on TERM (or `ctl stop`), drain this many "
            "seconds before the graceful stop: --health-path answers 503 while every request "
            "is still served, so that balancers take the server out first; a second TERM "
            "stops at once", ("--drain-time",), "S"),
    Setting("proxy_protocol", Bool(), False, BOTH, "every connection (on every listener) "
            "starts with a PROXY protocol header, v1 or v2, naming the client; it is read "
            "before TLS and HTTP, and only peers in --forwarded-allow-ips may send it. For "
            "some listeners only, prefix their --bind with proxy+ instead",
            ("--proxy-protocol",)),
    Setting("forwarded_headers", FORWARDED_HEADERS, "x-forwarded", SERVER, "the forwarded "
            "headers read from a trusted peer: `x-forwarded` (X-Forwarded-For/-Proto/-Host/"
            "-Port), `forwarded` (RFC 7239) or `off`; the other family is ignored",
            ("--forwarded-headers",)),
)

LIBRARY_OPTIONS = (
    Setting("onstream", Function(is_async=True), None, SERVER, "`async def onstream(server, "
            "stream)`, run for each request", shown="required"),
    Setting("socket", Instance("socket.socket"), None, NEW, "a bound stream socket to "
            "accept on"),
    Setting("onerror", Function(), None, SERVER, "the error handler "
            "(`prefork.server.default_onerror`, which re-raises)"),
    Setting("ctx", Instance("ssl.SSLContext", others=("OpenSSL.SSL.Context",)), None, SERVER,
            "the TLS context, of the engine `tls_engine` names (none: a generated self-signed "
            "certificate)"),
    Setting("cq", Instance("asyncio.AbstractEventLoop", "an asyncio event loop"), None, SERVER,
            "the event loop to run on (none: the server makes one)"),
    Setting("host", Str(), None, LISTEN, "local address or host name; this or `path`"),
    Setting("port", Int(0, 65535), None, LISTEN, "TCP port, 0 for any (none: 80 with `tls` "
            "False, 443 with True)"),
    Setting("path", Str(bytes_ok=True), None, LISTEN, "Unix socket path; this or `host`"),
    Setting("family", Family(), None, LISTEN, "restrict name resolution to this family"),
    Setting("v6only", Bool(), False, LISTEN, "IPV6_V6ONLY on an IPv6 socket"),
    Setting("mode", Octal(), None, LISTEN, "chmod the Unix socket to this after binding"),
    Setting("mask", Bool(), False, LISTEN, "bind the Unix socket under the umask of `mode`"),
    Setting("unlink", Bool(), False, LISTEN, "remove a stale socket at `path` first"),
    Setting("reuseaddr", Bool(), True, LISTEN, "set SO_REUSEADDR"),
    Setting("reuseport", Bool(), False, LISTEN, "set SO_REUSEPORT"),
)
# fmt: on

SECTIONS = (
    Section("The command", None, COMMAND),
    Section("Server options", "server (every worker's prefork.server options)", SERVER_OPTIONS),
    Section("Master settings", "master", MASTER_SETTINGS),
    Section("Behind a load balancer", "load balancer (docs/scale-out.md)", EDGE),
    Section("Library only", None, LIBRARY_OPTIONS),
)
SETTINGS = {s.name: s for section in SECTIONS for s in section.settings}
IN_CONFIG = {s.toml_key: s for s in SETTINGS.values() if s.toml_key is not None}


def by_toml_key(key: str) -> Setting | None:
    """The setting a ``--config`` key names (dashes or underscores), or None."""
    return IN_CONFIG.get(key.replace("_", "-"))


DEFAULTS = {s.name: s.for_library for s in SETTINGS.values()}  # the library's (prefork/options.py)
