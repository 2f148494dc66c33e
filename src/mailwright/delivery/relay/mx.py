"""Destination -> the ordered addresses to try (RFC 5321 §5.1).

* MX records by preference, equal preferences shuffled (§5.1: "randomize them to
  spread the load"), the random source injected so tests are exact;
* no MX records but the domain exists (NODATA): the implicit MX, the domain itself;
* NXDOMAIN: permanent ``550 5.1.2``; a null MX (RFC 7505, one record with exchange
  "."): permanent ``556 5.1.10`` without trying anything (§4.1);
* CNAMEs are followed by the resolver (``Answer.canonical_name``); an MX target that
  is a CNAME is used as the resolver leaves it, as Postfix does;
* an internationalised domain is looked up by its A-labels (RFC 5891);
* A then AAAA records per host (IPv4 first: an IPv6 path that is configured but
  broken is the common failure); at most ``max_addresses`` in all (Postfix
  smtp_mx_address_limit);
* an address that is loopback, private, link-local, unspecified or multicast is not
  a place mail for another domain can go: dropped, and if nothing else is left the
  mail fails with ``554 5.4.6`` (a loop) unless ``allow_private`` (tests, private
  networks), and so is one of this host's interface addresses (``interfaces``) on
  any port.  An address *and port* one of our own listeners binds is always a loop;
* a DNS failure (timeout, SERVFAIL) on the domain's MX: temporary ``451 4.4.3``.

Explicit next hops (``[host]`` of a transport or the relayhost) are the operator's
choice: they skip the private-address rule but not the own-listener one.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from itertools import groupby

from mailwright.dns.types import Answer, DnsTemporaryError, MxRecord, Resolver
from mailwright.queue.agent import ReplySource
from mailwright.smtp import Reply, codes, to_ascii_domain
from mailwright.spool.model import RemoteSession


@dataclass(frozen=True, slots=True)
class Candidate:
    """One address to try: the host name (for TLS names and logs) and where it is."""

    host: str  # the MX host (A-labels), the domain itself for an implicit MX
    address: str
    port: int
    preference: int = 0
    mx_authentic: bool = False  # the MX answer came with AD (DANE needs it, RFC 7672)

    def __str__(self) -> str:
        # Postfix's form in its logs and DSNs: "mx.example.com[192.0.2.1]:25".
        return f"{self.host}[{self.address}]:{self.port}"


class RouteError(Exception):
    """No candidate: ``reply`` says whether it is permanent, ``reason`` why (log)."""

    def __init__(
        self,
        reply: Reply,
        reason: str,
        remote_host: str | None = None,
        session: RemoteSession | None = None,
        source: ReplySource = ReplySource.LOCAL,
    ) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason
        self.remote_host = remote_host  # the last host that answered at all, if any
        self.session = session  # that host's session, for the attempt history
        # REMOTE only when ``reply`` is that host's own answer (a 5xx greeting, a
        # refused EHLO); routing, TLS policy and connection failures are ours.
        self.source = source


# MTA-STS (RFC 8461 §4.1): the MX host names a domain's enforced policy allows, in
# the order given, from the names and whether the MX answer was authentic; with the
# reasons for the others.  ``delivery.tlspolicy`` provides it.
MxHostFilter = Callable[[list[str], bool], Awaitable[tuple[list[str], dict[str, str]]]]


@dataclass(frozen=True, slots=True)
class MxSettings:
    port: int
    max_addresses: int
    allow_private: bool = False
    own_endpoints: Collection[tuple[str, int]] = ()  # our listeners' (address, port)
    # This host's interface addresses (``interfaces``): an MX there is ourselves on any
    # port, a loop unless ``allow_private`` (tests and private networks run one host).
    own_addresses: Collection[str] = ()


def ascii_domain(domain: str) -> str:
    """The A-label form of a domain, or ``RouteError`` 5.1.2 (not a valid IDN)."""
    try:
        return to_ascii_domain(domain.rstrip(".").lower())
    except Exception as exc:  # idna raises several unrelated exception types
        raise RouteError(codes.R550_BAD_DOMAIN, f"{domain!r} is not a valid IDN: {exc}") from None


def is_special(address: str) -> bool:
    """Not a public unicast address: mail for another domain never goes there."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    )


def _canonical(address: str) -> str:
    """One text form per address ("::FFFF:1" and "::ffff:0.0.1" compare equal)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def literal_address(domain: str) -> str | None:
    """The address of a domain literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``,
    RFC 5321 §4.1.3), or None for a domain name."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        raise RouteError(codes.R550_BAD_DOMAIN, f"bad address literal {domain!r}") from None


def order_mx(records: tuple[MxRecord, ...], rng: random.Random) -> list[MxRecord]:
    """By preference, equal preferences in random order (RFC 5321 §5.1)."""
    ordered: list[MxRecord] = []
    by_pref = sorted(records, key=lambda r: r.preference)
    for _pref, group in groupby(by_pref, key=lambda r: r.preference):
        same = list(group)
        rng.shuffle(same)
        ordered.extend(same)
    return ordered


async def host_addresses(resolver: Resolver, host: str) -> tuple[list[str], bool]:
    """A then AAAA of ``host``; and whether the name exists.  A temporary failure of
    both raises; of one, the other's addresses are used."""
    answers: list[Answer[str]] = []
    failures: list[DnsTemporaryError] = []
    for lookup in (resolver.a, resolver.aaaa):
        try:
            answers.append(await lookup(host))
        except DnsTemporaryError as exc:
            failures.append(exc)
    if not answers:
        raise failures[0]
    return [a for answer in answers for a in answer.records], any(a.exists for a in answers)


class _Collector:
    """Candidates in order, bounded, with the reasons addresses were left out."""

    def __init__(self, settings: MxSettings, check_private: bool) -> None:
        self.settings = settings
        self.check_private = check_private and not settings.allow_private
        self.found: list[Candidate] = []
        self.seen: set[str] = set()
        self.looping: list[str] = []
        self.own_addresses = {_canonical(a) for a in settings.own_addresses}

    @property
    def full(self) -> bool:
        return len(self.found) >= self.settings.max_addresses

    def add(
        self, host: str, address: str, preference: int, port: int, authentic: bool = False
    ) -> None:
        if self.full or address in self.seen:
            return
        self.seen.add(address)
        candidate = Candidate(host, address, port, preference, authentic)
        ours = _canonical(address) in self.own_addresses
        if (address, port) in self.settings.own_endpoints or (
            self.check_private and (is_special(address) or ours)
        ):
            self.looping.append(str(candidate))
            return
        self.found.append(candidate)

    def result(self, what: str) -> list[Candidate]:
        if not self.found and self.looping:
            raise RouteError(
                codes.R554_MAIL_LOOP,
                f"{what}: only local or private addresses: {', '.join(self.looping)}",
            )
        return self.found


async def mx_candidates(
    resolver: Resolver,
    domain: str,
    settings: MxSettings,
    *,
    rng: random.Random,
    port: int | None = None,
    check_private: bool = True,
    mx_filter: MxHostFilter | None = None,
) -> list[Candidate]:
    """The addresses to try for mail to ``domain`` (see the module docstring);
    ``mx_filter`` drops the MX hosts an MTA-STS policy does not allow."""
    port = settings.port if port is None else port
    collector = _Collector(settings, check_private)
    literal = literal_address(domain)
    if literal is not None:  # RFC 5321 §5.1: no MX lookup for an address literal
        collector.add(literal, literal, 0, port)
        return collector.result(domain)
    name = ascii_domain(domain)
    try:
        mx = await resolver.mx(name)
    except DnsTemporaryError as exc:
        raise RouteError(codes.R451_DNS_TEMPORARY, f"MX lookup of {name}: {exc}") from None
    if not mx.exists:
        raise RouteError(codes.R550_DOMAIN_NOT_FOUND, f"{name}: no such domain (NXDOMAIN)")
    records = tuple(r for r in mx.records if r.exchange)
    if mx.records and not records:
        raise RouteError(codes.R556_NULL_MX, f"{name} publishes a null MX (RFC 7505)")
    if not records:  # §5.1: no MX, the domain is its own implicit MX at preference 0
        return await _implicit(resolver, name, collector, port)
    ordered = order_mx(records, rng)
    if mx_filter is not None:
        allowed, refused = await mx_filter([r.exchange for r in ordered], mx.authentic)
        if not allowed:  # RFC 8461 §5.1: temporary, a new policy may allow one
            raise RouteError(codes.R451_MTA_STS_NO_MX, "; ".join(refused.values()))
        ordered = [r for r in ordered if r.exchange in allowed]
    temporary: list[str] = []
    for record in ordered:
        if collector.full:
            break
        try:
            addresses, _exists = await host_addresses(resolver, record.exchange)
        except DnsTemporaryError as exc:
            temporary.append(f"{record.exchange}: {exc}")
            continue
        for address in addresses:
            collector.add(record.exchange, address, record.preference, port, mx.authentic)
    found = collector.result(name)
    if found:
        return found
    if temporary:
        raise RouteError(codes.R451_DNS_TEMPORARY, "; ".join(temporary))
    hosts = ", ".join(r.exchange for r in records)
    raise RouteError(codes.R451_NO_MX_ADDRESS, f"{name}: MX hosts without address: {hosts}")


async def _implicit(
    resolver: Resolver, name: str, collector: _Collector, port: int
) -> list[Candidate]:
    try:
        addresses, _exists = await host_addresses(resolver, name)
    except DnsTemporaryError as exc:
        raise RouteError(codes.R451_DNS_TEMPORARY, f"address lookup of {name}: {exc}") from None
    for address in addresses:
        collector.add(name, address, 0, port)
    found = collector.result(name)
    if not found:
        raise RouteError(codes.R550_NO_ADDRESS, f"{name}: no MX and no A/AAAA record")
    return found


async def host_candidates(
    resolver: Resolver, host: str, settings: MxSettings, port: int
) -> list[Candidate]:
    """An explicit next hop, ``[host]``: its addresses, no MX lookup, no private check."""
    collector = _Collector(settings, check_private=False)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        collector.add(host, host, 0, port)
        return collector.result(host)
    name = ascii_domain(host)
    try:
        addresses, exists = await host_addresses(resolver, name)
    except DnsTemporaryError as exc:
        raise RouteError(codes.R451_DNS_TEMPORARY, f"address lookup of {name}: {exc}") from None
    for address in addresses:
        collector.add(name, address, 0, port)
    found = collector.result(name)
    if not found:
        # The operator named this host: a missing address is a mistake to fix, not a
        # reason to bounce the mail.
        why = "has no address" if exists else "does not exist"
        raise RouteError(codes.R451_NO_MX_ADDRESS, f"next hop {name} {why}")
    return found
