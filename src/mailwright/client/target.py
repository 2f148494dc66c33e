"""Where ``mailwright send`` connects: ``--server HOST[:PORT]``, or the MX hosts of
the first recipient's domain.

MX hosts in preference order (RFC 5321 §5.1); equal preferences keep the order the
answer gave, so a test run is repeatable (a relay shuffles them to spread load; a test
client wants the same host twice).  No MX record: the domain itself is the implicit
MX (§5.1).  A null MX (RFC 7505 §3) means the domain accepts no mail: said so, no
connection.  Each host's addresses come IPv4 first then IPv6, filtered by ``-4/-6``;
the caller tries every address of every host until one answers (swaks stops at the
first MX).  Names are looked up through ``dns`` (``--dns`` picks the server), never
the system's getaddrinfo.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailwright.dns.types import DnsError, Resolver


class TargetError(Exception):
    """No address to try: bad --server, a domain without mail, a failed lookup
    (``temporary``: the DNS did not answer, trying later may help)."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # the name shown, used for SNI and certificate checks
    address: str
    port: int


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise TargetError(f"bad server {text!r}: use [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise TargetError(f"bad server {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"bad port {port_text!r} in {text!r}")
    return host, int(port_text)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


async def addresses(resolver: Resolver, host: str, family: int | None) -> list[str]:
    """``host``'s addresses (``family`` 4, 6 or None for both), IPv4 first."""
    literal = _ip(host)
    if literal is not None:
        if family is not None and literal.version != family:
            raise TargetError(f"{host} is not an IPv{family} address")
        return [host]
    found: list[str] = []
    try:
        if family in (None, 4):
            found += (await resolver.a(host)).records
        if family in (None, 6):
            found += (await resolver.aaaa(host)).records
    except DnsError as exc:
        raise TargetError(f"DNS lookup of {host} failed: {exc}", temporary=True) from None
    return found


async def resolve_targets(
    resolver: Resolver,
    *,
    server: str | None,
    recipient: str | None,
    port: int,
    family: int | None,
) -> list[Target]:
    """Every (host, address, port) to try, in order."""
    if server is not None:
        host, port = split_host_port(server, port)
        found = await addresses(resolver, host, family)
        if not found:
            raise TargetError(f"{host}: no address")
        return [Target(host, address, port) for address in found]
    if not recipient or "@" not in recipient:
        raise TargetError("no --server and no recipient domain to look up MX for")
    domain = recipient.rpartition("@")[2].strip("[]").lower()
    if _ip(domain) is not None:  # an address literal (RFC 5321 §4.1.3)
        return [Target(domain, domain, port)]
    try:
        answer = await resolver.mx(domain)
    except DnsError as exc:
        raise TargetError(f"MX lookup of {domain} failed: {exc}", temporary=True) from None
    if not answer.exists:
        raise TargetError(f"{domain}: no such domain (NXDOMAIN)")
    records = sorted(answer.records, key=lambda r: r.preference)
    if any(r.exchange == "" for r in records):
        raise TargetError(f"{domain}: null MX, the domain accepts no mail (RFC 7505)")
    hosts = [r.exchange for r in records] or [domain]  # implicit MX (RFC 5321 §5.1)
    targets: list[Target] = []
    for host in hosts:
        try:
            targets += [Target(host, a, port) for a in await addresses(resolver, host, family)]
        except TargetError:
            continue  # one MX without an answer: the next may have one
    if not targets:
        raise TargetError(f"{domain}: no address for {', '.join(hosts)}")
    return targets
