"""Certificate work for DANE: the peer's chain as sent, TLSA association data, the
issuance path from the leaf to a trust anchor, and reference-identifier matching.

Kept apart from ``dane`` (which decides *what* to check) because this is *how* to look
inside certificates, with ``cryptography`` (already a runtime dependency for
``net.tls``).
"""

from __future__ import annotations

import datetime
import hashlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

# RFC 6698 §2.1.2 selector and §2.1.3 matching type.
SELECTOR_FULL_CERT = 0
SELECTOR_SPKI = 1
MATCH_EXACT = 0
MATCH_SHA256 = 1
MATCH_SHA512 = 2
# Longest issuance path from the leaf to a DANE-TA anchor we follow: OpenSSL's default
# verify depth is 100, but a mail server sends leaf + one or two intermediates (+ the
# anchor for DANE-TA); 10 bounds the work a hostile peer can ask for.
MAX_CHAIN_DEPTH = 10


def peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The certificates the peer sent, leaf first, as DER — *unverified*: DANE decides
    their worth itself.

    Python 3.13 has ``SSLObject.get_unverified_chain()`` returning DER bytes.  Before
    that (this project supports 3.11) the same OpenSSL call (SSL_get_peer_cert_chain)
    is only reachable on the private ``_ssl._SSLSocket`` behind ``_sslobj``, whose
    method returns ``_ssl.Certificate`` objects.  This is the one place that touches
    it; if neither exists we fall back to the leaf alone, which is all DANE-EE needs.
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:  # Python >= 3.13
        return [bytes(der) for der in public()]
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:  # Python 3.10-3.12: private API, same OpenSSL call
        return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in private() or ()]  # type: ignore[attr-defined]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def association_data(der: bytes, selector: int, matching_type: int) -> bytes | None:
    """The bytes a TLSA record with this selector and matching type would carry for
    certificate ``der`` (RFC 6698 §2.1); None for values we do not implement or a
    certificate we cannot parse."""
    if selector == SELECTOR_FULL_CERT:
        selected = der
    elif selector == SELECTOR_SPKI:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
        selected = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    else:
        return None
    if matching_type == MATCH_EXACT:
        return selected
    if matching_type == MATCH_SHA256:
        return hashlib.sha256(selected).digest()
    if matching_type == MATCH_SHA512:
        return hashlib.sha512(selected).digest()
    return None


def issuance_path(chain: list[bytes], anchor_index: int) -> str | None:
    """None when the leaf (``chain[0]``) chains, through certificates the peer sent, up
    to ``chain[anchor_index]`` with valid signatures by CA certificates and, below the
    anchor, current validity periods; else why not.  (Path length and name constraints
    are not enforced.)

    The peer's order is not trusted: each step looks for the certificate among those
    sent that actually signed the current one.  The anchor's own dates are not checked:
    with DANE-TA the TLSA record, not the certificate, is what the domain vouches for
    (RFC 7671 §5.2.2 treats it as a trust anchor, and anchors do not expire in PKIX).
    """
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return f"peer certificate does not parse: {exc}"
    anchor = certs[anchor_index]
    now = datetime.datetime.now(datetime.UTC)
    current = certs[0]
    for _step in range(MAX_CHAIN_DEPTH):
        if current.not_valid_before_utc > now or current.not_valid_after_utc < now:
            return f"certificate {_subject(current)} is outside its validity period"
        if _issued_by(current, anchor):
            return None
        issuers = [c for c in certs if c is not current and _issued_by(current, c)]
        if not issuers:
            return f"certificate {_subject(current)} does not chain to the TLSA trust anchor"
        current = issuers[0]
    return f"no path to the TLSA trust anchor within {MAX_CHAIN_DEPTH} certificates"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` is a CA (RFC 5280 §4.2.1.9 cA, §4.2.1.3 keyCertSign when key usage is
    present) and its key signed ``cert``.  Without the CA check anyone holding an
    ordinary certificate from a CA that a DANE-TA record pins (often a public one)
    could sign a certificate for any MX host with it."""
    if not _is_ca(issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError (name mismatch), TypeError (key type)
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False  # RFC 5280 §4.2.1.9: no basicConstraints, not a CA
    except ValueError:  # a malformed extension
        return False
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:120] or "(empty subject)"


def names_match(der: bytes, reference_names: tuple[str, ...]) -> bool:
    """Whether the certificate is valid for one of ``reference_names`` (RFC 7672
    §3.2.3: the subjectAltName dNSNames, or the subject CN when there are none; a
    wildcard only as the whole leftmost label, matching exactly one label)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        presented = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        presented = []
    if not presented:
        presented = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    wanted = {n.rstrip(".").lower() for n in reference_names}
    return any(_name_matches(p.rstrip(".").lower(), wanted) for p in presented)


def _name_matches(presented: str, wanted: set[str]) -> bool:
    if presented.startswith("*."):
        suffix = presented[1:]  # ".example.com"
        return any(name.endswith(suffix) and _one_label(name[: -len(suffix)]) for name in wanted)
    return presented in wanted


def _one_label(prefix: str) -> bool:
    return bool(prefix) and "." not in prefix
