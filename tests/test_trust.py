"""``--forwarded-allow-ips``: which peers may speak for a client (prefork/protocol/trust.py)."""

from __future__ import annotations

import pickle

import pytest

from prefork.netkinds import Peers
from prefork.protocol.trust import TrustedPeers


@pytest.mark.parametrize(
    ("spec", "host", "trusted"),
    [
        ("127.0.0.1,::1", "127.0.0.1", True),
        ("127.0.0.1,::1", "127.0.0.2", False),
        ("127.0.0.1,::1", "::1", True),
        ("127.0.0.1", "::ffff:127.0.0.1", True),  # IPv4 seen on an IPv6 socket
        ("10.0.0.0/8", "10.20.30.40", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("fd00::/8", "fd12::1", True),
        ("fd00::/8", "fe80::1", False),
        ("[::1]", "::1", True),
        ("fe80::/10", "fe80::1%eth0", True),  # scoped address
        ("127.0.0.1", None, False),  # Unix-socket peer, not listed
        ("127.0.0.1,unix", None, True),
        ("unix:", "", True),
        ("*", "203.0.113.9", True),
        ("*", None, True),
        ("", "127.0.0.1", False),
        ("127.0.0.1", "not-an-address", False),
        ("127.0.0.1", 12, False),
    ],
)
def test_membership(spec, host, trusted):
    assert (host in TrustedPeers(spec)) is trusted


def test_the_default_trusts_loopback_and_unix_peers_only():
    from prefork.settings import SETTINGS

    peers = SETTINGS["forwarded_allow_ips"].default
    assert "127.0.0.1" in peers and "::1" in peers and None in peers
    assert "192.0.2.1" not in peers


def test_a_bad_entry_is_named():
    with pytest.raises(ValueError, match=r"--forwarded-allow-ips: '10\.0\.0\.300'"):
        Peers().load("127.0.0.1, 10.0.0.300", "--forwarded-allow-ips")
    with pytest.raises(TypeError, match="option 'forwarded_allow_ips'"):
        Peers().check(5, "option 'forwarded_allow_ips'")


def test_lists_spaces_equality_and_pickling():
    peers = Peers().check(["10.0.0.0/8", " ::1 "], "x")
    assert peers == TrustedPeers("10.0.0.0/8,::1") and str(peers) == "10.0.0.0/8,::1"
    assert pickle.loads(pickle.dumps(peers)) == peers
    assert "::1" in pickle.loads(pickle.dumps(peers))
