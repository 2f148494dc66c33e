"""MTA-STS discovery for one recipient domain: the TXT record, the cache, the fetch —
RFC 8461 §3 and the control flow of §5.1.

1. Look up ``_mta-sts.<domain>`` TXT.  A valid record whose id equals the cached
   policy's, with that policy still fresh: use the cache, nothing fetched.
2. A new id, no cached policy, or an expired one: fetch and parse.  Success replaces
   the cache entry (and its expiry) on disk.
3. Anything failing — the TXT lookup, the fetch, the parse — with a fresh cached
   policy: apply the cached one (§3.3: "if no 'live' policy can be discovered via DNS
   or fetched via HTTPS, but a valid (non-expired) policy exists in the sender's
   cache, the sender MUST apply that cached policy").  Without one: no policy
   (§3.3: "continue with delivery as though the domain has not implemented MTA-STS").

A fetch that failed is not retried for the same (domain, id) for
``FETCH_RETRY_INTERVAL`` seconds (§3.3 suggests "five minutes or longer per version
ID"), so a queue full of mail for a broken domain does not hammer its web server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from mailwright.delivery.tlspolicy.cache import CachedPolicy, PolicyCache
from mailwright.delivery.tlspolicy.fetch import PolicyFetcher, PolicyFetchError, check_response
from mailwright.delivery.tlspolicy.mtasts import (
    StsError,
    StsPolicy,
    parse_policy,
    parse_txt_records,
)
from mailwright.dns.types import DnsTemporaryError, Resolver

log = logging.getLogger(__name__)

# RFC 8461 §3.3: "limit further attempts to a period of five minutes or longer per
# version ID" after a failed fetch.
FETCH_RETRY_INTERVAL = 300.0
TXT_PREFIX = "_mta-sts."  # RFC 8461 §3.1
# Failed fetches remembered for the retry interval; beyond this many, the oldest go
# (a bound on memory when many domains publish broken policies).
MAX_FAILED_ENTRIES = 10_000


class StsResult(StrEnum):
    """What discovery found this time (the names of postfix-mta-sts-resolver's
    ``STSFetchResult``, which the shared test cases use)."""

    VALID = "VALID"  # a policy was fetched (or the cached one is current)
    NONE = "NONE"  # the domain publishes no (usable) MTA-STS record
    FETCH_ERROR = "FETCH_ERROR"  # a record, but no policy could be had this time


@dataclass(frozen=True, slots=True)
class StsOutcome:
    result: StsResult
    policy: StsPolicy | None  # the policy to apply: fresh, cached, or None
    policy_id: str = ""
    reason: str = ""  # for the delivery log line
    cached: bool = False  # ``policy`` came from the cache, not from this fetch


def policy_domain(domain: str) -> str | None:
    """The domain to look up for a recipient domain: lower case, trailing dot dropped;
    None for an address literal or a malformed name (no MTA-STS for those)."""
    name = domain.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    if not name or name.startswith((".", "[")) or ".." in name:
        return None
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


class MtaSts:
    def __init__(
        self,
        resolver: Resolver,
        fetcher: PolicyFetcher,
        cache: PolicyCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.fetcher = fetcher
        self.cache = cache
        self.clock = clock
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}
        self._inflight: dict[str, asyncio.Future[StsOutcome]] = {}

    async def discover(self, recipient_domain: str) -> StsOutcome:
        """The MTA-STS state of ``recipient_domain`` (module docstring).  Concurrent
        calls for one domain share one discovery: a burst of deliveries to a domain
        costs one TXT lookup and at most one fetch, not one each."""
        domain = policy_domain(recipient_domain)
        if domain is None:
            return StsOutcome(StsResult.NONE, None, reason="not a domain name: no MTA-STS")
        task = self._inflight.get(domain)
        if task is None:
            task = asyncio.ensure_future(self._discover(domain))
            self._inflight[domain] = task
            task.add_done_callback(lambda _done: self._inflight.pop(domain, None))
        # shield: one caller cancelled (its delivery timed out) must not cancel the
        # discovery the others are waiting for.
        return await asyncio.shield(task)

    async def _discover(self, domain: str) -> StsOutcome:
        cached = await asyncio.to_thread(self.cache.get, domain)
        try:
            answer = await self.resolver.txt(TXT_PREFIX + domain)
        except DnsTemporaryError as exc:
            return self._fallback(cached, f"TXT lookup for {TXT_PREFIX}{domain} failed: {exc}")
        record = parse_txt_records(answer.records)
        if record is None:
            why = "no valid MTA-STS TXT record"
            if cached is not None:
                # §5.1: the record may be blocked by an attacker; a fresh policy stands.
                return self._use_cached(cached, StsResult.NONE, why)
            return StsOutcome(StsResult.NONE, None, reason=why)
        if cached is not None and cached.policy_id == record.id:
            return StsOutcome(
                StsResult.VALID, cached.policy, record.id, f"policy id {record.id}", cached=True
            )
        failed = self._failed.get((domain, record.id))
        if failed is not None and self.clock() - failed[0] < FETCH_RETRY_INTERVAL:
            return self._fallback(cached, f"{failed[1]} (not retried yet)", record.id)
        try:
            policy = await self._fetch(domain)
        except (PolicyFetchError, StsError) as exc:
            self._remember_failure(domain, record.id, str(exc))
            return self._fallback(cached, f"policy fetch failed: {exc}", record.id)
        self._failed.pop((domain, record.id), None)
        entry = CachedPolicy(domain, record.id, policy, self.clock())
        try:
            await asyncio.to_thread(self.cache.put, entry)
        except OSError as exc:  # delivery goes on; the next fetch tries again
            log.warning("MTA-STS: could not cache the policy of %s: %s", domain, exc)
        return StsOutcome(StsResult.VALID, policy, record.id, f"policy id {record.id}")

    async def _fetch(self, domain: str) -> StsPolicy:
        fetched = await self.fetcher.fetch(domain)
        return parse_policy(check_response(fetched))

    def _remember_failure(self, domain: str, policy_id: str, why: str) -> None:
        now = self.clock()
        if len(self._failed) >= MAX_FAILED_ENTRIES:
            stale = [k for k, (at, _) in self._failed.items() if now - at >= FETCH_RETRY_INTERVAL]
            for key in stale or list(self._failed)[: MAX_FAILED_ENTRIES // 2]:
                del self._failed[key]
        self._failed[(domain, policy_id)] = (now, why)

    def _fallback(self, cached: CachedPolicy | None, why: str, policy_id: str = "") -> StsOutcome:
        if cached is not None:
            return self._use_cached(cached, StsResult.FETCH_ERROR, why)
        return StsOutcome(StsResult.FETCH_ERROR, None, policy_id, why)

    @staticmethod
    def _use_cached(cached: CachedPolicy, result: StsResult, why: str) -> StsOutcome:
        reason = f"{why}; applying the cached policy id {cached.policy_id} (RFC 8461 §5.1)"
        return StsOutcome(result, cached.policy, cached.policy_id, reason, cached=True)
