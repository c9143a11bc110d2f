"""Tiny peer apps served by other servers in tools/bench."""
