"""DANE-TA path validation (RFC 7671 §5.2.2: the certificate a DANE-TA record names
is a trust anchor, and the chain below it is an RFC 5280 path — what OpenSSL's
verifier, under Postfix's DANE, checks): path length and name constraints, the server
purpose, critical extensions nobody processes; and that DANE-EE stays free of all of
it (RFC 7672 §3.1.1).  Certificates are made with ``cryptography`` for each case."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailwright.delivery.tlspolicy.dane import DANE_EE, DANE_TA, DaneCheck
from mailwright.dns.types import TlsaRecord

MX = "mx.example.test"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")  # a private arc, no meaning


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)


def make(
    subject: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    dns: tuple[str, ...] = (),
    eku: list[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | None = None,
    constraints: x509.NameConstraints | None = None,
    unknown_critical: bool | None = None,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> Issued:
    """A certificate for ``subject`` signed by ``issuer`` (self-signed without one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if dns:
        names = [x509.DNSName(n) for n in dns]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    if unknown_critical is not None:
        unknown = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
        builder = builder.add_extension(unknown, critical=unknown_critical)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def usage(**set_bits: bool) -> x509.KeyUsage:
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    bits.update(set_bits)
    return x509.KeyUsage(**bits, encipher_only=False, decipher_only=False)


def ta_check(anchor: Issued, chain: list[Issued], names: tuple[str, ...] = (MX,)) -> str | None:
    """The DANE-TA verdict for ``chain`` (leaf first; the anchor is appended, as a
    server must send it, RFC 7672 §3.1.2) with a "2 0 1" record for ``anchor``."""
    record = TlsaRecord(DANE_TA, 0, 1, hashlib.sha256(anchor.der).digest())
    return DaneCheck((record,), names).check_chain([c.der for c in [*chain, anchor]])


def ee_check(leaf: Issued) -> str | None:
    record = TlsaRecord(DANE_EE, 0, 1, hashlib.sha256(leaf.der).digest())
    return DaneCheck((record,), (MX,)).check_chain([leaf.der])


def test_a_plain_chain_passes() -> None:
    root = make("Root", ca=True)
    inter = make("Intermediate", root, ca=True, path_length=0)
    leaf = make(MX, inter, dns=(MX,), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert ta_check(root, [leaf, inter]) is None


def test_path_length_constraint_of_an_intermediate_is_enforced() -> None:
    """An intermediate allowed no CA below it (pathLenConstraint 0) mints a sub-CA,
    which issues a certificate for the MX host: refused (RFC 5280 §4.2.1.9)."""
    root = make("Root", ca=True)
    inter = make("Constrained Intermediate", root, ca=True, path_length=0)
    rogue = make("Rogue Sub-CA", inter, ca=True)
    leaf = make(MX, rogue, dns=(MX,))
    reason = ta_check(root, [leaf, rogue, inter])
    assert reason is not None
    assert "CN=Constrained Intermediate allows 0 intermediate CAs below it, the path has 1" in (
        reason
    )
    allowed = make("Intermediate", root, ca=True, path_length=1)
    sub = make("Sub-CA", allowed, ca=True)
    leaf = make(MX, sub, dns=(MX,))
    assert ta_check(root, [leaf, sub, allowed]) is None


def test_path_length_constraint_of_the_anchor_is_enforced() -> None:
    root = make("Root", ca=True, path_length=0)
    inter = make("Intermediate", root, ca=True)
    leaf = make(MX, inter, dns=(MX,))
    reason = ta_check(root, [leaf, inter])
    assert reason is not None and "CN=Root allows 0 intermediate CAs below it" in reason
    assert ta_check(root, [make(MX, root, dns=(MX,))]) is None  # a leaf right below: fine


def test_name_constraints_bound_what_an_intermediate_may_vouch_for() -> None:
    root = make("Root", ca=True)
    permitted = x509.NameConstraints([x509.DNSName("corp.test")], None)
    corp = make("Corp CA", root, ca=True, constraints=permitted)
    outside = make(MX, corp, dns=(MX,))
    reason = ta_check(root, [outside, corp])
    assert reason is not None and f"{MX} is outside the names certificate CN=Corp CA" in reason
    inside = make("mx.corp.test", corp, dns=("mx.corp.test",))
    assert ta_check(root, [inside, corp], names=("mx.corp.test",)) is None

    excluded = x509.NameConstraints(None, [x509.DNSName(".example.test")])
    other = make("Other CA", root, ca=True, constraints=excluded)
    leaf = make(MX, other, dns=(MX,))
    reason = ta_check(root, [leaf, other])
    assert reason is not None and f"{MX} is excluded by the name constraints" in reason


def test_name_constraints_apply_to_the_subject_cn_without_a_san() -> None:
    root = make("Root", ca=True)
    permitted = x509.NameConstraints([x509.DNSName("corp.test")], None)
    corp = make("Corp CA", root, ca=True, constraints=permitted)
    leaf = make(MX, corp)  # no subjectAltName: the CN is the name matched
    reason = ta_check(root, [leaf, corp])
    assert reason is not None and "outside the names" in reason


def test_server_purpose_is_required_of_leaf_and_intermediates() -> None:
    root = make("Root", ca=True)
    email_only = make(MX, root, dns=(MX,), eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    reason = ta_check(root, [email_only])
    assert reason is not None and "is not for TLS servers" in reason
    client_ca = make("Client CA", root, ca=True, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    leaf = make(MX, client_ca, dns=(MX,), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    reason = ta_check(root, [leaf, client_ca])
    assert reason is not None and "CN=Client CA is not for TLS servers" in reason
    both = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert ta_check(root, [make(MX, root, dns=(MX,), eku=both)]) is None


def test_leaf_key_usage_must_allow_tls() -> None:
    root = make("Root", ca=True)
    signing_only = make(MX, root, dns=(MX,), key_usage=usage(content_commitment=True))
    reason = ta_check(root, [signing_only])
    assert reason is not None and "key usage allows no TLS server use" in reason
    good = make(MX, root, dns=(MX,), key_usage=usage(digital_signature=True))
    assert ta_check(root, [good]) is None


def test_unprocessed_critical_extension_is_refused() -> None:
    root = make("Root", ca=True)
    critical = make(MX, root, dns=(MX,), unknown_critical=True)
    reason = ta_check(root, [critical])
    assert reason is not None
    assert f"has a critical extension not processed: {UNKNOWN_OID.dotted_string}" in reason
    assert ta_check(root, [make(MX, root, dns=(MX,), unknown_critical=False)]) is None


def test_expired_intermediate_is_refused() -> None:
    root = make("Root", ca=True)
    inter = make("Old Intermediate", root, ca=True, not_after=NOW - DAY)
    leaf = make(MX, inter, dns=(MX,))
    reason = ta_check(root, [leaf, inter])
    assert reason is not None and "CN=Old Intermediate is outside its validity period" in reason


def test_dane_ee_checks_none_of_it() -> None:
    """RFC 7672 §3.1.1: with DANE-EE the DNS binding is the authentication — a leaf
    with another name, an e-mail-only purpose and an unknown critical extension,
    long expired, still matches."""
    root = make("Root", ca=True)
    odd = make(
        "elsewhere.invalid",
        root,
        dns=("elsewhere.invalid",),
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
        unknown_critical=True,
        not_after=NOW - DAY,
    )
    assert ee_check(odd) is None
