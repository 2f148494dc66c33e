"""A resolver pointed at a test's ``LoopbackDns``: the tests' one way to get one, so
they never reach the system resolver."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from helpers.dnsserver import LoopbackDns
from mailwright.dns.types import Answer, DnsTemporaryError, MxRecord

LIFETIME = 2.0  # seconds a lookup may take against the loopback server


class ZoneResolver:
    """The ``Resolver`` protocol's MX/A/AAAA over dnspython, against one server."""

    def __init__(self, server: LoopbackDns) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=False)
        self._resolver.nameservers = [server.host]
        self._resolver.port = server.port
        self._resolver.lifetime = LIFETIME

    async def _query(self, name: str, rdtype: str) -> tuple[list, bool, str]:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return [], False, name
        except dns.resolver.NoAnswer:
            return [], True, name
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTemporaryError(f"{name} {rdtype}: {exc}") from None
        canonical = answer.canonical_name.to_text().rstrip(".").lower()
        return list(answer), True, canonical

    async def mx(self, name: str) -> Answer[MxRecord]:
        rrs, exists, canonical = await self._query(name, "MX")
        records = tuple(
            MxRecord(r.preference, r.exchange.to_text().rstrip(".").lower()) for r in rrs
        )
        return Answer(records, exists, canonical_name=canonical)

    async def a(self, name: str) -> Answer[str]:
        rrs, exists, canonical = await self._query(name, "A")
        return Answer(tuple(r.address for r in rrs), exists, canonical_name=canonical)

    async def aaaa(self, name: str) -> Answer[str]:
        rrs, exists, canonical = await self._query(name, "AAAA")
        return Answer(tuple(r.address for r in rrs), exists, canonical_name=canonical)


def resolver_for(server: LoopbackDns) -> ZoneResolver:
    return ZoneResolver(server)
