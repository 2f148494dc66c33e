"""What a server's certificate says, and which findings that makes.

The probe completes every handshake *without* verification (so it can read and report
an expired or misnamed certificate instead of stopping at it), reads the leaf with
``cryptography``, and then asks OpenSSL in a second handshake whether the chain leads
to a trusted CA (system CAs plus ``--ca``).  Dates and names are judged here, from the
leaf: OpenSSL reports only its first error, and an expired certificate from an
untrusted CA must be reported as both.
"""

from __future__ import annotations

import ipaddress
import ssl
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mailwright.client.probe.findings import Finding, finding
from mailwright.net.tls import client_context


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    subject: str
    issuer: str
    names: tuple[str, ...]  # subjectAltName DNS names (the CN when there are none)
    not_before: datetime
    not_after: datetime
    self_signed: bool


def read_certificate(der: bytes) -> CertificateFacts:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if not names:  # RFC 6125 §6.4.4: the CN only when there is no DNS-ID
        names = tuple(
            str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=names,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.subject == cert.issuer,
    )


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4.3: exact, or ``*`` as the whole leftmost label matching one label."""
    pattern, name = pattern.rstrip(".").lower(), name.rstrip(".").lower()
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        return name.partition(".")[2] == pattern[2:] and bool(name.partition(".")[0])
    return False


def leaf_findings(
    facts: CertificateFacts, name: str | None, where: str, now: datetime | None = None
) -> list[Finding]:
    """Dates and name of the leaf; ``name`` None (an IP target, no --tls-name) skips
    the name check."""
    now = now or datetime.now(UTC)
    found = []
    if now >= facts.not_after:
        found.append(
            finding("expired-certificate", f"{where}: expired {facts.not_after:%Y-%m-%d %H:%M} UTC")
        )
    if now < facts.not_before:
        found.append(
            finding(
                "certificate-not-yet-valid",
                f"{where}: valid from {facts.not_before:%Y-%m-%d %H:%M} UTC",
            )
        )
    if name is not None and not any(name_matches(p, name) for p in facts.names):
        shown = ", ".join(facts.names) or "no DNS name"
        found.append(
            finding("certificate-name-mismatch", f"{where}: issued for {shown}, not {name}")
        )
    return found


# OpenSSL's wording for the date errors, which ``leaf_findings`` reports from the
# leaf itself (X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID).
_DATE_ERRORS = ("certificate has expired", "certificate is not yet valid")


def trust_problem(reason: str) -> str | None:
    """Given why a verifying handshake failed, what to report as untrusted: None when
    the failure was only a date (reported from the leaf) or not a verification."""
    marker = "certificate verify failed:"
    if marker not in reason:
        return None
    why = reason.partition(marker)[2].split("(_ssl.c")[0].strip()
    if any(text in why for text in _DATE_ERRORS):
        return None
    return why or "certificate verify failed"


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Chain verification only; names are judged from the leaf (``leaf_findings``)."""
    return client_context(verify=True, ca_file=ca_file)


def inspecting_context() -> ssl.SSLContext:
    """Any certificate, TLS 1.2+ (the handshake senders would use)."""
    return client_context(verify=False)


def weak_protocol_context() -> ssl.SSLContext | None:
    """TLS 1.0/1.1 only, at OpenSSL security level 0 (which allows them); None when the
    local OpenSSL cannot offer them at all, so the check cannot be made."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():  # RFC 8996's deprecation is what we test for
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return None
    return ctx


def server_name_for(host: str) -> str | None:
    """SNI for ``host``: none for an IP literal (RFC 6066 §3)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return None
