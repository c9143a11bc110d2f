"""The settings table (prefork/settings.py) is the one source of the options' defaults and
checks, the command's parser and config loader, and docs/settings.md.

In-process: the table against the option dataclasses, the parser and the generated page; the
config loader on files. Real processes (``python -m prefork``, tests/master_helpers.py): bad
values end with exit status 2 and one line naming the file and the key (or the flag), good ones
reach the listening socket and every worker's server, a HUP with a bad file changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prefork import config
from prefork.cliargs import build_parser
from prefork.options import ListenOptions, ServerOptions
from prefork.settings import BOTH, LISTEN, NEW, SERVER, SETTINGS, by_toml_key
from prefork.startup import WORKER_OPTIONS
from tests.helpers import wait_until
from tests.master_helpers import app, free_port, raw_get, run_prefork
from tools import settings_doc


async def noop(server, stream):
    await stream.get_headers()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prefork.toml"
    path.write_text(text)
    return path


# -- one table, every consumer ------------------------------------------------------------------


def test_docs_settings_md_is_generated_from_the_table():
    assert settings_doc.DOC.read_text() == settings_doc.render(), (
        "docs/settings.md is stale: run python -m tools.settings_doc"
    )


def test_the_option_dataclasses_are_the_tables_server_entries():
    layers = {SERVER: ServerOptions, NEW: ServerOptions, BOTH: ServerOptions, LISTEN: ListenOptions}
    for cls in (ServerOptions, ListenOptions):
        table = {name for name, s in SETTINGS.items() if layers.get(s.layer) is cls}
        assert {f.name for f in dataclasses.fields(cls)} == table
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                assert field.default == SETTINGS[field.name].for_library, field.name


def test_the_command_passes_the_library_defaults_to_every_worker():
    """The backlog was 2048 for the command and 1024 for listen(): one value now. Only tls and
    loop differ on purpose: the command does not generate a certificate unless asked, and the
    library's own loop stays asyncio's, whose fd ``pollfd()`` gives an external main loop
    (unless $PREFORK_LOOP says otherwise)."""
    command = config.merge({}, {})
    library = ServerOptions(onstream=noop)
    differ = {n for n in WORKER_OPTIONS if command[n] != getattr(library, n)}
    assert differ == ({"tls"} if os.environ.get("PREFORK_LOOP") else {"tls", "loop"})
    assert command["backlog"] == library.backlog == 2048
    assert (command["tls"], library.tls) == (False, None)
    if not os.environ.get("PREFORK_LOOP"):
        assert (command["loop"], library.loop) == ("auto", "asyncio")


def test_the_parser_has_every_flag_and_leaves_unset_options_to_the_file():
    parser = build_parser()
    help_text = parser.format_help()
    for setting in SETTINGS.values():
        for flag in setting.flags:
            assert flag in help_text, flag
    unset = vars(parser.parse_args([]))
    assert set(unset) == {n for n, s in SETTINGS.items() if s.flags or s.positional}
    assert set(unset.values()) == {None}


def test_every_flag_has_a_config_key_spelled_with_dashes_or_underscores():
    for setting in SETTINGS.values():
        if setting.flags and setting.name != "config":
            key = setting.toml_key
            assert key is not None, setting.name
            assert by_toml_key(key) is setting
            assert by_toml_key(key.replace("-", "_")) is setting
    assert by_toml_key("config") is None  # no config file names another
    assert by_toml_key("onstream") is None  # the library's own


# -- the config loader --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        ('timeout = "x"', "timeout", "must be a number"),
        ("timeout = -1", "timeout", ">= 0"),
        ("workers = 0", "workers", "must be >= 1"),
        ("workers = 2.5", "workers", "must be an int"),
        ("workers = true", "workers", "must be an int"),
        ("backlog = 0", "backlog", "must be >= 1"),
        ('tls = "yes"', "tls", "on, off, auto"),
        ("http-version = 3", "http-version", "must be one of"),
        ('bind = "localhost"', "bind", "expected HOST:PORT"),
        ("bind = [1]", "bind", "list of strings"),
        ("max_concurrent = nan", "max_concurrent", ">= 1"),
        ("h2-max-frame-size = 100", "h2-max-frame-size", ">= 16384"),
        ("h2-max-frame-size = 16777216", "h2-max-frame-size", "<= 16777215"),
        ("umask = 27", "umask", "octal string"),
        ('umask = "8"', "umask", "octal"),
        ('log-level = "loud"', "log-level", "debug, info"),
        ("preload = 1", "preload", "bool"),
        ("user = 33", "user", "string"),
        ('access-log = ""', "access-log", "empty"),
        ("workerz = 3", "workerz", "unknown option"),
        ("[server]\nbacklog = 5", "server", "unknown option"),
        ("timeout = 1\nmax_memory = 1\nmax-memory = 2", "max-memory", "twice"),
    ],
)
def test_read_config_names_the_file_and_the_key(tmp_path, text, key, what):
    path = write_config(tmp_path, text + "\n")
    with pytest.raises(config.UsageError) as info:
        config.read_config(str(path))
    message = str(info.value)
    assert message.startswith(f"--config: {path}: ")
    assert key in message and what in message, message


def test_read_config_takes_toml_spellings():
    values = {
        'tls = "auto"': ("tls", None),
        "tls = true": ("tls", True),
        'http-version = "2"': ("version", 2.0),
        "http_version = 1.1": ("version", 1.1),
        "max-concurrent = inf": ("max_concurrent", math.inf),
        "timeout = 5": ("timeout", 5.0),
        'bind = "unix:/run/x.sock"': ("bind", ("unix:/run/x.sock",)),
        'umask = "027"': ("umask", 0o27),
        'app = "site:onstream"': ("app", "site:onstream"),
    }
    for text, (name, value) in values.items():
        setting = by_toml_key(text.split(" ")[0])
        assert setting is not None and setting.name == name
        loaded = setting.load(_toml_value(text), "test")
        assert loaded == value and type(loaded) is type(value), text


def _toml_value(line: str) -> object:
    import tomllib

    return next(iter(tomllib.loads(line).values()))


def test_command_line_wins_then_file_then_default():
    merged = config.merge({"workers": 3}, {"workers": 2, "backlog": 100})
    assert (merged["workers"], merged["backlog"], merged["timeout"]) == (3, 100, 30.0)
    assert config.merge({}, {"certfile": "c.pem"})["tls"] is True  # implies --tls on
    assert config.merge({}, {"certfile": "c.pem", "tls": None})["tls"] is None


# -- the command, in real processes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('timeout = "x"\n', "timeout"),
        ("graceful-timeout = [1]\n", "graceful-timeout"),
        ('workers = "4"\n', "workers"),
        ("max-request-line = 0\n", "max-request-line"),
        ('dispatch = "random"\n', "dispatch"),
    ],
)
def test_a_bad_config_value_exits_2_naming_file_and_key(tmp_path, text, key):
    path = write_config(tmp_path, text)
    result = run_prefork(
        ["--config", str(path), "--bind", f"127.0.0.1:{free_port()}", app("hello")]
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and key in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--timeout", "-1"], "--timeout"),
        (["--max-concurrent", "0"], "--max-concurrent"),
        (["--h2-max-frame-size", "100"], "--h2-max-frame-size"),
        (["--umask", "9"], "--umask"),
    ],
)
def test_a_bad_command_line_value_exits_2_naming_the_flag(args, flag):
    result = run_prefork([*args, "--bind", f"127.0.0.1:{free_port()}", app("hello")])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prefork: error: {flag} "), result.stderr


def test_config_values_reach_every_workers_server(start_master, tmp_path):
    path = write_config(tmp_path, "max-request-line = 64\nintra_stream_timeout = 5\n")
    master = start_master("hello", "--config", str(path), workers=2)
    for _ in range(4):  # whichever worker answers
        assert raw_get(master.port, "/" + "a" * 80)[0] == 414
        assert raw_get(master.port, "/short")[:2] == (200, b"hello\n")


SS = shutil.which("ss")


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port`` (``ss``'s Send-Q for LISTEN)."""
    out = subprocess.run(
        [SS or "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[2])


@pytest.mark.skipif(SS is None, reason="needs ss (iproute2)")
def test_the_master_listens_with_the_tables_backlog_or_the_files(start_master, tmp_path):
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    master = start_master("hello", workers=1)
    assert listen_backlog(master.port) == min(2048, somaxconn)
    port = free_port()
    path = write_config(tmp_path, f'backlog = 100\nbind = "127.0.0.1:{port}"\n')
    other = start_master("hello", "--config", str(path), address=False, workers=1)
    other.address = port
    other.wait_serving()
    assert listen_backlog(port) == 100


def test_hup_with_a_bad_value_logs_the_key_and_keeps_the_workers(start_master, tmp_path):
    path = write_config(tmp_path, "workers = 1\n")
    master = start_master("hello", "--config", str(path), workers=None)
    first = master.wait_workers(1)
    path.write_text('workers = 1\ntimeout = "soon"\n')
    master.signal(signal.SIGHUP)
    line = wait_until(
        lambda: next((x for x in master.log().splitlines() if "workers stay" in x), None),
        15,
        "the reload error",
    )
    assert str(path) in line and "timeout must be a number" in line, line
    assert master.wait_workers(1) == first
    assert raw_get(master.port)[0] == 200


# -- without the fast extra (issue #13) --------------------------------------------------------

# Runs prefork's command (or a snippet) with uvloop and httptools made unimportable, as on a
# plain `pip install prefork`: importlib.util.find_spec answers None for a module set to None.
HIDE_FAST = "import sys; sys.modules['uvloop'] = sys.modules['httptools'] = None\n"


def without_fast(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
    return subprocess.run(
        [sys.executable, "-c", HIDE_FAST + code],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "flag", "package"),
    [(["--loop", "uvloop"], "--loop", "uvloop"), (["--http", "httptools"], "--http", "httptools")],
)
def test_naming_a_missing_implementation_exits_2_naming_the_option(args, flag, package):
    argv = [*args, "--bind", f"127.0.0.1:{free_port()}", app("hello")]
    result = without_fast(f"from prefork.cli import main\nsys.exit(main({argv!r}))")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"prefork: error: {flag} {package}: the {package} package is not installed "
        "(pip install 'prefork[fast]')"
    )


def test_without_the_fast_extra_auto_is_asyncio_and_the_pure_parser():
    result = without_fast(
        """
import asyncio, prefork.server
from prefork.aio import loop
from prefork.protocol import h1request, http1
assert http1.splitter("auto") is h1request.split_fields
made = loop.new_loop("auto")
assert isinstance(made, asyncio.SelectorEventLoop), made
made.close()
async def onstream(server, stream): pass
for option in ({"loop": "uvloop"}, {"http": "httptools"}):
    try:
        prefork.server.new(onstream=onstream, **option)
    except ValueError as exc:
        print(exc)
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "option 'loop' uvloop: the uvloop package is not installed (pip install 'prefork[fast]')",
        "option 'http' httptools: the httptools package is not installed "
        "(pip install 'prefork[fast]')",
    ]
