"""The PROXY protocol under the ``prefork`` command: per listener (``proxy+`` binds, also from the
TOML file) or for all (``--proxy-protocol``); the master marks each connection in its batch
(``wire.PROXIED``) and the worker reads the header first. Real masters and workers, raw sockets
and curl (``--haproxy-protocol`` sends version 1); the worker side alone on a real channel."""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any

import pytest

from prefork.netkinds import Addresses, proxy_marked
from prefork.process import wire
from prefork.startup import open_all
from tests.helpers import curl, echo, need_curl, read_response, wait_until
from tests.master_helpers import free_port, raw_get
from tests.proxy_headers import v1, v2
from tests.test_hardening_process import (  # noqa: F401 (fixtures)
    ChannelPeer,
    channel_peer,
    tcp_pair,
)

CLIENT = ("203.0.113.7", 40001)
FRONT = ("198.51.100.1", 443)
CLIENT6 = ("2001:db8::7", 40002)
GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
LAST = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def bodies(data: bytes) -> list[list[str]]:
    """The bodies of whoami's content-length framed responses, split into their words."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        out.append(rest[:length].decode().split())
        data = rest[length:]
    return out


def through(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return read_response(sock)


# -- the command line and the config file --------------------------------------------------


def test_bind_marks() -> None:
    assert proxy_marked("proxy+unix:/run/a.sock") == (True, "unix:/run/a.sock")
    assert proxy_marked("127.0.0.1:80") == (False, "127.0.0.1:80")
    kind = Addresses()
    assert kind.check(["proxy+[::1]:80", "proxy+fd://3"], "--bind") == (
        "proxy+[::1]:80",
        "proxy+fd://3",
    )
    for bad in ("proxy+", "proxy+nowhere", "proxy+unix:", "proxy+fd://x"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            kind.check([bad], "--bind")


def test_open_all_says_which_listeners() -> None:
    binds = ["127.0.0.1:0", "proxy+127.0.0.1:0", "127.0.0.1:0"]
    found = open_all(binds, 16)
    try:
        assert found.proxied == [found.sockets[1]]
    finally:
        for sock in found.sockets:
            sock.close()
    every = open_all(binds[:2], 16, proxy_protocol=True)
    try:
        assert every.proxied == every.sockets
    finally:
        for sock in every.sockets:
            sock.close()


def test_an_old_masters_sockets_keep_their_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    # USR2: the new master gets the sockets in --bind order and the same binds
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        monkeypatch.setenv("PREFORK_FDS", ",".join(str(s.fileno()) for s in socks))
        found = open_all(["proxy+127.0.0.1:1", "127.0.0.1:2"], 16)
        assert [s.fileno() for s in found.proxied] == [socks[0].fileno()]
        for sock in found.sockets:
            sock.detach()  # the same descriptors as socks
    finally:
        for sock in socks:
            sock.close()


# -- a real master ---------------------------------------------------------------------------


def test_a_proxy_listener_beside_a_plain_one(start_master: Any, tmp_path: Any) -> None:
    plain, proxied = free_port(), free_port()
    config = tmp_path / "prefork.toml"
    config.write_text(f'bind = ["127.0.0.1:{plain}", "proxy+127.0.0.1:{proxied}"]\n')
    access = tmp_path / "access.log"
    master = start_master(
        "whoami", "--config", str(config), "--access-log", str(access), address=False, workers=1
    )
    master.address = plain
    master.wait_serving()
    assert f"serving 127.0.0.1:{plain}, proxy+127.0.0.1:{proxied}" in master.stderr()
    # the plain listener: the socket's peer; a PROXY header there is the client's bytes
    status, body, _ = raw_get(plain)
    pid, peer, socket_peer, _ = body.decode().split()
    assert status == 200 and peer == socket_peer and peer.startswith("127.0.0.1:")
    assert through(plain, v1(CLIENT, FRONT) + LAST).startswith(b"HTTP/1.1 400")
    # the PROXY listener: the client the header names, on every request of the connection
    seen = bodies(through(proxied, v1(CLIENT, FRONT) + GET % 1 + GET % 2 + LAST))
    assert [s[1:] for s in seen] == [["203.0.113.7:40001", seen[0][2], "198.51.100.1:443"]] * 3
    assert seen[0][2].startswith("127.0.0.1:") and seen[0][0] == pid
    seen = bodies(through(proxied, v2(CLIENT6, ("2001:db8::1", 8443)) + LAST))
    assert seen[0][1] == "2001:db8::7:40002"

    def clients() -> list[str]:  # the access log's address, of each /last request
        return [line.split()[0] for line in access.read_text().splitlines() if "/last" in line]

    wait_until(lambda: len(clients()) == 2, 10, "two access log lines")
    assert sorted(clients()) == ["2001:db8::7", "203.0.113.7"]


def test_bad_headers_leave_the_worker_serving(start_master: Any) -> None:
    proxied = free_port()
    master = start_master(
        "whoami", "--bind", f"proxy+127.0.0.1:{proxied}", "--log-level", "debug", workers=1
    )
    (pid,) = master.wait_workers(1)
    for bad in (
        b"GET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04abcd",
    ):
        assert through(proxied, bad) == b""
    wait_until(
        lambda: master.stderr().count("bad PROXY protocol header") >= 3, 10, "three debug lines"
    )
    seen = bodies(through(proxied, v2(CLIENT, FRONT) + LAST))
    assert seen[0][:2] == [str(pid), "203.0.113.7:40001"]
    assert master.workers() == [pid]


@need_curl
def test_curl_haproxy_protocol_before_tls(start_master: Any) -> None:
    # --proxy-protocol: every listener; curl sends a version 1 header, then TLS (h2 by ALPN)
    port = free_port()
    master = start_master(
        "whoami", "--proxy-protocol", "--tls", "on", address=port, wait=False, workers=1
    )
    master.wait_workers(1)
    for version in ("--http1.1", "--http2"):
        result = curl(
            "-k",
            "--haproxy-protocol",
            version,
            "-w",
            " %{http_version}",
            f"https://127.0.0.1:{port}/",
        )
        assert result.returncode == 0, result.stderr
        _, peer, socket_peer, local, http = result.stdout.decode().split()
        assert peer == socket_peer and peer.startswith("127.0.0.1:")  # curl's own addresses
        assert local == f"127.0.0.1:{port}" and http == ("2" if version == "--http2" else "1.1")


# -- the worker side alone -------------------------------------------------------------------


def test_a_worker_follows_the_batch_marks(
    channel_peer: Any,  # noqa: F811
    tcp_pair: Any,  # noqa: F811
    caplog: Any,
) -> None:
    peer: ChannelPeer = channel_peer(echo)
    (with_header, accepted1), (without, accepted2) = tcp_pair(), tcp_pair()
    peer.send(wire.batch(7, bytes([wire.PROXIED, 0])), [accepted1.fileno(), accepted2.fileno()])
    assert peer.answer() == (wire.ACK, 7)
    accepted1.close()  # the master closes its copies after the ack
    accepted2.close()
    with_header.sendall(v1(CLIENT, FRONT) + LAST)
    without.sendall(LAST)
    assert b"x-peer: 203.0.113.7:40001" in read_response(with_header)
    assert b"x-peer: 127.0.0.1:" in read_response(without)
    # marks that are not one per fd: a malformed batch, its connections closed and logged
    bad_client, bad_accepted = tcp_pair()
    peer.send(wire.batch(8, bytes([wire.PROXIED] * 2)), [bad_accepted.fileno()])
    bad_accepted.close()
    bad_client.sendall(LAST)
    with contextlib.suppress(ConnectionResetError):  # closed unread: perhaps a reset
        assert read_response(bad_client) == b""
    wait_until(lambda: "bad batch from the master: 2 marks for 1 fds" in caplog.text, 10, "log")
