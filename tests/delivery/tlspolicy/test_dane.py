"""DANE (RFC 7672) against real TLS handshakes: a TLS server on loopback presents
trustme certificates, our peer check reads the chain it sent and matches it against
TLSA records computed from those certificates; the TLSA lookup goes to a DNS server on
loopback that sets AD only for the names the test calls authentic."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from helpers.dnsserver import MakeDns
from mailwright.delivery.tlspolicy.dane import DaneCheck, DaneOutcome, dane_policy, tlsa_name
from mailwright.dns.resolver import DnsResolver
from mailwright.dns.types import TlsaRecord
from mailwright.net.outbound.tlspolicy import TlsMode

MX = "mx.example.test"
HANDSHAKE_TIMEOUT = 10.0


def der(pem: trustme.Blob) -> bytes:
    return x509.load_pem_x509_certificate(pem.bytes()).public_bytes(Encoding.DER)


def tlsa(usage: int, selector: int, matching: int, cert_der: bytes) -> TlsaRecord:
    """The TLSA record a domain would publish for ``cert_der`` (RFC 6698 §2.1)."""
    cert = x509.load_der_x509_certificate(cert_der)
    selected = (
        cert_der
        if selector == 0
        else cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    digest = {0: lambda b: b, 1: lambda b: hashlib.sha256(b).digest()}.get(
        matching, lambda b: hashlib.sha512(b).digest()
    )
    return TlsaRecord(usage, selector, matching, digest(selected))


def server_context(
    tmp_path: Path, chain: Sequence[trustme.Blob], key: trustme.Blob
) -> ssl.SSLContext:
    """A server presenting exactly ``chain`` (leaf first)."""
    chain_file, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain_file.write_bytes(b"".join(blob.bytes() for blob in chain))
    key.write_to_path(str(key_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain_file, key_file)
    return context


async def _check_over_tls(server: ssl.SSLContext, check: DaneCheck) -> str | None:
    async def ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(ignore, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    # As the client session does for a DANE policy: no PKIX verification, the chain is
    # judged by the TLSA records alone.
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=MX
            )
        result = check(writer.get_extra_info("ssl_object"))
        writer.close()
        await writer.wait_closed()
        return result
    finally:
        listener.close()
        await listener.wait_closed()


def check_over_tls(server: ssl.SSLContext, records: list[TlsaRecord], names=(MX,)) -> str | None:
    return asyncio.run(_check_over_tls(server, DaneCheck(tuple(records), tuple(names))))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def leaf_server(tmp_path: Path, ca: trustme.CA, *names: str, **kwargs: object):
    leaf = ca.issue_cert(*names, **kwargs)  # type: ignore[arg-type]
    chain = [*leaf.cert_chain_pems, ca.cert_pem]  # the anchor too (RFC 7671 §5.2.2)
    return leaf, server_context(tmp_path, chain, leaf.private_key_pem)


@pytest.mark.parametrize(("selector", "matching"), [(1, 1), (0, 1), (1, 2), (0, 0), (1, 0)])
def test_dane_ee_match_passes(tmp_path: Path, ca: trustme.CA, selector: int, matching: int) -> None:
    leaf, server = leaf_server(tmp_path, ca, MX)
    record = tlsa(3, selector, matching, der(leaf.cert_chain_pems[0]))
    assert check_over_tls(server, [record]) is None


def test_dane_ee_mismatch_fails_with_a_reason(tmp_path: Path, ca: trustme.CA) -> None:
    _leaf, server = leaf_server(tmp_path, ca, MX)
    other = ca.issue_cert(MX)  # same name, same CA, another key: not what DNS pinned
    reason = check_over_tls(server, [tlsa(3, 1, 1, der(other.cert_chain_pems[0]))])
    assert reason is not None
    assert "matches none of 1 usable TLSA records (1 DANE-EE)" in reason


def test_dane_ee_ignores_name_and_expiry(tmp_path: Path, ca: trustme.CA) -> None:
    # RFC 7672 §3.1.1: with DANE-EE the DNS binding is the authentication.
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    leaf, server = leaf_server(
        tmp_path, ca, "unrelated.invalid", not_before=past, not_after=past.replace(year=2002)
    )
    assert check_over_tls(server, [tlsa(3, 1, 1, der(leaf.cert_chain_pems[0]))]) is None


def test_dane_ta_via_the_ca_passes(tmp_path: Path, ca: trustme.CA) -> None:
    _leaf, server = leaf_server(tmp_path, ca, MX)
    assert check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))]) is None
    assert check_over_tls(server, [tlsa(2, 1, 1, der(ca.cert_pem))]) is None


def test_dane_ta_through_an_intermediate(tmp_path: Path, ca: trustme.CA) -> None:
    child = ca.create_child_ca()
    leaf = child.issue_cert(MX)  # cert_chain_pems: leaf, intermediate
    server = server_context(tmp_path, [*leaf.cert_chain_pems, ca.cert_pem], leaf.private_key_pem)
    assert check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))]) is None
    assert check_over_tls(server, [tlsa(2, 0, 1, der(child.cert_pem))]) is None


def test_dane_ta_requires_the_mx_name(tmp_path: Path, ca: trustme.CA) -> None:
    _leaf, server = leaf_server(tmp_path, ca, "other.example.test")
    reason = check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))])
    assert reason is not None and f"not valid for {MX}" in reason
    # A wildcard covers exactly one label (RFC 7672 §3.2.3, RFC 6125 §6.4.3).
    _leaf, wildcard = leaf_server(tmp_path, ca, "*.example.test")
    assert check_over_tls(wildcard, [tlsa(2, 0, 1, der(ca.cert_pem))]) is None
    deeper = check_over_tls(
        wildcard, [tlsa(2, 0, 1, der(ca.cert_pem))], names=("a.mx.example.test",)
    )
    assert deeper is not None and "not valid for" in deeper


def test_dane_ta_checks_the_leaf_dates(tmp_path: Path, ca: trustme.CA) -> None:
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    _leaf, server = leaf_server(
        tmp_path, ca, MX, not_before=past, not_after=past.replace(year=2002)
    )
    reason = check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))])
    assert reason is not None and "outside its validity period" in reason


def test_dane_ta_anchor_must_sign_the_chain(tmp_path: Path, ca: trustme.CA) -> None:
    # The server sends the anchor the TLSA record names, but its leaf comes from
    # another CA: the anchor's presence alone proves nothing.
    rogue = trustme.CA()
    leaf = rogue.issue_cert(MX)
    server = server_context(tmp_path, [*leaf.cert_chain_pems, ca.cert_pem], leaf.private_key_pem)
    reason = check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))])
    assert reason is not None and "does not chain to the TLSA trust anchor" in reason


def test_dane_ta_anchor_not_sent(tmp_path: Path, ca: trustme.CA) -> None:
    leaf = ca.issue_cert(MX)
    server = server_context(tmp_path, leaf.cert_chain_pems, leaf.private_key_pem)
    reason = check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))])
    assert reason is not None and "no certificate sent by the server matches" in reason


def test_pkix_usages_are_not_used_for_smtp(tmp_path: Path, ca: trustme.CA) -> None:
    # RFC 7672 §3.1.3: a PKIX-EE (1) record that matches does not authenticate.
    leaf, server = leaf_server(tmp_path, ca, MX)
    check = DaneCheck((tlsa(1, 1, 1, der(leaf.cert_chain_pems[0])),), (MX,))
    assert check.records == ()
    assert asyncio.run(_check_over_tls(server, check)) is not None


# -- the TLSA lookup: when DANE applies at all --------------------------------------


def zone(records: str) -> str:
    return f"""$ORIGIN example.test.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 60
mx IN A 192.0.2.25
{records}
"""


def lookup(server_address: tuple[str, int], *, mx_authentic: bool = True) -> DaneOutcome:
    resolver = DnsResolver([server_address], timeout=0.5)
    return asyncio.run(dane_policy(resolver, MX, mx_authentic=mx_authentic))


def test_authenticated_tlsa_gives_a_dane_policy_that_checks_the_peer(
    loopback_dns: MakeDns, tmp_path: Path, ca: trustme.CA
) -> None:
    leaf, server = leaf_server(tmp_path, ca, MX)
    digest = hashlib.sha256(der(leaf.cert_chain_pems[0])).hexdigest()
    dns = loopback_dns(zone(f"_25._tcp.mx IN TLSA 3 0 1 {digest}"), authentic=["example.test"])
    outcome = lookup(dns.address)
    policy = outcome.policy
    assert policy is not None and policy.mode is TlsMode.DANE and policy.source == "dane"
    assert policy.reason == f"authenticated TLSA at {tlsa_name(MX)}: 1 DANE-EE"
    assert policy.peer_check is not None and policy.match_names == (MX,)
    assert asyncio.run(_check_over_tls(server, policy.peer_check)) is None  # type: ignore[arg-type]
    _other, wrong = leaf_server(tmp_path, ca, MX)
    assert asyncio.run(_check_over_tls(wrong, policy.peer_check)) is not None  # type: ignore[arg-type]


def test_unauthenticated_tlsa_answer_is_ignored(loopback_dns: MakeDns) -> None:
    # The MX host's zone is signed, its TLSA records are not (no AD bit on them).
    dns = loopback_dns(
        zone(f"_25._tcp.mx IN TLSA 3 1 1 {'ab' * 32}"),
        authentic=["example.test"],
        insecure=[tlsa_name(MX)],
    )
    outcome = lookup(dns.address)
    assert outcome.policy is None
    assert outcome.reason == f"TLSA records at {tlsa_name(MX)} not authenticated: ignored"


def test_unauthenticated_mx_means_no_tlsa_lookup(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone(f"_25._tcp.mx IN TLSA 3 1 1 {'ab' * 32}"), authentic=["example.test"])
    outcome = lookup(dns.address, mx_authentic=False)
    assert outcome.policy is None and "MX answer not DNSSEC-authenticated" in outcome.reason
    assert dns.asked(tlsa_name(MX), "TLSA") == 0


def test_failing_resolver_does_not_wedge_delivery(loopback_dns: MakeDns) -> None:
    # A resolver that does not validate sets no AD anywhere: DANE is never in play, so
    # its failing TLSA lookups cannot make the host unusable.  (With an authenticated
    # MX answer they do: test_dane_gaps.)
    for kind in ("servfail", "silent"):
        dns = loopback_dns(zone(""), **{kind: [tlsa_name(MX)]})
        outcome = lookup(dns.address)
        assert outcome.usable and outcome.policy is None, kind
        assert "not DNSSEC-authenticated: DANE not applicable" in outcome.reason, kind
        assert dns.asked(tlsa_name(MX), "TLSA") == 0, kind


def test_authenticated_denial_means_no_dane(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone(""), authentic=["example.test"])
    outcome = lookup(dns.address)
    assert outcome.policy is None and "authenticated denial" in outcome.reason


def test_only_unusable_records_still_require_tls(loopback_dns: MakeDns) -> None:
    # RFC 7672 §2.2: TLSA records exist, none usable (PKIX-EE, an unknown matching
    # type): TLS is mandatory, the certificate is not authenticated.
    records = f"_25._tcp.mx IN TLSA 1 1 1 {'ab' * 32}\n_25._tcp.mx IN TLSA 3 1 9 {'cd' * 32}"
    dns = loopback_dns(zone(records), authentic=["example.test"])
    policy = lookup(dns.address).policy
    assert policy is not None and policy.mode is TlsMode.ENCRYPT and policy.required
    assert "has no usable record" in policy.reason and policy.peer_check is None


def test_dane_check_reads_the_chain_under_uvloop(tmp_path: Path, ca: trustme.CA) -> None:
    # serve runs on uvloop when present: its SSL transport hands out the same
    # ssl.SSLObject, and the chain (anchor included) must be readable from it.
    uvloop = pytest.importorskip("uvloop")
    _leaf, server = leaf_server(tmp_path, ca, MX)
    check = DaneCheck((tlsa(2, 0, 1, der(ca.cert_pem)),), (MX,))
    assert uvloop.run(_check_over_tls(server, check)) is None
    wrong = DaneCheck((tlsa(2, 0, 1, der(trustme.CA().cert_pem)),), (MX,))
    assert uvloop.run(_check_over_tls(server, wrong)) is not None


def test_dane_ta_refuses_a_leaf_acting_as_a_ca(tmp_path: Path, ca: trustme.CA) -> None:
    """Regression: a DANE-TA record often pins a public CA.  Anyone with an ordinary
    certificate from that CA (CA:FALSE) must not be able to sign a certificate for
    the MX host with it and have the chain accepted."""
    attacker = ca.issue_cert("attacker.example")
    attacker_key = serialization.load_pem_private_key(attacker.private_key_pem.bytes(), None)
    attacker_cert = x509.load_pem_x509_certificate(attacker.cert_chain_pems[0].bytes())
    forged_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MX)]))
        .issuer_name(attacker_cert.subject)
        .public_key(forged_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(MX)]), critical=False)
        .sign(attacker_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    forged_pem = trustme.Blob(forged.public_bytes(Encoding.PEM))
    key_pem = trustme.Blob(
        forged_key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = server_context(
        tmp_path, [forged_pem, attacker.cert_chain_pems[0], ca.cert_pem], key_pem
    )
    reason = check_over_tls(server, [tlsa(2, 0, 1, der(ca.cert_pem))])
    assert reason is not None and "does not chain to the TLSA trust anchor" in reason
