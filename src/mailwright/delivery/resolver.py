"""The resolver the composition root hands to everything that looks names up, built
from ``[dns]`` (the ``dns`` package sits below ``config`` and cannot read it)."""

from __future__ import annotations

import ipaddress

from mailwright.config import DnsConfig
from mailwright.dns.resolver import DnsResolver
from mailwright.dns.servers import parse_nameserver


def build_resolver(config: DnsConfig) -> DnsResolver:
    """One ``DnsResolver`` for ``config``: its servers, or resolv.conf's when none are
    listed; its timeout and attempts; the networks whose AD bit is believed."""
    servers = [parse_nameserver(entry) for entry in config.nameservers] or None
    trusted = [ipaddress.ip_network(net, strict=False) for net in config.trusted_resolvers]
    return DnsResolver(servers, timeout=config.timeout, attempts=config.attempts, trusted=trusted)
