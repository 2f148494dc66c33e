"""The 22 third-party MTA-STS cases (postfix-mta-sts-resolver's fixtures, in
``/work/shared/testdata/mta-sts/cases.yaml``) run end to end through our discovery:
TXT from a DNS server on loopback (``DnsResolver``), the policy from a loopback HTTPS
server over our real fetcher (certificate checks included), our parsers — and the
result (VALID with the parsed policy, NONE, FETCH_ERROR) must be the case's.  One test
id per case."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from helpers.dnsserver import LoopbackDns
from helpers.mtasts_env import PolicyServer, load_cases, require_cases, zone_for
from mailwright.delivery.tlspolicy.cache import PolicyCache
from mailwright.delivery.tlspolicy.discover import MtaSts, StsOutcome, StsResult
from mailwright.delivery.tlspolicy.fetch import HttpsPolicyFetcher, ResolverConnector
from mailwright.dns.resolver import DnsResolver

# The blackhole case: the DNS server never answers; the resolver gives up after this.
DNS_TIMEOUT = 0.5
FETCH_TIMEOUT = 5.0

# Why each failing case fails, in our words: a FETCH_ERROR for the wrong reason (say a
# certificate problem where the case is about the media type) must not pass.
FETCH_ERROR_REASONS = {
    "bad-policy1.loc": "policy line 'garbage' is not 'key: value'",
    "bad-policy2.loc": 'mode "enforce" with no mx line',
    "bad-policy3.loc": "media type text/html, not text/plain",
    "bad-policy4.loc": "HTTP status 404",
    "bad-policy5.loc": "max_age 'xxx' is not a number",
    "bad-policy6.loc": "max_age 31557601 is above the maximum",
    "bad-policy7.loc": "policy has no mode",
    "bad-policy8.loc": "mode 'doubt' is not enforce, testing or none",
    "static-overlength.loc": "(Content-Length 131193)",
    "chunked-overlength.loc": "policy larger than 65536 bytes",
    "bad-cert1.loc": "certificate not valid: unable to get local issuer certificate",
    "bad-cert2.loc": "certificate not valid: Hostname mismatch",
    "blackhole.loc": "TXT lookup for _mta-sts.blackhole.loc failed",
}

_DOCUMENT = load_cases()
CASE_IDS = [c["domain"] for c in _DOCUMENT["cases"]] if _DOCUMENT else ["cases.yaml-absent"]


class World:
    def __init__(self, dns: LoopbackDns, web: PolicyServer, ca_file: Path) -> None:
        self.dns = dns
        self.web = web
        self.ca_file = ca_file

    def mta_sts(self, cache_dir: Path) -> MtaSts:
        resolver = DnsResolver([self.dns.address], timeout=DNS_TIMEOUT)
        fetcher = HttpsPolicyFetcher(
            ResolverConnector(resolver),
            extra_ca_file=self.ca_file,
            timeout=FETCH_TIMEOUT,
            port=self.web.port,
        )
        return MtaSts(resolver, fetcher, PolicyCache(cache_dir))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    document = require_cases()
    cases: list[dict[str, Any]] = document["cases"]
    assert len(cases) == 22, "cases.yaml changed: update this test's reasons"
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    silent = [c["domain"] for c in cases if c["txt_records"] is None]
    with (
        LoopbackDns(zone_for(cases), silent=silent) as dns,
        PolicyServer(cases, ca) as web,
    ):
        yield World(dns, web, ca_file)


def discover(world: World, cache_dir: Path, domain: str) -> StsOutcome:
    return asyncio.run(world.mta_sts(cache_dir).discover(domain))


@pytest.mark.parametrize("domain", CASE_IDS)
def test_shared_mta_sts_case(world: World, tmp_path: Path, domain: str) -> None:
    case = next(c for c in require_cases()["cases"] if c["domain"] == domain)
    expect = case["expect"]
    outcome = discover(world, tmp_path, domain)
    assert outcome.result == StsResult(expect["result"]), outcome.reason
    if outcome.result is StsResult.VALID:
        assert outcome.policy is not None and outcome.policy.to_dict() == expect["policy"]
        assert outcome.policy_id == require_cases()["record_id"]
    else:
        assert outcome.policy is None
    if outcome.result is StsResult.FETCH_ERROR:
        assert FETCH_ERROR_REASONS[domain] in outcome.reason
    if outcome.result is StsResult.VALID or domain.startswith(("bad-policy", "bad-cert")):
        # A record was found, so the fetcher went to the web server (or tried to: a
        # certificate refused is a handshake without a request).
        served = world.web.requests.get(f"mta-sts.{domain}", 0)
        assert served >= 1 or domain.startswith("bad-cert")


@pytest.mark.parametrize(
    "form", [f["query"] for f in (_DOCUMENT or {}).get("query_forms", []) if "resolver" in f]
)
def test_shared_query_forms(world: World, tmp_path: Path, form: str) -> None:
    """A trailing dot is dropped; a leading dot is not a domain (upstream: NONE)."""
    expected = next(f["resolver"] for f in require_cases()["query_forms"] if f["query"] == form)
    assert discover(world, tmp_path, form).result == StsResult(expected)


def test_unchanged_id_uses_the_cache_without_fetching(world: World, tmp_path: Path) -> None:
    """Upstream's NOT_CHANGED: the same TXT id again, the policy fresh — no fetch."""
    first = discover(world, tmp_path, "good.loc")
    fetched = world.web.requests["mta-sts.good.loc"]
    again = discover(world, tmp_path, "good.loc")  # a new MtaSts: the cache is on disk
    assert (first.cached, again.cached) == (False, True)
    assert again.policy == first.policy
    assert world.web.requests["mta-sts.good.loc"] == fetched


def test_absent_cases_skip_or_fail_when_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's clone without /work/shared skips with a reason; CI
    (MAILWRIGHT_REQUIRE_INTEROP=1) cannot pass by skipping."""
    monkeypatch.setattr("helpers.mtasts_env.CASES_FILE", tmp_path / "absent.yaml")
    monkeypatch.delenv("MAILWRIGHT_REQUIRE_INTEROP", raising=False)
    with pytest.raises(pytest.skip.Exception, match="shared MTA-STS cases are not here"):
        require_cases()
    monkeypatch.setenv("MAILWRIGHT_REQUIRE_INTEROP", "1")
    with pytest.raises(pytest.fail.Exception, match="MAILWRIGHT_REQUIRE_INTEROP=1 requires"):
        require_cases()
