"""Relay access: who may send to domains that are not ours.

Only two kinds of client may relay (RFC 5321 §3.6.2 and §7.1: a server that relays
for anyone is an open relay): a session that authenticated (RFC 4954), and a client
inside a configured trusted network (Postfix ``mynetworks``).  Everyone else reaches
the pipeline's default, 550 5.7.1.

The hook runs after ``LocalRecipients``, which already decided every recipient in a
local domain (delivered or 550 5.1.1), so classic relay tricks that *parse* as local
(``user%other@local``, ``"user@other"@local``, ``other!user@local``) are delivered
locally or refused, never forwarded; and a source route (``@local:user@other``) is
reduced to its final mailbox by the parser, so it is judged by that domain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import Accept, Verdict
from mailwright.smtp import RcptTo

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(networks: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def in_networks(ip: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:a.b.c.d from a dual-stack socket
    return any(address in network for network in networks)


class RelayAccess:
    name = "relay_access"

    def __init__(self, trusted_networks: tuple[Network, ...]) -> None:
        self._trusted = trusted_networks

    def on_rcpt(self, ctx: SessionContext, rcpt: RcptTo) -> Verdict | None:
        if ctx.auth_user is not None:
            return Accept()
        if in_networks(ctx.peer_ip, self._trusted):
            return Accept()
        return None
