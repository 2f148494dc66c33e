"""Precedence of TLS policies per (recipient domain, MX host): DANE > MTA-STS enforce >
[[tls_policy]] > MTA-STS testing > opportunistic; the MX filter of an enforced policy;
and that each policy says which rule chose it and why.  DNS from a loopback server
(AD only where the test says), MTA-STS policies through the fetcher seam."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from helpers.dnsserver import MakeDns
from helpers.mtasts_env import ServedPolicies
from mailwright.config import parse_config
from mailwright.delivery.tlspolicy import MxFilter, TlsPolicyDecider, build_decider
from mailwright.delivery.tlspolicy.cache import PolicyCache
from mailwright.delivery.tlspolicy.discover import MtaSts
from mailwright.dns.resolver import DnsResolver
from mailwright.net.outbound.tlspolicy import TlsMode, TlsPolicy

DOMAIN = "example.test"
MX = "mx.example.test"
ROGUE = "mx.rogue.test"
TLSA_DIGEST = hashlib.sha256(b"pinned key").hexdigest()
ENFORCE = b"version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 86400\n"
TESTING = b"version: STSv1\nmode: testing\nmx: *.example.test\nmax_age: 86400\n"
NONE = b"version: STSv1\nmode: none\nmax_age: 86400\n"


def zone(*, sts: bool = True, tlsa_for: tuple[str, ...] = ()) -> str:
    lines = [
        "$ORIGIN test.",
        "$TTL 300",
        "@ IN SOA ns hostmaster 1 3600 600 86400 60",
        f"{DOMAIN}. IN MX 10 {MX}.",
        f"{DOMAIN}. IN MX 20 {ROGUE}.",
    ]
    if sts:
        lines.append(f'_mta-sts.{DOMAIN}. IN TXT "v=STSv1; id=1;"')
    lines += [f"_25._tcp.{host}. IN TLSA 3 1 1 {TLSA_DIGEST}" for host in tlsa_for]
    return "\n".join(lines) + "\n"


class Setup:
    def __init__(
        self,
        loopback_dns: MakeDns,
        tmp_path: Path,
        *,
        body: bytes | None = ENFORCE,
        tlsa_for: tuple[str, ...] = (),
        authentic: bool = True,
        configured: dict[str, TlsMode] | None = None,
    ) -> None:
        self.dns = loopback_dns(
            zone(sts=body is not None, tlsa_for=tlsa_for),
            authentic=["test"] if authentic else [],
        )
        resolver = DnsResolver([self.dns.address], timeout=0.5)
        self.fetcher = ServedPolicies(body or b"")
        sts = MtaSts(resolver, self.fetcher, PolicyCache(tmp_path))
        self.decider = TlsPolicyDecider(resolver, sts, configured)

    def policy(self, host: str = MX, *, mx_authentic: bool = True) -> TlsPolicy:
        return asyncio.run(self.decider.decide(DOMAIN, host, mx_authentic=mx_authentic))

    def filter(self, *, mx_authentic: bool = True) -> MxFilter:
        async def run() -> MxFilter:
            plan = await self.decider.plan(DOMAIN)
            return await plan.filter_mx([MX, ROGUE], mx_authentic=mx_authentic)

        return asyncio.run(run())


def test_no_policy_anywhere_is_opportunistic(loopback_dns: MakeDns, tmp_path: Path) -> None:
    policy = Setup(loopback_dns, tmp_path, body=None).policy()
    assert (policy.mode, policy.source, policy.required) == (
        TlsMode.OPPORTUNISTIC,
        "default",
        False,
    )
    assert "no valid MTA-STS TXT record" in policy.reason
    assert "no TLSA records" in policy.reason  # why DANE did not apply, too


@pytest.mark.parametrize("mode", [TlsMode.NONE, TlsMode.ENCRYPT, TlsMode.VERIFY])
def test_configured_policy(loopback_dns: MakeDns, tmp_path: Path, mode: TlsMode) -> None:
    setup = Setup(loopback_dns, tmp_path, body=None, configured={"Example.Test.": mode})
    policy = setup.policy()
    assert (policy.mode, policy.source) == (mode, "tls_policy")
    assert policy.reason == f"[[tls_policy]] for {DOMAIN}: {mode.value}"
    assert policy.match_names == ((MX,) if mode is TlsMode.VERIFY else ())


def test_mta_sts_enforce_beats_configuration(loopback_dns: MakeDns, tmp_path: Path) -> None:
    setup = Setup(loopback_dns, tmp_path, configured={DOMAIN: TlsMode.NONE})
    policy = setup.policy()
    assert (policy.mode, policy.source, policy.match_names) == (
        TlsMode.VERIFY,
        "mta-sts",
        (MX,),
    )
    assert policy.reason == (
        f"MTA-STS enforce (policy id 1): {MX} is listed; certificate must be valid for it"
    )


def test_mta_sts_enforce_filters_mx_hosts(loopback_dns: MakeDns, tmp_path: Path) -> None:
    hosts = Setup(loopback_dns, tmp_path).filter()
    assert hosts.usable == [MX]
    assert hosts.refused == {
        ROGUE: f"{ROGUE} is not an MX host allowed by MTA-STS enforce (policy id 1): "
        "mx *.example.test"
    }
    assert hosts.reason == "MTA-STS enforce (policy id 1): 1 of 2 MX hosts allowed"
    # The same answer in the shape the relay's MX lookup takes as a hook.
    setup = Setup(loopback_dns, tmp_path / "b")

    async def hook() -> tuple[list[str], dict[str, str]]:
        plan = await setup.decider.plan(DOMAIN)
        return await plan.mx_host_filter([MX, ROGUE], True)

    assert asyncio.run(hook()) == (hosts.usable, hosts.refused)


def test_unlisted_host_policy_refuses_after_handshake(
    loopback_dns: MakeDns, tmp_path: Path
) -> None:
    # A caller that skipped the filter still cannot deliver to the host.
    policy = Setup(loopback_dns, tmp_path).policy(ROGUE)
    assert policy.mode is TlsMode.VERIFY and policy.peer_check is not None
    refusal = policy.peer_check(None)  # type: ignore[arg-type]
    assert refusal is not None and f"{ROGUE} is not a listed MX host" in refusal


def test_dane_beats_mta_sts_and_configuration(loopback_dns: MakeDns, tmp_path: Path) -> None:
    setup = Setup(loopback_dns, tmp_path, tlsa_for=(MX, ROGUE), configured={DOMAIN: TlsMode.NONE})
    policy = setup.policy()
    assert (policy.mode, policy.source) == (TlsMode.DANE, "dane")
    # The enforced MTA-STS policy does not list ROGUE, but DANE authenticates it.
    assert setup.filter().usable == [MX, ROGUE]


def test_unauthenticated_dns_leaves_dane_out(loopback_dns: MakeDns, tmp_path: Path) -> None:
    setup = Setup(loopback_dns, tmp_path, tlsa_for=(MX, ROGUE), authentic=False)
    assert setup.policy().source == "mta-sts"
    assert setup.filter().usable == [MX]
    # An authenticated TLSA answer does not help when the MX answer was not.
    signed = Setup(loopback_dns, tmp_path / "b", tlsa_for=(MX,))
    assert signed.policy(mx_authentic=False).source == "mta-sts"


def test_mta_sts_testing_is_opportunistic_below_configuration(
    loopback_dns: MakeDns, tmp_path: Path
) -> None:
    testing = Setup(loopback_dns, tmp_path, body=TESTING)
    listed, unlisted = testing.policy(), testing.policy(ROGUE)
    assert (listed.mode, listed.source) == (TlsMode.OPPORTUNISTIC, "mta-sts")
    assert listed.reason == (
        "MTA-STS testing (policy id 1): not enforced; "
        f"{MX} would be required to present a valid certificate"
    )
    assert "would be refused: not a listed MX host" in unlisted.reason
    assert testing.filter().usable == [MX, ROGUE]
    configured = Setup(
        loopback_dns, tmp_path / "b", body=TESTING, configured={DOMAIN: TlsMode.ENCRYPT}
    )
    assert configured.policy().source == "tls_policy"


def test_mta_sts_mode_none_is_no_policy(loopback_dns: MakeDns, tmp_path: Path) -> None:
    policy = Setup(loopback_dns, tmp_path, body=NONE).policy()
    assert (policy.mode, policy.source) == (TlsMode.OPPORTUNISTIC, "default")


def test_build_decider_from_configuration(loopback_dns: MakeDns, tmp_path: Path) -> None:
    config = parse_config(
        {"data_dir": str(tmp_path), "tls_policy": [{"domain": DOMAIN, "mode": "encrypt"}]}
    )
    dns = loopback_dns(zone())
    fetcher = ServedPolicies(ENFORCE)
    decider = build_decider(config, DnsResolver([dns.address], timeout=0.5), fetcher=fetcher)
    policy = asyncio.run(decider.decide(DOMAIN, MX, mx_authentic=False))
    assert policy.source == "mta-sts" and fetcher.calls == 1
    assert (tmp_path / "mta-sts" / f"{DOMAIN}.json").is_file()  # cached under data_dir
    assert asyncio.run(decider.decide("other.test", MX, mx_authentic=False)).mode is (
        TlsMode.OPPORTUNISTIC
    )
    assert decider.configured == {DOMAIN: TlsMode.ENCRYPT}


def test_unusable_tlsa_requires_tls_without_weakening_mta_sts(
    loopback_dns: MakeDns, tmp_path: Path
) -> None:
    """Authenticated TLSA records none of which is usable (PKIX-EE) make TLS mandatory
    (RFC 7672 §2.2) over "none"/"may" — but an enforced MTA-STS policy's certificate
    check still applies: the floor never lowers a stronger policy."""
    unusable = f"_25._tcp.{MX}. IN TLSA 1 1 1 {TLSA_DIGEST}\n"
    sts_less = Setup(loopback_dns, tmp_path, body=None, configured={DOMAIN: TlsMode.NONE})
    sts_less.dns.set_zone(zone(sts=False) + unusable)
    floor = sts_less.policy()
    assert (floor.mode, floor.source) == (TlsMode.ENCRYPT, "dane")
    enforced = Setup(loopback_dns, tmp_path / "b")
    enforced.dns.set_zone(zone() + unusable)
    policy = enforced.policy()
    assert (policy.mode, policy.source, policy.match_names) == (TlsMode.VERIFY, "mta-sts", (MX,))
