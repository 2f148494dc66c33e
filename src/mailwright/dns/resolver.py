"""``DnsResolver``: the one ``Resolver`` implementation, a stub resolver over dnspython.

It asks the configured recursive servers in order (one attempt each, ``timeout`` seconds
apiece, UDP with a TCP retry when the answer is truncated — RFC 7766 §5) and turns the
response into the typed answers of ``dns.types``.  It does not use dnspython's resolver
or its cache: that one raises NoAnswer/NXDOMAIN instead of caching them with the SOA's
negative TTL, and keeps no record of the AD bit or of which server answered, which is what
``authentic`` depends on.

Outcomes, as ``dns.types`` defines them: NOERROR with records, NOERROR without (NODATA),
NXDOMAIN; everything else — no response in time, SERVFAIL, REFUSED, an unreachable or
garbled server — from every server is ``DnsTemporaryError``.

DNSSEC: the query carries the AD bit (RFC 6840 §5.7: a stub that wants the resolver's
validation result sets AD rather than DO), and ``authentic`` is reported only when the
response has AD *and* came from a server in ``trusted`` (RFC 4035 §4.9.3, RFC 6698 §4.1:
a stub may trust AD only over a secure channel to a resolver it trusts — by default one on
loopback).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset

from mailwright.dns.cache import DEFAULT_CACHE_SIZE, AnswerCache, CacheKey
from mailwright.dns.names import name_text, query_name
from mailwright.dns.servers import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    DEFAULT_TRUSTED,
    DNS_PORT,
    MAX_ATTEMPTS,
    Network,
)
from mailwright.dns.types import Answer, DnsTemporaryError, MxRecord, TlsaRecord

T = TypeVar("T")

EDNS_PAYLOAD = 1232  # bytes; DNS Flag Day 2020's UDP size, no IP fragmentation
MAX_TTL = 2**31 - 1  # seconds; RFC 2181 §8
CNAME_CHAIN_LIMIT = 11  # CNAMEs followed in one answer; unbound's MAX_RESTART_COUNT
RESOLV_CONF = "/etc/resolv.conf"
# resolv.conf(5): "If no nameserver entries are present, the default is to use the name
# server on the local machine."
LOCAL_NAMESERVER = ("127.0.0.1", DNS_PORT)


def system_nameservers(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The ``nameserver`` lines of resolv.conf, as the C library would use them."""
    try:
        conf = dns.resolver.Resolver(filename=path, configure=True)
    except (OSError, dns.exception.DNSException):
        return [LOCAL_NAMESERVER]
    found = [(str(ns), conf.port) for ns in conf.nameservers]
    return found or [LOCAL_NAMESERVER]


@dataclass(frozen=True, slots=True)
class _Response:
    """One lookup's result before it is typed: the records' rdata (or none), whether the
    name exists, the name the CNAME chain ended at, how long it may be cached, AD."""

    rdatas: tuple[dns.rdata.Rdata, ...]
    exists: bool
    canonical: dns.name.Name
    ttl: float
    authentic: bool


class DnsResolver:
    """See the module docstring.  ``nameservers=None`` reads the system's resolv.conf."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        trusted: Sequence[Network] = DEFAULT_TRUSTED,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.nameservers = list(nameservers) if nameservers is not None else system_nameservers()
        if not self.nameservers:
            raise ValueError("no nameservers")
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ValueError(f"attempts must be 1-{MAX_ATTEMPTS}")
        self.timeout = timeout
        self.attempts = attempts
        self.trusted = tuple(trusted)
        self.cache = AnswerCache(cache_size, clock)
        self._pending: dict[CacheKey, asyncio.Future[Any]] = {}

    # -- the Resolver protocol --------------------------------------------------------

    async def mx(self, name: str) -> Answer[MxRecord]:
        return await self._lookup(name, dns.rdatatype.MX, _mx)

    async def a(self, name: str) -> Answer[str]:
        return await self._lookup(name, dns.rdatatype.A, _address)

    async def aaaa(self, name: str) -> Answer[str]:
        return await self._lookup(name, dns.rdatatype.AAAA, _address)

    async def txt(self, name: str) -> Answer[str]:
        return await self._lookup(name, dns.rdatatype.TXT, _txt)

    async def tlsa(self, name: str) -> Answer[TlsaRecord]:
        return await self._lookup(name, dns.rdatatype.TLSA, _tlsa)

    async def ptr(self, address: str) -> Answer[str]:
        try:
            name = dns.reversename.from_address(address.strip())
        except (ValueError, dns.exception.DNSException):
            return Answer(records=(), exists=False)  # not an IP: no such reverse name
        return await self._lookup(name.to_text(), dns.rdatatype.PTR, _ptr)

    # -- lookup, cache, query ---------------------------------------------------------

    async def _lookup(
        self,
        text: str,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[Any], T],
    ) -> Answer[T]:
        # The cache is asked before the name is parsed: a hit (the common case in a
        # queue run) then costs a dict look-up, not a dns.name.Name.  An ASCII name's
        # key is its own text, folded as DNS compares names (RFC 4343); only names that
        # went out (valid ones) are ever cached.
        text = text.strip()
        ascii_key = text.lower().removesuffix(".") if text.isascii() else None
        if ascii_key is not None:
            cached = self.cache.get((ascii_key, int(rdtype)))
            if cached is not None:
                return cached
        qname = query_name(text)
        if qname is None:  # no such name can exist, so it does not
            return Answer(records=(), exists=False)
        key = (name_text(qname) if ascii_key is None else ascii_key, int(rdtype))
        if ascii_key is None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        # Lookups of the same name and type that overlap share one query (a queue run
        # delivering many messages to one domain asks for its MX once).  The query is a
        # task of its own, shielded: a caller that gives up does not cancel it for the
        # others, and its answer still reaches the cache.
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._fetch(qname, rdtype, key, convert))
            self._pending[key] = pending
            pending.add_done_callback(functools.partial(self._settled, key))
        return await asyncio.shield(pending)

    async def _fetch(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        key: CacheKey,
        convert: Callable[[Any], T],
    ) -> Answer[T]:
        response = await self._ask(qname, rdtype)
        answer: Answer[T] = Answer(
            records=tuple(convert(rdata) for rdata in response.rdatas),
            exists=response.exists,
            authentic=response.authentic,
            canonical_name=name_text(response.canonical),
        )
        self.cache.put(key, answer, response.ttl, negative=not response.rdatas)
        return answer

    def _settled(self, key: CacheKey, task: asyncio.Future[Any]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up on it

    async def _ask(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Response:
        """Each server in turn; then again, up to ``attempts`` rounds, those that did not
        answer at all (a lost datagram is worth another try, as the C library's resolver
        does; a server that answered SERVFAIL or REFUSED would only say so again)."""
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
        query.flags |= dns.flags.AD
        failures: dict[tuple[str, int], str] = {}
        silent = list(self.nameservers)
        for _ in range(self.attempts):
            servers, silent = silent, []
            for host, port in servers:
                try:
                    async with asyncio.timeout(self.timeout):
                        message, _ = await dns.asyncquery.udp_with_fallback(query, host, port=port)
                except TimeoutError:
                    failures[host, port] = f"no answer in {self.timeout:g}s"
                    silent.append((host, port))
                    continue
                except (OSError, EOFError, dns.exception.DNSException) as exc:
                    failures[host, port] = f"{exc.__class__.__name__}: {exc}"
                    silent.append((host, port))
                    continue
                rcode = message.rcode()
                if _is_referral(message):
                    failures[host, port] = "referral (not a recursive resolver)"
                elif rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    return _read(message, qname, rdtype, authentic=self._trusts(host))
                else:
                    failures[host, port] = dns.rcode.to_text(rcode)
            if not silent:
                break
        what = f"{name_text(qname)}/{dns.rdatatype.to_text(rdtype)}"
        said = "; ".join(f"{host}#{port}: {why}" for (host, port), why in failures.items())
        raise DnsTemporaryError(f"{what}: {said}")

    def _trusts(self, host: str) -> bool:
        address = ipaddress.ip_address(host)
        return any(address in network for network in self.trusted)


def _read(
    message: dns.message.Message,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    authentic: bool,
) -> _Response:
    """Follow the CNAME chain from ``qname`` through the answer section (RFC 1034
    §4.3.2: the server puts the chain and the records at its end there)."""
    name, ttl = qname, float(MAX_TTL)
    for _ in range(CNAME_CHAIN_LIMIT + 1):
        rrset = _find(message, name, rdtype)
        if rrset is not None:
            return _Response(
                rdatas=tuple(rrset),
                exists=True,
                canonical=name,
                ttl=min(ttl, rrset.ttl),
                authentic=authentic and _ad(message),
            )
        cname = _find(message, name, dns.rdatatype.CNAME)
        if cname is None:
            break
        ttl = min(ttl, cname.ttl)
        name = cname[0].target
    else:
        raise DnsTemporaryError(f"{name_text(qname)}: CNAME chain longer than {CNAME_CHAIN_LIMIT}")
    # Negative: NXDOMAIN (RFC 6604: the rcode is about the end of the chain) or NODATA,
    # cached per the SOA in the authority section (RFC 2308 §5), not at all without one.
    negative_ttl = 0.0
    for rrset in message.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            negative_ttl = min(ttl, rrset.ttl, rrset[0].minimum)
            break
    return _Response(
        rdatas=(),
        exists=message.rcode() != dns.rcode.NXDOMAIN,
        canonical=name,
        ttl=negative_ttl,
        authentic=authentic and _ad(message),
    )


def _is_referral(message: dns.message.Message) -> bool:
    """NOERROR, no answer, NS records and no SOA in the authority section: a referral
    (RFC 2308 §2.2), which only a server that does not recurse sends.  Taken as NODATA
    it would make a domain look as if it had no MX and no address; it is a failure of
    that server instead."""
    if message.rcode() != dns.rcode.NOERROR or message.answer:
        return False
    types = {rrset.rdtype for rrset in message.authority}
    return dns.rdatatype.NS in types and dns.rdatatype.SOA not in types


def _find(
    message: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    for rrset in message.answer:
        if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN and rrset.name == name:
            return rrset
    return None


def _ad(message: dns.message.Message) -> bool:
    return bool(message.flags & dns.flags.AD)


# -- rdata -> typed records -----------------------------------------------------------


def _mx(rdata: Any) -> MxRecord:
    return MxRecord(preference=rdata.preference, exchange=name_text(rdata.exchange))


def _address(rdata: Any) -> str:
    return str(rdata.address)


def _txt(rdata: Any) -> str:
    # One record's strings are one value, joined without a separator (RFC 7208 §3.3,
    # RFC 6376 §3.6.2.2); bytes that are not UTF-8 are kept visible, not dropped.
    return b"".join(rdata.strings).decode("utf-8", "replace")


def _tlsa(rdata: Any) -> TlsaRecord:
    return TlsaRecord(
        usage=rdata.usage, selector=rdata.selector, matching_type=rdata.mtype, data=rdata.cert
    )


def _ptr(rdata: Any) -> str:
    return name_text(rdata.target)
