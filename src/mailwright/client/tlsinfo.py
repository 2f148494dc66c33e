"""What ``mailwright send`` reports about a TLS connection: protocol, cipher, the
peer's certificate (subject, issuer, validity, names), the chain it sent, and whether
that chain verifies for the name we wanted — with the reason when it does not.

The verification is reported even when ``--tls-verify`` is not given (then it is
information, not a condition): cryptography's X.509 path validation (RFC 5280, the
CA/B Forum server profile) against the system's trust store plus ``--tls-ca``, the name
checked as RFC 6125 §6 says.  With ``--tls-verify`` OpenSSL has already refused a bad
chain in the handshake; this gives the same answer in words.
"""

from __future__ import annotations

import ipaddress
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    issuer: str
    not_before: str  # ISO 8601, UTC
    not_after: str
    names: tuple[str, ...]  # subjectAltName DNS names and IP addresses


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    bits: int
    certificate: CertInfo | None
    chain: tuple[str, ...] = field(default=())  # subjects, leaf first, as sent
    verified: bool = False
    verification: str = ""  # "ok: ..." or why not

    def lines(self) -> list[str]:
        """The report, one fact a line (as swaks' "=== TLS ..." lines)."""
        out = [f"TLS started with {self.version} {self.cipher} ({self.bits} bits)"]
        if self.certificate is not None:
            c = self.certificate
            out += [
                f"TLS peer subject: {c.subject}",
                f"TLS peer issuer: {c.issuer}",
                f"TLS peer validity: {c.not_before} to {c.not_after}",
                f"TLS peer names: {', '.join(c.names) or '(none)'}",
            ]
        else:
            out.append("TLS peer sent no certificate")
        for depth, subject in enumerate(self.chain):
            out.append(f"TLS chain {depth}: {subject}")
        out.append(f"TLS verification: {self.verification}")
        return out

    def as_json(self) -> dict[str, object]:
        cert = self.certificate
        return {
            "version": self.version,
            "cipher": self.cipher,
            "bits": self.bits,
            "certificate": None
            if cert is None
            else {
                "subject": cert.subject,
                "issuer": cert.issuer,
                "not_before": cert.not_before,
                "not_after": cert.not_after,
                "names": list(cert.names),
            },
            "chain": list(self.chain),
            "verified": self.verified,
            "verification": self.verification,
        }


_ENCODING_DER = 2  # _ssl.ENCODING_DER, for _ssl.Certificate.public_bytes (3.10+)


@cache
def _system_roots() -> tuple[x509.Certificate, ...]:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            try:
                with warnings.catch_warnings():
                    # Old roots in the system bundle (negative serials) are not ours
                    # to report.
                    warnings.simplefilter("ignore")
                    return tuple(x509.load_pem_x509_certificates(Path(candidate).read_bytes()))
            except (OSError, ValueError):
                continue
    return ()


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def _chain(ssl_object: ssl.SSLObject) -> list[x509.Certificate]:
    # Python 3.13 makes this public (SSLObject.get_unverified_chain); 3.11 has it on
    # the underlying _ssl object only.
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        return []
    try:
        raw = getter() or []
    except (ssl.SSLError, ValueError):
        return []
    out: list[x509.Certificate] = []
    for item in raw:
        der = item if isinstance(item, bytes) else item.public_bytes(_ENCODING_DER)
        out.append(x509.load_der_x509_certificate(der))
    return out


def _verify(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    name: str,
    ca_file: Path | None,
) -> tuple[bool, str]:
    roots = list(_system_roots())
    if ca_file is not None:
        try:
            roots += x509.load_pem_x509_certificates(ca_file.read_bytes())
        except (OSError, ValueError) as exc:
            return False, f"cannot read --tls-ca {ca_file}: {exc}"
    if not roots:
        return False, "no trusted CA certificates to verify against"
    try:
        subject: x509.GeneralName
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            subject = x509.DNSName(name)
        verifier = (
            PolicyBuilder()
            .store(Store(roots))
            .time(datetime.now(UTC))
            .build_server_verifier(subject)
        )
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        text = str(exc)
        if "candidates exhausted" in text:
            text = f"no chain to a trusted CA (self-signed or unknown issuer; {text})"
        return False, f"failed for {name} (CA/B Forum profile): {text}"
    except ValueError as exc:  # a certificate the validator cannot read at all
        return False, f"failed for {name} (CA/B Forum profile): {exc}"
    return True, f"ok: chain to a trusted CA, valid for {name}"


def inspect(
    ssl_object: ssl.SSLObject, name: str, ca_file: Path | None, *, verified: bool = False
) -> TlsInfo:
    """The report for the connection behind ``ssl_object``, checked for ``name``.
    ``verified``: the handshake already verified chain and name (``--tls-verify``):
    that is the answer, OpenSSL's; otherwise cryptography's path validation answers,
    under the stricter CA/B Forum profile, as information."""
    cipher = ssl_object.cipher()
    der = ssl_object.getpeercert(binary_form=True)
    leaf = x509.load_der_x509_certificate(der) if der else None
    chain = _chain(ssl_object)
    cert = None
    why = "no certificate"
    if leaf is not None:
        cert = CertInfo(
            subject=leaf.subject.rfc4514_string(),
            issuer=leaf.issuer.rfc4514_string(),
            not_before=leaf.not_valid_before_utc.isoformat(),
            not_after=leaf.not_valid_after_utc.isoformat(),
            names=_names(leaf),
        )
        if verified:
            why = f"ok: verified in the handshake, chain to a trusted CA and name {name}"
        else:
            verified, why = _verify(leaf, chain[1:], name, ca_file)
    return TlsInfo(
        version=ssl_object.version() or "TLS",
        cipher=cipher[0] if cipher else "",
        bits=cipher[2] if cipher else 0,
        certificate=cert,
        chain=tuple(c.subject.rfc4514_string() for c in chain),
        verified=verified,
        verification=why,
    )
