"""The ``prefork`` command (``python -m prefork``): options, usage errors, config file, pidfile,
unix sockets, systemd socket activation and notification. Real processes, each in its own
session and stopped by process group in teardown (tests/master_helpers.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import prefork
from tests.helpers import CURL, curl, wait_until
from tests.master_helpers import (
    APPS,
    app,
    clean_env,
    free_port,
    listening_ports,
    raw_get,
    run_prefork,
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for unix socket paths (sun_path holds 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pf-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- options and usage errors --------------------------------------------------------------------


def test_version():
    result = run_prefork(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"prefork {prefork.__version__}"


def test_console_script_version():
    script = shutil.which("prefork")
    assert script is not None, "the prefork console script is not installed (pip install -e .)"
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=20, env=clean_env()
    )
    assert result.returncode == 0
    assert prefork.__version__ in result.stdout


OPTIONS = [
    "--bind",
    "--workers",
    "--tls",
    "--certfile",
    "--keyfile",
    "--http-version",
    "--connection-setup-timeout",
    "--intra-stream-timeout",
    "--max-concurrent",
    "--timeout",
    "--graceful-timeout",
    "--pidfile",
    "--user",
    "--group",
    "--umask",
    "--log-level",
    "--access-log",
    "--error-log",
    "--config",
    "--version",
    "--preload",
]


def test_help_lists_every_option():
    result = run_prefork(["--help"])
    assert result.returncode == 0
    missing = [opt for opt in OPTIONS if opt not in result.stdout]
    assert missing == []
    assert "APP" in result.stdout


def test_missing_app_is_a_usage_error():
    result = run_prefork(["--workers", "1"])
    assert result.returncode == 2
    assert "APP" in one_line(result.stderr)


@pytest.mark.parametrize(
    "bind", ["localhost", "127.0.0.1:http", "127.0.0.1:99999", ":8080", "unix:", "fd://x"]
)
def test_bad_bind_syntax_is_a_usage_error(bind):
    result = run_prefork(["--bind", bind, "--workers", "1", app("hello")])
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "--bind" in line
    assert bind in line


def test_unknown_option_is_a_usage_error():
    result = run_prefork(["--no-such-option", app("hello")])
    assert result.returncode == 2
    assert "--no-such-option" in result.stderr


def test_bad_workers_is_a_usage_error():
    result = run_prefork(["--workers", "0", app("hello")])
    assert result.returncode == 2
    assert "--workers" in one_line(result.stderr)


def test_port_in_use_exits_1():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_prefork(["--bind", f"127.0.0.1:{port}", "--workers", "1", app("hello")])
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert "cannot bind" in line
    assert str(port) in line


def test_unreadable_certfile(tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    result = run_prefork(
        ["--certfile", str(missing), "--bind", f"127.0.0.1:{free_port()}", app("hello")]
    )
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(missing) in one_line(result.stderr)


# -- config file ---------------------------------------------------------------------------------


def test_config_file_is_used(start_master, tmp_path):
    port = free_port()
    config = tmp_path / "prefork.toml"
    config.write_text(f'workers = 3\nbind = ["127.0.0.1:{port}"]\n')
    master = start_master("hello", "--config", str(config), address=False, workers=None)
    master.address = port
    master.wait_serving()
    assert len(master.wait_workers(3)) == 3
    assert listening_ports(master.pid) == {port}


def test_command_line_wins_over_config(start_master, tmp_path):
    config_port, cli_port = free_port(), free_port()
    config = tmp_path / "prefork.toml"
    config.write_text(f'workers = 3\nbind = "127.0.0.1:{config_port}"\nlog-level = "info"\n')
    master = start_master("hello", "--config", str(config), address=cli_port, workers=1)
    assert len(master.wait_workers(1)) == 1
    assert listening_ports(master.pid) == {cli_port}
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", config_port)) != 0


def test_unknown_key_in_config_is_a_usage_error(tmp_path):
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 2\nworkerz = 3\n")
    result = run_prefork(["--config", str(config), app("hello")])
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "workerz" in line


def test_bad_toml_is_a_usage_error(tmp_path):
    config = tmp_path / "prefork.toml"
    config.write_text("workers = = 2\n")
    result = run_prefork(["--config", str(config), app("hello")])
    assert result.returncode == 2
    assert str(config) in one_line(result.stderr)


# -- pidfile, unix socket ------------------------------------------------------------------------


def test_pidfile_written_and_removed(start_master, tmp_path):
    pidfile = tmp_path / "prefork.pid"
    master = start_master("hello", "--pidfile", str(pidfile), workers=1)
    assert pidfile.read_text().strip() == str(master.pid)
    master.signal(signal.SIGTERM)
    assert master.wait(10) == 0
    assert not pidfile.exists()


def test_unix_socket_bind(start_master, short_tmp):
    path = short_tmp / "prefork.sock"
    master = start_master("hello", address=str(path), workers=2)
    status, body, _ = raw_get(str(path))
    assert (status, body) == (200, b"hello\n")
    if CURL is not None:
        out = curl("--unix-socket", str(path), "http://x/", max_time=5)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"hello\n"
    master.signal(signal.SIGTERM)
    assert master.wait(10) == 0
    assert not path.exists()


def test_unix_socket_removed_after_quick_stop(start_master, short_tmp):
    path = short_tmp / "prefork.sock"
    master = start_master("hello", address=str(path), workers=1)
    master.signal(signal.SIGINT)
    master.wait(10)
    assert not path.exists()


# -- systemd -------------------------------------------------------------------------------------

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    fd = int(sys.argv[1])
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
    os.execv(sys.executable, [sys.executable, "-m", "prefork", *sys.argv[2:]])
    """
)


def test_socket_activation(start_master):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        argv = [sys.executable, "-c", LAUNCHER, str(listener.fileno()), "-w", "2", app("hello")]
        master = start_master(argv=argv, pass_fds=[listener.fileno()], wait=False)
    finally:
        listener.close()  # only the master holds it now
    master.address = port
    master.wait_serving()
    master.wait_workers(2)
    for _ in range(10):
        assert raw_get(port)[:2] == (200, b"hello\n")
    # it served the inherited socket and bound nothing else (not the default 127.0.0.1:8080)
    assert listening_ports(master.pid) == {port}
    for pid in master.workers():
        assert listening_ports(pid) == set()
    master.signal(signal.SIGTERM)
    assert master.wait(10) == 0


def test_listen_pid_of_another_process_is_ignored(start_master):
    """LISTEN_PID names someone else: the sockets are not ours; bind as asked."""
    port = free_port()
    env = clean_env(LISTEN_FDS="1", LISTEN_PID="1")
    master = start_master("hello", address=port, workers=1, env=env)
    assert listening_ports(master.pid) == {port}


def test_notify_socket_ready_and_stopping(start_master, short_tmp):
    path = short_tmp / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(15)
        master = start_master(
            "hello", workers=2, wait=False, env=clean_env(NOTIFY_SOCKET=str(path))
        )
        first = notify.recv(4096).decode()
        assert "READY=1" in first.split("\n")
        # READY=1 comes after every worker is ready: requests are answered at once
        assert len(master.ready_workers()) == 2 or wait_until(
            lambda: len(master.ready_workers()) == 2, 2, "the ready lines"
        )
        assert raw_get(master.port)[0] == 200
        master.signal(signal.SIGTERM)
        messages: list[str] = []
        while not any("STOPPING=1" in m.split("\n") for m in messages):
            messages.append(notify.recv(4096).decode())
        assert master.wait(10) == 0


def test_abstract_notify_socket(start_master):
    name = f"prefork-test-{os.getpid()}-{free_port()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + name)
        notify.settimeout(15)
        start_master("hello", workers=1, wait=False, env=clean_env(NOTIFY_SOCKET="@" + name))
        assert "READY=1" in notify.recv(4096).decode().split("\n")


def test_nothing_left_behind_on_bind_failure(tmp_path):
    """A failed start leaves no process (run_prefork checks its process group) and no pidfile."""
    pidfile = tmp_path / "p.pid"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_prefork(
            ["--bind", f"127.0.0.1:{port}", "--pidfile", str(pidfile), "-w", "1", app("hello")]
        )
    assert result.returncode == 1
    assert not pidfile.exists()


def test_ws_ping_settings_reach_an_asgi_app(start_master) -> None:
    """--ws-ping-interval/--ws-ping-timeout (issue 9 item 8) reach the ASGI adapter of every
    worker: a client that answers no Ping is closed with 1011."""
    import wsproto
    import wsproto.events as wev  # the client that answers no Ping

    master = start_master(
        None,
        "--ws-ping-interval",
        "0.2",
        "--ws-ping-timeout",
        "0.2",
        f"{APPS / 'asgi_ws.py'}:app",
        workers=1,
    )
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", master.port), timeout=10) as sock:
        sock.sendall(ws.send(wev.Request(host="127.0.0.1", target="/ws")))
        events: list = []
        deadline = time.monotonic() + 10
        while not any(isinstance(e, wev.CloseConnection) for e in events):
            assert time.monotonic() < deadline, events
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            events += list(ws.events())  # a Ping is seen and left unanswered
    assert any(isinstance(e, wev.Ping) for e in events), events
    close = next(e for e in events if isinstance(e, wev.CloseConnection))
    assert close.code == 1011, close
