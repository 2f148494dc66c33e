"""RFC 7672 gaps closed in the relay's DANE, at the ``dane_policy`` / ``decide`` level,
against a DNS server on loopback (AD only where the test says; SERVFAIL where a
validating resolver would return it for a bogus answer):

* a TLSA lookup that fails after an authenticated MX answer makes the MX host
  unusable (§2.2) — never a fall-back to MTA-STS, configuration or opportunistic TLS;
* an MX host name that is an alias: TLSA first at the expanded name, then at the
  original (§2.2.2); the TLSA base domain and the reference identifiers for DANE-TA
  (§3.2.2); a CNAME at the TLSA name itself changes no base domain (RFC 7671 §7).
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from helpers.dnsserver import LoopbackDns, MakeDns
from mailwright.delivery.tlspolicy.dane import DaneCheck, DaneOutcome, dane_policy, tlsa_name
from mailwright.delivery.tlspolicy.decide import MxHostUnusable, TlsPolicyDecider
from mailwright.dns.resolver import DnsResolver
from mailwright.net.outbound.tlspolicy import TlsMode

DOMAIN = "example.test"
MX = "mx.example.test"
TARGET = "mx.provider.test"  # what MX is an alias of
DIGEST = hashlib.sha256(b"pinned key").hexdigest()
LOOKUP_TIMEOUT = 0.5


def zone(*lines: str) -> str:
    return (
        "\n".join(
            [
                "$ORIGIN test.",
                "$TTL 300",
                "@ IN SOA ns hostmaster 1 3600 600 86400 60",
                f"{DOMAIN}. IN MX 10 {MX}.",
                *lines,
            ]
        )
        + "\n"
    )


def resolver(dns: LoopbackDns) -> DnsResolver:
    return DnsResolver([dns.address], timeout=LOOKUP_TIMEOUT)


def lookup(dns: LoopbackDns, *, mx_authentic: bool = True) -> DaneOutcome:
    return asyncio.run(dane_policy(resolver(dns), MX, mx_authentic=mx_authentic))


# -- 1. a failed TLSA lookup after an authenticated MX answer -------------------------


@pytest.mark.parametrize("kind", ["servfail", "silent"])
def test_tlsa_lookup_failure_after_an_authenticated_mx_makes_the_host_unusable(
    loopback_dns: MakeDns, kind: str
) -> None:
    dns = loopback_dns(zone(f"{MX}. IN A 127.0.0.2"), authentic=["test"], **{kind: [tlsa_name(MX)]})
    outcome = lookup(dns)
    assert not outcome.usable and outcome.policy is None
    assert outcome.reason.startswith(f"TLSA lookup for {tlsa_name(MX)} failed (")
    assert outcome.reason.endswith(f"MX host {MX} unusable (RFC 7672 §2.2)")


def test_policy_for_never_falls_back_when_the_tlsa_lookup_fails(loopback_dns: MakeDns) -> None:
    """Not to the configuration's "may" (nor anything else): ``policy_for`` refuses the
    host.  Without an authenticated MX answer the same failure leaves DANE out."""
    dns = loopback_dns(zone(f"{MX}. IN A 127.0.0.2"), authentic=["test"], servfail=[tlsa_name(MX)])
    decider = TlsPolicyDecider(resolver(dns), None, {DOMAIN: TlsMode.OPPORTUNISTIC})

    async def run(mx_authentic: bool):
        plan = await decider.plan(DOMAIN)
        return await plan.policy_for(MX, mx_authentic=mx_authentic)

    with pytest.raises(MxHostUnusable) as caught:
        asyncio.run(run(True))
    assert caught.value.host == MX and "TLSA lookup for" in caught.value.reason
    fallback = asyncio.run(run(False))
    assert (fallback.mode, fallback.source) == (TlsMode.OPPORTUNISTIC, "tls_policy")


def test_unsigned_host_zone_is_not_asked_for_tlsa(loopback_dns: MakeDns) -> None:
    """RFC 7672 §2.2.2: the MX answer is signed, the MX host's zone is not (no AD on its
    address records): no TLSA lookup, so a server of that zone that fails ``_25._tcp``
    queries cannot make the host unusable."""
    dns = loopback_dns(
        zone(f"{MX}. IN A 127.0.0.2"),
        authentic=["test"],
        insecure=[MX],
        servfail=[tlsa_name(MX)],
    )
    outcome = lookup(dns)
    assert outcome.usable and outcome.policy is None
    assert outcome.reason == (
        f"address records of {MX} not DNSSEC-authenticated: DANE not applicable"
    )
    assert dns.asked(tlsa_name(MX), "TLSA") == 0


# -- 2. aliases and the TLSA base domain ----------------------------------------------


def test_alias_mx_host_looks_up_tlsa_at_the_expanded_name_first(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(
        zone(
            f"{MX}. IN CNAME {TARGET}.",
            f"{TARGET}. IN A 127.0.0.2",
            f"_25._tcp.{TARGET}. IN TLSA 3 1 1 {DIGEST}",
            f"_25._tcp.{MX}. IN TLSA 3 1 1 {'ab' * 32}",  # shadowed by the expanded name's
        ),
        authentic=["test"],
    )
    policy = lookup(dns).policy
    assert policy is not None and policy.mode is TlsMode.DANE
    assert policy.reason.startswith(f"authenticated TLSA at {tlsa_name(TARGET)}: 1 DANE-EE")
    assert f"TLSA base domain {TARGET}" in policy.reason
    assert policy.match_names == (TARGET, MX)
    assert isinstance(policy.peer_check, DaneCheck)
    assert [r.data.hex() for r in policy.peer_check.records] == [DIGEST]
    assert dns.asked(tlsa_name(MX), "TLSA") == 0


def test_alias_without_tlsa_at_the_expanded_name_uses_the_original(
    loopback_dns: MakeDns,
) -> None:
    dns = loopback_dns(
        zone(
            f"{MX}. IN CNAME {TARGET}.",
            f"{TARGET}. IN A 127.0.0.2",
            f"_25._tcp.{MX}. IN TLSA 3 1 1 {DIGEST}",
        ),
        authentic=["test"],
    )
    policy = lookup(dns).policy
    assert policy is not None and policy.mode is TlsMode.DANE
    assert policy.reason.startswith(f"authenticated TLSA at {tlsa_name(MX)}: 1 DANE-EE")
    assert policy.match_names == (MX, TARGET)
    assert dns.asked(tlsa_name(TARGET), "TLSA") == 1  # asked first, securely denied


def test_alias_whose_expanded_tlsa_lookup_fails_is_unusable(loopback_dns: MakeDns) -> None:
    # RFC 7672 §2.2.2 / Postfix: a lookup error at the expanded name is not followed by
    # the original name (whose records an attacker may have left alone).
    dns = loopback_dns(
        zone(
            f"{MX}. IN CNAME {TARGET}.",
            f"{TARGET}. IN A 127.0.0.2",
            f"_25._tcp.{MX}. IN TLSA 3 1 1 {DIGEST}",
        ),
        authentic=["test"],
        servfail=[tlsa_name(TARGET)],
    )
    outcome = lookup(dns)
    assert not outcome.usable and tlsa_name(TARGET) in outcome.reason
    assert dns.asked(tlsa_name(MX), "TLSA") == 0


def test_alias_into_an_unsigned_zone_leaves_dane_out(loopback_dns: MakeDns) -> None:
    # The address answer is not authenticated as a whole: the expanded name cannot be
    # trusted, and no TLSA lookup is made (no wedge by the unsigned zone's servers).
    dns = loopback_dns(
        zone(
            f"{MX}. IN CNAME {TARGET}.",
            f"{TARGET}. IN A 127.0.0.2",
            f"_25._tcp.{TARGET}. IN TLSA 3 1 1 {DIGEST}",
        ),
        authentic=["test"],
        insecure=[MX],
        servfail=[tlsa_name(MX)],
    )
    outcome = lookup(dns)
    assert outcome.usable and outcome.policy is None
    assert dns.asked(tlsa_name(TARGET), "TLSA") == dns.asked(tlsa_name(MX), "TLSA") == 0


def test_cname_at_the_tlsa_name_is_not_a_base_domain(loopback_dns: MakeDns) -> None:
    """Regression: RFC 7671 §7 — ``_25._tcp.mx`` may be a CNAME to where the records
    are kept, but the TLSA base domain stays the MX host.  The old code took the CNAME
    target ("tlsa.provider.test") as a name a DANE-TA certificate may carry."""
    dns = loopback_dns(
        zone(
            f"{MX}. IN A 127.0.0.2",
            f"_25._tcp.{MX}. IN CNAME tlsa.provider.test.",
            f"tlsa.provider.test. IN TLSA 2 0 1 {DIGEST}",
        ),
        authentic=["test"],
    )
    policy = lookup(dns).policy
    assert policy is not None and policy.mode is TlsMode.DANE
    assert policy.match_names == (MX,)
    assert policy.reason == f"authenticated TLSA at {tlsa_name(MX)}: 1 DANE-TA"


def _der(pem: trustme.Blob) -> bytes:
    return x509.load_pem_x509_certificate(pem.bytes()).public_bytes(Encoding.DER)


def test_dane_ta_accepts_the_expanded_and_the_original_name_only(
    loopback_dns: MakeDns,
) -> None:
    """DANE-TA through an alias: the certificate may name the TLSA base domain (the
    expanded name) or the original MX host name; any other name is refused."""
    ca = trustme.CA()
    anchor = hashlib.sha256(_der(ca.cert_pem)).hexdigest()
    dns = loopback_dns(
        zone(
            f"{MX}. IN CNAME {TARGET}.",
            f"{TARGET}. IN A 127.0.0.2",
            f"_25._tcp.{TARGET}. IN TLSA 2 0 1 {anchor}",
        ),
        authentic=["test"],
    )
    policy = lookup(dns).policy
    assert policy is not None and isinstance(policy.peer_check, DaneCheck)
    check = policy.peer_check

    def chain(name: str) -> list[bytes]:
        leaf = ca.issue_cert(name)
        return [_der(leaf.cert_chain_pems[0]), _der(ca.cert_pem)]

    assert check.check_chain(chain(TARGET)) is None
    assert check.check_chain(chain(MX)) is None
    refused = check.check_chain(chain("mx.elsewhere.test"))
    assert refused is not None and f"not valid for {TARGET} or {MX}" in refused
