"""The MTA-STS policy cache on disk and the RFC 8461 §5.1 control flow around it:
survives a restart, expires after max_age (injected clock), refetches when the TXT id
changes, and keeps applying a fresh cached policy when DNS or the fetch fails."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from helpers.clock import FakeClock
from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.mtasts_env import ServedPolicies
from mailwright.delivery.tlspolicy.cache import CACHE_DIR_NAME, CachedPolicy, PolicyCache
from mailwright.delivery.tlspolicy.discover import (
    FETCH_RETRY_INTERVAL,
    MtaSts,
    StsOutcome,
    StsResult,
)
from mailwright.delivery.tlspolicy.mtasts import StsMode, StsPolicy
from mailwright.dns.resolver import DnsResolver

EPOCH = 1_800_000_000.0  # wall-clock seconds: the cache stores real timestamps
POLICY = StsPolicy(StsMode.ENFORCE, ("mx.example.test",), 86400)
BODY_V1 = b"version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"
BODY_V2 = b"version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 3600\n"
SILENT_TIMEOUT = 0.3


def zone(record_id: str) -> str:
    return f"""$ORIGIN example.test.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 60
_mta-sts IN TXT "v=STSv1; id={record_id};"
"""


def discover(
    dns: LoopbackDns, fetcher: ServedPolicies, data_dir: Path, clock: FakeClock
) -> StsOutcome:
    """A fresh process each time: new resolver (no DNS cache), new cache object."""
    resolver = DnsResolver([dns.address], timeout=SILENT_TIMEOUT)
    cache = PolicyCache(data_dir / CACHE_DIR_NAME, clock)
    return asyncio.run(MtaSts(resolver, fetcher, cache, clock).discover("example.test"))


def test_cache_survives_a_restart_as_a_json_file(tmp_path: Path) -> None:
    clock = FakeClock(EPOCH)
    PolicyCache(tmp_path, clock).put(CachedPolicy("example.test", "abc", POLICY, clock()))
    stored = json.loads((tmp_path / "example.test.json").read_text())
    assert stored["id"] == "abc" and stored["policy"]["mx"] == ["mx.example.test"]
    again = PolicyCache(tmp_path, clock).get("example.test")  # a new object: from disk
    assert again == CachedPolicy("example.test", "abc", POLICY, EPOCH)


def test_cached_policy_expires_after_max_age(tmp_path: Path) -> None:
    clock = FakeClock(EPOCH)
    PolicyCache(tmp_path, clock).put(CachedPolicy("example.test", "abc", POLICY, clock()))
    clock.advance(POLICY.max_age - 1)
    assert PolicyCache(tmp_path, clock).get("example.test") is not None
    clock.advance(1)
    cache = PolicyCache(tmp_path, clock)
    assert cache.get("example.test") is None
    assert cache.load("example.test") is not None  # still there, just not applied


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": 1}', b"[]"])
def test_damaged_cache_file_counts_as_absent(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "example.test.json").write_bytes(content)
    assert PolicyCache(tmp_path).get("example.test") is None


def test_unsafe_domain_names_are_never_file_names(tmp_path: Path) -> None:
    cache = PolicyCache(tmp_path)
    for name in ("../evil", ".hidden", "a/b", "UPPER.example", ""):
        assert cache.path(name) is None
        cache.put(CachedPolicy(name, "x", POLICY, EPOCH))
    assert list(tmp_path.iterdir()) == []


def test_same_id_uses_cache_new_id_refetches(loopback_dns: MakeDns, tmp_path: Path) -> None:
    clock = FakeClock(EPOCH)
    dns = loopback_dns(zone("one"))
    fetcher = ServedPolicies(BODY_V1)
    first = discover(dns, fetcher, tmp_path, clock)
    assert (first.result, first.policy, first.cached, fetcher.calls) == (
        StsResult.VALID,
        POLICY,
        False,
        1,
    )
    clock.advance(60)
    assert discover(dns, fetcher, tmp_path, clock).cached and fetcher.calls == 1
    # The domain publishes a new policy and a new id (§3.1): fetched despite max_age.
    dns.set_zone(zone("two"))
    fetcher.body = BODY_V2
    changed = discover(dns, fetcher, tmp_path, clock)
    assert (changed.policy_id, changed.policy.mx if changed.policy else (), fetcher.calls) == (
        "two",
        ("*.example.test",),
        2,
    )


def test_expired_policy_is_refetched(loopback_dns: MakeDns, tmp_path: Path) -> None:
    clock = FakeClock(EPOCH)
    dns = loopback_dns(zone("one"))
    fetcher = ServedPolicies(BODY_V1)
    discover(dns, fetcher, tmp_path, clock)
    clock.advance(POLICY.max_age)
    outcome = discover(dns, fetcher, tmp_path, clock)
    assert (outcome.cached, fetcher.calls) == (False, 2)


def test_fetch_failure_keeps_the_fresh_cached_policy(loopback_dns: MakeDns, tmp_path: Path) -> None:
    clock = FakeClock(EPOCH)
    dns = loopback_dns(zone("one"))
    fetcher = ServedPolicies(BODY_V1)
    discover(dns, fetcher, tmp_path, clock)
    dns.set_zone(zone("two"))  # a new id, but the new policy cannot be fetched
    fetcher.failure = "connection refused"
    outcome = discover(dns, fetcher, tmp_path, clock)
    assert outcome.result is StsResult.FETCH_ERROR
    assert (outcome.policy, outcome.policy_id, outcome.cached) == (POLICY, "one", True)
    assert "connection refused" in outcome.reason and "cached policy id one" in outcome.reason
    # Once the cached policy has expired there is nothing to apply: no policy at all.
    clock.advance(POLICY.max_age)
    expired = discover(dns, fetcher, tmp_path, clock)
    assert (expired.result, expired.policy) == (StsResult.FETCH_ERROR, None)


def test_dns_failure_or_vanished_record_keeps_the_cached_policy(
    loopback_dns: MakeDns, tmp_path: Path
) -> None:
    clock = FakeClock(EPOCH)
    fetcher = ServedPolicies(BODY_V1)
    discover(loopback_dns(zone("one")), fetcher, tmp_path, clock)
    # An attacker who drops the TXT answers (timeout) or strips the record (NONE)
    # does not remove a policy the sender already holds (RFC 8461 §5.1, §10.2).
    silent = loopback_dns(zone("one"), silent=["example.test"])
    timed_out = discover(silent, fetcher, tmp_path, clock)
    assert (timed_out.result, timed_out.policy) == (StsResult.FETCH_ERROR, POLICY)
    stripped = loopback_dns(zone("one").replace("_mta-sts IN TXT", "other IN TXT"))
    gone = discover(stripped, fetcher, tmp_path, clock)
    assert (gone.result, gone.policy, fetcher.calls) == (StsResult.NONE, POLICY, 1)


def test_failed_fetch_is_not_retried_for_five_minutes(
    loopback_dns: MakeDns, tmp_path: Path
) -> None:
    clock = FakeClock(EPOCH)
    dns = loopback_dns(zone("one"))
    fetcher = ServedPolicies(BODY_V1)
    fetcher.failure = "timed out"
    resolver = DnsResolver([dns.address], timeout=SILENT_TIMEOUT)
    sts = MtaSts(resolver, fetcher, PolicyCache(tmp_path, clock), clock)
    assert asyncio.run(sts.discover("example.test")).result is StsResult.FETCH_ERROR
    clock.advance(FETCH_RETRY_INTERVAL - 1)
    again = asyncio.run(sts.discover("example.test"))
    assert "not retried yet" in again.reason and fetcher.calls == 1
    fetcher.failure = None
    clock.advance(1)
    assert asyncio.run(sts.discover("example.test")).result is StsResult.VALID
    assert fetcher.calls == 2


def test_concurrent_deliveries_share_one_discovery(loopback_dns: MakeDns, tmp_path: Path) -> None:
    """A burst of deliveries to one domain: one TXT query and one fetch, not one each."""
    clock = FakeClock(EPOCH)
    dns = loopback_dns(zone("one"))
    fetcher = ServedPolicies(BODY_V1)
    resolver = DnsResolver([dns.address], timeout=SILENT_TIMEOUT)
    sts = MtaSts(resolver, fetcher, PolicyCache(tmp_path, clock), clock)

    async def burst() -> list[StsOutcome]:
        return await asyncio.gather(*(sts.discover("example.test") for _ in range(5)))

    outcomes = asyncio.run(burst())
    assert {o.policy for o in outcomes} == {POLICY}
    assert fetcher.calls == 1
    assert dns.asked("_mta-sts.example.test", "TXT") == 1


def test_memory_copy_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailwright.delivery.tlspolicy.cache.MAX_MEMORY_ENTRIES", 2)
    cache = PolicyCache(tmp_path, FakeClock(EPOCH))
    for name in ("a.test", "b.test", "c.test"):
        cache.put(CachedPolicy(name, "x", POLICY, EPOCH))
    assert list(cache._memory) == ["b.test", "c.test"]
    assert cache.get("a.test") is not None  # dropped from memory, read back from disk
