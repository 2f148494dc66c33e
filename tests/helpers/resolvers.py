"""A resolver pointed at a test's ``LoopbackDns``: the tests' one way to get one, so
they never reach the system resolver."""

from __future__ import annotations

from helpers.dnsserver import LoopbackDns
from mailwright.dns.resolver import DnsResolver

LOOKUP_TIMEOUT = 2.0  # seconds per query against the loopback server


def resolver_for(server: LoopbackDns) -> DnsResolver:
    """The product's resolver, asking only ``server``."""
    return DnsResolver([server.address], timeout=LOOKUP_TIMEOUT)
