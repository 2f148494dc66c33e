"""Local recipients: accept known addresses of local domains, refuse unknown ones.

RFC 5321 §3.3 lets a server refuse a recipient at RCPT time; doing it there (550
5.1.1) rather than bouncing later is what avoids backscatter.  Recipients outside the
local domains get Continue, so the relay hooks (authenticated users, trusted
networks) may accept them; if none does, the pipeline refuses with 550 5.7.1.

RFC 5321 §4.5.1: postmaster must be reachable at every domain *and address literal*
the server accepts mail for.  ``postmaster@[<the address this connection reached>]``
(IPv4 or ``[IPv6:...]``) is therefore accepted, and the session stores it as the
bare ``Postmaster`` (``envelope_recipient``), which the directory and the router
already deliver to the primary domain's postmaster.  Any other local part at a
literal, and postmaster at a literal that is not ours, are not local: they go on to
the relay hooks (so an unauthenticated client still gets 550 5.7.1).
"""

from __future__ import annotations

import ipaddress

from mailwright.accounts.directory import POSTMASTER, LocalDirectory
from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import Accept, Reject, Verdict
from mailwright.smtp import Address, RcptTo, codes

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IP | None:
    """``text`` as an IP address: scope id dropped, IPv4-mapped IPv6 as IPv4."""
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket reports ::ffff:a.b.c.d
    return ip


def literal_ip(domain: str) -> IP | None:
    """The IP of an address literal (RFC 5321 §4.1.3), None for a domain name or a
    General-address-literal."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    return _ip(inner)


def is_own_postmaster(address: Address, local_ip: str) -> bool:
    """``postmaster@[<local_ip>]``: the postmaster at this connection's own address."""
    if address.local_part.strip('"').lower() != POSTMASTER:
        return False
    ip = literal_ip(address.domain)
    return ip is not None and ip == _ip(local_ip)


def envelope_recipient(address: Address, local_ip: str) -> str:
    """The recipient as the spool stores it: ``Postmaster`` for our own postmaster at
    an address literal (see the module docstring), else the address as given."""
    return POSTMASTER if is_own_postmaster(address, local_ip) else str(address)


class LocalRecipients:
    name = "local_recipients"

    def __init__(self, directory: LocalDirectory) -> None:
        self._directory = directory

    def on_rcpt(self, ctx: SessionContext, rcpt: RcptTo) -> Verdict | None:
        address = rcpt.address
        if address.domain.startswith("["):
            return Accept() if is_own_postmaster(address, ctx.local_ip) else None
        if address.domain and not self._directory.is_local_domain(address.domain):
            return None
        if self._directory.resolve(str(address)) is None:
            return Reject(codes.R550_NO_SUCH_USER, f"unknown local recipient {address}")
        return Accept()
