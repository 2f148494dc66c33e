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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    to ``chain[anchor_index]`` as a PKIX path would (RFC 7671 §5.2.2: the DANE-TA
    certificate is a trust anchor, the rest is RFC 5280 path validation), else why not.

    What is checked — what OpenSSL's verifier, which Postfix's DANE relies on, checks:

    * each signature, made by a CA certificate (basicConstraints cA, keyCertSign when
      key usage is present; RFC 5280 §4.2.1.9, §4.2.1.3), the anchor included;
    * the validity period of the leaf and the intermediates;
    * each CA's pathLenConstraint over the non-self-issued intermediates below it
      (§4.2.1.9, §6.1.4 (l)-(m)), the anchor's included;
    * each CA's dNSName name constraints against the leaf's DNS names (§4.2.1.10);
    * the server purpose: an extendedKeyUsage on the leaf or an intermediate must
      include serverAuth (§4.2.1.12, OpenSSL's "ssl_server" purpose), and a leaf key
      usage must allow a TLS key exchange or signature;
    * no certificate on the path carries a critical extension this code does not
      process (§4.2: "MUST reject").

    Not checked: the anchor's own dates and purpose (the TLSA record, not the
    certificate, is what the domain vouches for; anchors do not expire in PKIX), and
    names, which ``DaneCheck`` matches as RFC 7672 §3.2.2 says.

    The peer's order is not trusted: each step looks for the certificate among those
    sent that actually signed the current one.
    """
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return f"peer certificate does not parse: {exc}"
    anchor = certs[anchor_index]
    now = datetime.datetime.now(datetime.UTC)
    current = certs[0]
    path = [current]
    for _step in range(MAX_CHAIN_DEPTH):
        if current.not_valid_before_utc > now or current.not_valid_after_utc < now:
            return f"certificate {_subject(current)} is outside its validity period"
        if _issued_by(current, anchor):
            return _path_constraints([*path, anchor])
        issuers = [c for c in certs if c is not current and _issued_by(current, c)]
        if not issuers:
            return f"certificate {_subject(current)} does not chain to the TLSA trust anchor"
        current = issuers[0]
        path.append(current)
    return f"no path to the TLSA trust anchor within {MAX_CHAIN_DEPTH} certificates"


def _path_constraints(path: list[x509.Certificate]) -> str | None:
    """The checks of ``issuance_path`` on a path (leaf first, anchor last) whose
    signatures and dates are good."""
    leaf = path[0]
    for cert in path:
        unknown = _critical_unknown(cert)
        if unknown:
            return f"certificate {_subject(cert)} has a critical extension not processed: {unknown}"
    for cert in path[:-1]:  # the anchor's purpose is the domain's business
        if not _serves_tls(cert):
            return f"certificate {_subject(cert)} is not for TLS servers (extendedKeyUsage)"
    if not _leaf_key_usage_ok(leaf):
        return f"certificate {_subject(leaf)} key usage allows no TLS server use"
    names = _dns_names(leaf)
    for depth, ca in enumerate(path[1:], start=1):
        below = sum(1 for c in path[1:depth] if c.subject != c.issuer)  # §6.1.4 (l)
        limit = _path_length(ca)
        if limit is not None and below > limit:
            return (
                f"certificate {_subject(ca)} allows {limit} intermediate CAs below it, "
                f"the path has {below}"
            )
        problem = _name_constraints(ca, names)
        if problem:
            return problem
    return None


# The extensions this module processes (or that RFC 5280 lets a path validator ignore
# for this purpose: key identifiers, policies are not asked for): a critical one of any
# other kind rejects the certificate (RFC 5280 §4.2).
_PROCESSED = frozenset(
    {
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.ExtendedKeyUsage.oid,
        x509.NameConstraints.oid,
        x509.SubjectAlternativeName.oid,
        x509.SubjectKeyIdentifier.oid,
        x509.AuthorityKeyIdentifier.oid,
        x509.CertificatePolicies.oid,  # no policy is required (RFC 5280 §6.1.1 (c))
    }
)


def _critical_unknown(cert: x509.Certificate) -> str:
    try:
        extensions = list(cert.extensions)
    except ValueError as exc:  # a malformed (or duplicated) extension
        return f"malformed extensions ({exc})"
    unknown = [e.oid.dotted_string for e in extensions if e.critical and e.oid not in _PROCESSED]
    return ", ".join(unknown)


def _serves_tls(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction
    except ValueError:
        return False
    return ExtendedKeyUsageOID.SERVER_AUTH in usages


def _leaf_key_usage_ok(cert: x509.Certificate) -> bool:
    """RFC 5280 §4.2.1.3 with RFC 5246 §7.4.2 / RFC 8446 §4.4.2.2: a TLS server's key
    signs (ECDHE, TLS 1.3) or encrypts or agrees on the key exchange."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return bool(usage.digital_signature or usage.key_encipherment or usage.key_agreement)


def _path_length(cert: x509.Certificate) -> int | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except (x509.ExtensionNotFound, ValueError):
        return None


def _dns_names(cert: x509.Certificate) -> list[str]:
    """The leaf's DNS names as ``names_match`` reads them: subjectAltName dNSNames, or
    the subject CN when there are none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        presented = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except (x509.ExtensionNotFound, ValueError):
        presented = []
    if not presented:
        presented = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [p.rstrip(".").lower() for p in presented]


def _name_constraints(ca: x509.Certificate, names: list[str]) -> str | None:
    """RFC 5280 §4.2.1.10 for dNSName: every name within a permitted subtree (when
    the CA lists any), none within an excluded one."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return f"certificate {_subject(ca)} has malformed name constraints"
    permitted = [
        str(n.value) for n in constraints.permitted_subtrees or () if isinstance(n, x509.DNSName)
    ]
    excluded = [
        str(n.value) for n in constraints.excluded_subtrees or () if isinstance(n, x509.DNSName)
    ]
    for name in names:
        if permitted and not any(_within(name, c) for c in permitted):
            return f"{name} is outside the names certificate {_subject(ca)} may vouch for"
        if any(_within(name, c) for c in excluded):
            return f"{name} is excluded by the name constraints of {_subject(ca)}"
    return None


def _within(name: str, constraint: str) -> bool:
    """RFC 5280 §4.2.1.10: "host.example.com" covers itself and any name made by
    adding labels on the left; ".example.com" (a common form) only the latter."""
    constraint = constraint.rstrip(".").lower()
    if not constraint:
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


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
    presented = _dns_names(cert)
    wanted = {n.rstrip(".").lower() for n in reference_names}
    return any(_name_matches(p, wanted) for p in presented)


def _name_matches(presented: str, wanted: set[str]) -> bool:
    if presented.startswith("*."):
        suffix = presented[1:]  # ".example.com"
        return any(name.endswith(suffix) and _one_label(name[: -len(suffix)]) for name in wanted)
    return presented in wanted


def _one_label(prefix: str) -> bool:
    return bool(prefix) and "." not in prefix
