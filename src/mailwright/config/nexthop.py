"""Next hops: where a route leads, in Postfix's syntax (``[host]:port`` skips MX lookup).

``parse_host_port`` reads ``relayhost`` (Postfix relayhost); ``parse_nexthop`` reads a
transport's ``nexthop`` (Postfix transport(5): ``smtp:``, ``lmtp:`` per RFC 2033,
``local``).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum

from mailwright.config.base import Frozen


class NextHopKind(StrEnum):
    SMTP = "smtp"
    LMTP = "lmtp"  # RFC 2033: a mailbox store (Dovecot)
    LOCAL = "local"  # this host's Maildir agent


class NextHop(Frozen):
    """Where a route leads.  Postfix's syntax: ``[host]`` means "this host, no MX
    lookup"; a bare host name is looked up as a mail domain (its MX records)."""

    kind: NextHopKind
    host: str = ""  # "" for local and for LMTP over a UNIX socket
    port: int | None = None  # None: the route's default ([outbound] port, LMTP 24)
    mx_lookup: bool = False
    unix_path: str = ""  # LMTP over a UNIX-domain socket

    def __str__(self) -> str:
        if self.kind is NextHopKind.LOCAL:
            return "local"
        if self.unix_path:
            return f"{self.kind}:unix:{self.unix_path}"
        host = self.host if self.mx_lookup else f"[{self.host}]"
        return f"{self.kind}:{host}" + (f":{self.port}" if self.port is not None else "")


def parse_host_port(spec: str) -> tuple[str, int | None, bool]:
    """``host``, ``host:port``, ``[host]``, ``[host]:port`` (IPv6 inside brackets) ->
    (host, port or None, MX lookup wanted).  ``ValueError`` names what is wrong."""
    spec = spec.strip()
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        mx_lookup = False
        if not bracket:
            raise ValueError(f"{spec!r}: missing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{spec!r}: expected [host]:port")
        port_text = rest[1:] if rest else None
    else:
        if spec.count(":") > 1:
            raise ValueError(f"{spec!r}: write an IPv6 address in brackets, e.g. [::1]:25")
        host, colon, port_text_ = spec.partition(":")
        port_text = port_text_ if colon else None
        mx_lookup = True
    host = host.strip().rstrip(".").lower()
    if not host:
        raise ValueError(f"{spec!r}: no host name")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"{spec!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    try:  # an address is never looked up as a mail domain
        ipaddress.ip_address(host)
        mx_lookup = False
    except ValueError:
        pass
    return host, port, mx_lookup


def parse_nexthop(spec: str) -> NextHop:
    """A transport's ``nexthop``: ``smtp:[host]:port``, ``smtp:host`` (MX lookup of
    host), ``lmtp:host:port``, ``lmtp:unix:/path``, ``local``."""
    kind_text, colon, rest = spec.strip().partition(":")
    try:
        kind = NextHopKind(kind_text.lower())
    except ValueError:
        raise ValueError(
            f"{spec!r}: expected smtp:HOST, smtp:[HOST]:PORT, lmtp:HOST:PORT, "
            "lmtp:unix:/PATH or local"
        ) from None
    if kind is NextHopKind.LOCAL:
        if colon:
            raise ValueError(f"{spec!r}: local takes no host")
        return NextHop(kind=kind)
    if kind is NextHopKind.LMTP and rest.startswith("unix:"):
        path = rest.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"{spec!r}: the socket path must be absolute")
        return NextHop(kind=kind, unix_path=path)
    host, port, mx_lookup = parse_host_port(rest)
    if kind is NextHopKind.LMTP:
        mx_lookup = False  # RFC 2033 §4: LMTP is never used with MX records
    return NextHop(kind=kind, host=host, port=port, mx_lookup=mx_lookup)
