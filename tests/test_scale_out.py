"""Scale-out, proven with a real HAProxy in front of real prefork masters (docs/scale-out.md).

Two masters on two ports stand in for two machines. The balancer checks each one's health path
and re-dispatches; a client process keeps a steady load (kept-alive and new connections) from
its own loopback address, 127.0.0.5, so every answer can say whether the server saw the client
or the balancer. Backend ``a`` gets the client through PROXY protocol v2, backend ``b`` through
``X-Forwarded-For``. Everything synchronises on what HAProxy's stats socket reports and on the
processes' own pids; nothing sleeps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.haproxy_helpers import HAProxy, need_haproxy
from tests.helpers import curl, need_curl, wait_until
from tests.master_helpers import APPS, REPO, clean_env, free_port

pytestmark = [need_haproxy]

CLIENT = "127.0.0.5"  # the load's own source address: neither the balancer's nor trusted
WHOAMI = f"{APPS / 'whoami_asgi.py'}:app"
GLOBAL = "global\n    maxconn 2000\n"


@pytest.fixture
def haproxy(tmp_path: Path):
    """A real HAProxy, stopped by pid after the test (tests/haproxy_helpers.py)."""
    proxy = HAProxy(tmp_path)
    try:
        yield proxy
    finally:
        proxy.stop()


DEFAULTS = """
defaults
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
"""
HEALTH = """
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host backend
    http-check expect status 200
    default-server inter 100ms fall 1 rise 1
"""


def http_config(front: int, a: int, b: int) -> str:
    """HTTP mode: PROXY v2 (health checks too) to ``a``, X-Forwarded-For to ``b``."""
    return (
        GLOBAL
        + DEFAULTS
        + f"""
    mode http
    option redispatch
    retries 3
    retry-on conn-failure empty-response response-timeout 502 503
frontend fe
    bind 127.0.0.1:{front}
    default_backend be
backend be
    balance roundrobin
    option forwardfor
{HEALTH}
    server a 127.0.0.1:{a} check send-proxy-v2 check-send-proxy
    server b 127.0.0.1:{b} check
"""
    )


def tcp_config(front: str, backend: int, send: str, check: bool = False) -> str:
    """TCP mode (TLS passes through untouched): ``send`` is send-proxy or send-proxy-v2."""
    return (
        GLOBAL
        + DEFAULTS
        + f"""
    mode tcp
frontend fe
    bind {front}
    default_backend be
backend be
    server s 127.0.0.1:{backend} {send}
"""
    )


def edge_master(start_master, port: int, *options: str, wait: bool = True):
    master = start_master(
        None,
        "--health-path",
        "/healthz",
        "--drain-time",
        "1",
        *options,
        WHOAMI,
        workers=1,
        address=port,
        wait=False,
    )
    if wait:
        master.wait_workers(1)
    return master


def whoami(port: int, *headers: str, source: str = CLIENT) -> list[str]:
    args = ["-sS", "--interface", source, *[a for h in headers for a in ("-H", h)]]
    out = curl(*args, f"http://127.0.0.1:{port}/")
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().split()


# -- the rolling restart ---------------------------------------------------------------------------


class Load:
    """tests/load_client.py as a process: started, awaited, stopped by pid."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.result = tmp_path / "load.json"
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "load_client.py"), str(port), CLIENT,
             str(self.result), "--seconds", "150", "--requests", "300000"],
            env=clean_env(),
        )  # fmt: skip
        wait_until(lambda: Path(f"{self.result}.started").exists(), 15, "the load to start")

    def finish(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0
        return json.loads(self.result.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def served(proxy: HAProxy, server: str) -> int:
    """Requests HAProxy has sent to ``be/server`` (its ``stot`` counter)."""
    rows = proxy.command("show stat").lstrip("# ").splitlines()
    head = rows[0].split(",")
    for row in rows[1:]:
        cols = row.split(",")
        if cols[0] == "be" and cols[1] == server:
            return int(cols[head.index("stot")])
    raise AssertionError(f"no be/{server} in haproxy stats")


def roll(start_master, proxy: HAProxy, old, name: str, *options: str):
    """Drain ``old`` (SIGTERM with --drain-time), restart it on its port, wait for traffic."""
    old.signal(signal.SIGTERM)
    proxy.wait_state("be", name, "DOWN")
    assert old.proc.poll() is None, "the balancer saw the drain's 503 before the master stopped"
    assert old.wait(30) == 0
    new = edge_master(start_master, old.port, *options)
    proxy.wait_state("be", name, "UP")
    before = served(proxy, name)
    wait_until(lambda: served(proxy, name) > before + 20, 30, f"traffic to the new {name}")
    return new


@pytest.mark.timeout(240)
def test_drain_restart_and_reload_both_machines_under_load_loses_nothing(
    start_master, haproxy, tmp_path
):
    a_opts = ("--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1")
    a = edge_master(start_master, free_port(), *a_opts)
    b = edge_master(start_master, free_port())
    front = free_port()
    haproxy.start(http_config(front, a.port, b.port))
    haproxy.wait_state("be", "a", "UP")
    haproxy.wait_state("be", "b", "UP")
    load = Load(tmp_path, front)
    try:
        a = roll(start_master, haproxy, a, "a", *a_opts)
        b = roll(start_master, haproxy, b, "b")
        for master, name in ((a, "a"), (b, "b")):
            old = set(master.workers())
            master.signal(signal.SIGHUP)
            wait_until(lambda m=master, o=old: set(m.ready_workers()) - o, 30, "new workers")
            before = served(haproxy, name)
            wait_until(lambda n=name, c=before: served(haproxy, n) > c + 20, 30, "traffic")
        new_pids = set(a.ready_workers()) | set(b.ready_workers())
        result = load.finish()
    finally:
        load.kill()
    assert (result["failed"], result["failures"]) == (0, [])
    assert result["clients"] == [CLIENT]
    assert result["ok"] > 200
    assert new_pids <= set(result["pids"]), "the reloaded workers of both machines served"


# -- PROXY protocol from HAProxy -----------------------------------------------------------------


@need_curl
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_proxy_header_names_the_client_for_every_kept_alive_request(
    send, start_master, haproxy
):
    import http.client

    backend = edge_master(start_master, free_port(), "--proxy-protocol")
    front = free_port()
    haproxy.start(tcp_config(f"127.0.0.1:{front}", backend.port, send))
    conn = http.client.HTTPConnection("127.0.0.1", front, 10, source_address=(CLIENT, 0))
    try:
        for _ in range(3):  # gunicorn's gthread loses the client from the 2nd request on
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read().decode().split()[:2] == [CLIENT, "http"]
    finally:
        conn.close()
    assert whoami(front, "X-Forwarded-For: 6.6.6.6")[0] == CLIENT


@need_curl
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_tls_passthrough_with_h2_over_alpn_behind_a_proxy_header(send, start_master, haproxy):
    backend = edge_master(start_master, free_port(), "--proxy-protocol", "--tls", "on")
    front = free_port()
    haproxy.start(tcp_config(f"127.0.0.1:{front}", backend.port, send))
    out = curl("-sSk", "--http2", "--interface", CLIENT, f"https://127.0.0.1:{front}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split()[:3] == [CLIENT, "https", "2"]


@need_curl
def test_proxy_v2_carries_an_ipv6_client(start_master, haproxy):
    backend = edge_master(start_master, free_port(), "--proxy-protocol")
    front = free_port()
    haproxy.start(tcp_config(f"[::1]:{front}", backend.port, "send-proxy-v2"))
    out = curl("-sS", "-g", f"http://[::1]:{front}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split()[0] == "::1"


# -- forwarded headers from HAProxy ---------------------------------------------------------------


def forwardfor_config(front: int, backend: int) -> str:
    return (
        GLOBAL
        + DEFAULTS
        + f"""
    mode http
frontend fe
    bind 127.0.0.1:{front}
    default_backend be
backend be
    option forwardfor
    server s 127.0.0.1:{backend}
"""
    )


@need_curl
@pytest.mark.parametrize(
    ("trust", "seen"),
    [
        (None, CLIENT),  # the default trusts loopback: the balancer at 127.0.0.1
        ("127.0.0.0/30", CLIENT),  # trust by CIDR
        ("10.0.0.0/8", "127.0.0.1"),  # the balancer is not trusted: its own address
    ],
)
def test_x_forwarded_for_from_haproxy_is_used_only_from_a_trusted_balancer(
    trust, seen, start_master, haproxy
):
    options = () if trust is None else ("--forwarded-allow-ips", trust)
    backend = edge_master(start_master, free_port(), *options)
    front = free_port()
    haproxy.start(forwardfor_config(front, backend.port))
    assert whoami(front)[0] == seen
    # a client forging its own X-Forwarded-For through the balancer gains nothing
    assert whoami(front, "X-Forwarded-For: 6.6.6.6")[0] == seen
    assert whoami(front, "Forwarded: for=6.6.6.6;proto=https")[:2] == [seen, "http"]
