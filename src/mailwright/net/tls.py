"""TLS contexts for STARTTLS (RFC 3207) and implicit TLS (RFC 8314): certificates, SNI,
the self-signed default, and reload without dropping sessions.

``TlsManager`` owns one *default* ``ssl.SSLContext`` for the life of the process.  The
session loop hands it to ``loop.start_tls(..., server_side=True)`` and the implicit-TLS
listener binds it with ``create_server(ssl=...)``, which captures the object once; so the
object itself never changes, only what it serves:

* its ``sni_callback`` runs for *every* ClientHello (OpenSSL calls the servername
  callback with ``server_name=None`` when the client sends no SNI) and switches the
  connection to the per-certificate context chosen from the current *generation*: an
  exact SAN DNS name first, then a one-label wildcard (``*.example.org`` matches
  ``mail.example.org``, not ``example.org`` nor ``a.b.example.org``, RFC 6125 §6.4.3),
  then the first configured certificate.  Names are compared case-insensitively with
  any trailing dot removed; among certificates claiming the same name the first listed
  wins.
* ``reload()`` reads and checks every file, builds a complete new generation, and only
  then swaps it in (one attribute assignment) and reloads the first certificate into
  the default context *in place* (``load_cert_chain`` on an existing context replaces
  its chain for new handshakes; tested).  Any error leaves the old generation serving
  and raises ``TlsError``.  Connections already established keep their own SSL objects
  and are never dropped.

Call ``load()``/``reload()`` on the event-loop thread (it reads a few small files):
OpenSSL contexts must not be modified while another thread creates connections from them.

Every file is read exactly once per (re)load: the bytes are parsed with ``cryptography``
(PEM syntax, key matches certificate, names, expiry) and the very same bytes are handed to
OpenSSL through a private temporary directory, so a file replaced mid-reload can never make
the names used for SNI disagree with the certificate served.

Protocol and cipher choices:

* TLS 1.2 minimum (RFC 8996 deprecates 1.0 and 1.1; RFC 8314 §4.1), or 1.3 by config.
* TLS 1.2 suites are Mozilla's "intermediate" list restricted to ECDHE with AEAD
  (AES-GCM, ChaCha20-Poly1305): forward secrecy, no RSA key exchange, no CBC.  Mozilla
  also lists DHE-RSA suites; they are left out because CPython cannot enable OpenSSL's
  built-in FFDHE groups without a parameter file and every TLS 1.2 client of the last
  decade offers ECDHE.  The trade-off for an MX is explicit: a peer that can only do CBC
  or RSA key exchange fails the handshake and (RFC 7435, opportunistic TLS) will usually
  retry in plaintext.  TLS 1.3 suites are OpenSSL's defaults (all AEAD).
* ``OP_CIPHER_SERVER_PREFERENCE``, ``OP_NO_COMPRESSION`` (CRIME), ``OP_NO_RENEGOTIATION``
  (client-initiated renegotiation is a CPU DoS), single-use ECDH keys; session tickets
  stay on.  No client certificates are requested.

Self-signed default: with no certificates configured and ``self_signed`` on, an EC P-256
key and a certificate for the SMTP hostname (SAN: hostname, ``localhost``, 127.0.0.1,
::1; one year) are written to ``data_dir/tls/selfsigned.key`` (mode 0600) and
``selfsigned.crt`` through ``write_atomic`` on first start and reused afterwards.  They are
regenerated when missing, unreadable, mismatched (a crash between the two writes), expired
or within ``SELF_SIGNED_RENEW_BEFORE`` of expiry, or no longer naming the hostname.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailwright.config import TlsConfig
from mailwright.fs.durable import ensure_dir, write_atomic

__all__ = [
    "MODERN_TLS12_CIPHERS",
    "CertificateInfo",
    "TlsError",
    "TlsManager",
    "certificate_names_match",
    "client_context",
    "describe",
]

MODERN_TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
_MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_OPTIONS = (
    ssl.OP_NO_COMPRESSION
    | ssl.OP_CIPHER_SERVER_PREFERENCE
    | ssl.OP_SINGLE_ECDH_USE
    | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
)

# How long a TLS handshake may take, for STARTTLS (RFC 3207) and implicit TLS (RFC
# 8314) alike; neither RFC gives a figure.  Postfix's smtpd_starttls_timeout is 300 s:
# a minute is plenty on today's links and frees the slot sooner.
TLS_HANDSHAKE_TIMEOUT = 60.0
SELF_SIGNED_DIR = "tls"
SELF_SIGNED_KEY = "selfsigned.key"
SELF_SIGNED_CERT = "selfsigned.crt"
SELF_SIGNED_LIFETIME = timedelta(days=365)
SELF_SIGNED_RENEW_BEFORE = timedelta(days=7)
# Backdate notBefore a little so peers with a slow clock accept a fresh certificate.
_CLOCK_SKEW = timedelta(hours=1)
_CERT_FILE_MODE = 0o644  # public; the key keeps write_atomic's private 0600
_UB_COMMON_NAME = 64  # RFC 5280 upper bound for a CN


class TlsError(Exception):
    """A certificate or key problem, as one line naming the file (no traceback needed)."""


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What start-up output, logs and SNI selection need to know about one certificate."""

    cert_path: Path
    key_path: Path
    subject: str  # RFC 4514
    names: tuple[str, ...]  # lower-case SAN DNS names (the CN if there is no SAN)
    not_before: datetime
    not_after: datetime
    serial: int
    self_signed: bool

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.not_after

    def matches(self, server_name: str) -> bool:
        name = _normalise(server_name)
        return any(_name_matches(pattern, name) for pattern in self.names)


@dataclass(frozen=True, slots=True)
class _Material:
    """The bytes of one certificate/key pair, read once and checked."""

    info: CertificateInfo
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class _Generation:
    """One consistent set of per-certificate contexts and the SNI lookup tables."""

    infos: tuple[CertificateInfo, ...]
    contexts: tuple[ssl.SSLContext, ...]
    exact: dict[str, int] = field(default_factory=dict)
    wildcard: dict[str, int] = field(default_factory=dict)  # parent domain -> index

    def index_for(self, server_name: str | None) -> int:
        if not server_name:
            return 0
        name = _normalise(server_name)
        index = self.exact.get(name)
        if index is None:
            parent = name.partition(".")[2]
            index = self.wildcard.get(parent, 0) if parent else 0
        return index


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384"``: for the Received header (RFC 8314 §4.3) and log."""
    version = ssl_object.version() or "TLS"
    cipher = ssl_object.cipher()
    return f"{version} {cipher[0]}" if cipher else version


class TlsManager:
    """Builds, serves and reloads the server-side TLS contexts (see the module docstring)."""

    def __init__(self, config: TlsConfig, data_dir: Path, hostname: str) -> None:
        self._config = config
        self._data_dir = Path(data_dir)
        self._hostname = hostname
        self._default: ssl.SSLContext | None = None
        self._generation: _Generation | None = None
        self.generation = 0  # number of successful (re)loads
        # Why a self-signed certificate was (re)generated by the last (re)load, else None.
        self.generated: str | None = None

    # -- public API ------------------------------------------------------------------

    @property
    def server_context(self) -> ssl.SSLContext:
        """The default context: the same object from ``load()`` until the process ends."""
        if self._default is None:
            raise RuntimeError("TlsManager.load() has not been called")
        return self._default

    @property
    def certificates(self) -> tuple[CertificateInfo, ...]:
        """The certificates now served, the default (first) one first."""
        return self._generation.infos if self._generation else ()

    def load(self) -> None:
        """Read certificates (generating the self-signed one if needed); raise TlsError."""
        self.reload()

    def reload(self) -> None:
        """Re-read every file; on any error keep serving the old contexts and raise TlsError."""
        if not self._config.enabled:
            raise TlsError("TLS is disabled: no tls.certificates configured and self_signed is off")
        generated = None
        if self._config.certificates:
            materials = [_read_material(c.cert, c.key) for c in self._config.certificates]
        else:
            material, generated = self._self_signed_material()
            materials = [material]
        with tempfile.TemporaryDirectory(prefix="mailwright-tls-") as tmp:
            try:
                files = [_snapshot(Path(tmp), i, m) for i, m in enumerate(materials)]
            except OSError as exc:
                raise TlsError(
                    f"{exc.filename or tmp}: cannot stage certificates for loading: "
                    f"{exc.strerror or exc}"
                ) from None
            contexts = []
            for material, (cert_file, key_file) in zip(materials, files, strict=True):
                ctx = self._new_context()
                _load_chain(ctx, material.info, cert_file, key_file)
                contexts.append(ctx)
            generation = _index(tuple(m.info for m in materials), tuple(contexts))
            default = self._default
            if default is None:
                default = self._new_context()
                default.sni_callback = self._on_server_name
            # Same bytes that just loaded into a fresh context: this cannot fail on content.
            _load_chain(default, materials[0].info, *files[0])
        self._generation = generation
        self._default = default
        self.generated = generated
        self.generation += 1

    def certificate_for(self, server_name: str | None) -> CertificateInfo:
        """The certificate a client sending ``server_name`` (or no SNI: None) receives."""
        if self._generation is None:
            raise RuntimeError("TlsManager.load() has not been called")
        return self._generation.infos[self._generation.index_for(server_name)]

    def certificate_summary(self) -> list[str]:
        """One line per certificate for start-up output: names, expiry, file."""
        now = datetime.now(UTC)
        lines = []
        for i, info in enumerate(self.certificates):
            notes = []
            if i == 0 and len(self.certificates) > 1:
                notes.append("default")
            if info.self_signed:
                notes.append("self-signed, generated now" if self.generated else "self-signed")
            if info.expired(now):
                notes.append("EXPIRED")
            elif info.not_after - now < timedelta(days=14):
                notes.append("expires soon")
            extra = f" [{', '.join(notes)}]" if notes else ""
            lines.append(
                f"{', '.join(info.names) or info.subject}: valid until "
                f"{info.not_after:%Y-%m-%d %H:%M} UTC ({info.cert_path}){extra}"
            )
        return lines

    describe = staticmethod(describe)

    # -- internals -------------------------------------------------------------------

    def _new_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _MIN_VERSIONS[self._config.min_version]
        ctx.options |= _OPTIONS
        ctx.set_ciphers(MODERN_TLS12_CIPHERS)
        return ctx

    def _on_server_name(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        # Runs for every handshake (server_name None without SNI), so each connection
        # uses the *current* generation even if the in-place default chain were stale.
        generation = self._generation
        if generation is not None:
            ssl_object.context = generation.contexts[generation.index_for(server_name)]

    def _self_signed_material(self) -> tuple[_Material, str | None]:
        """The stored self-signed pair, or a new one and the reason it was generated."""
        directory = self._data_dir / SELF_SIGNED_DIR
        cert_path, key_path = directory / SELF_SIGNED_CERT, directory / SELF_SIGNED_KEY
        reason: str | None = "none found"
        if cert_path.exists() or key_path.exists():
            try:
                material = _read_material(cert_path, key_path)
            except TlsError as exc:
                reason = str(exc)
            else:
                reason = self._self_signed_problem(material.info)
                if reason is None:
                    return material, None
        cert_pem, key_pem = _generate_self_signed(self._hostname)
        try:
            ensure_dir(directory)
            # Key first: a crash between the two writes leaves a mismatched pair, which
            # the next start detects and regenerates.
            write_atomic(key_path, key_pem)
            write_atomic(cert_path, cert_pem, mode=_CERT_FILE_MODE)
        except OSError as exc:
            raise TlsError(
                f"{exc.filename or directory}: cannot write the self-signed certificate: "
                f"{exc.strerror or exc}"
            ) from None
        return _read_material(cert_path, key_path), reason

    def _self_signed_problem(self, info: CertificateInfo) -> str | None:
        if datetime.now(UTC) + SELF_SIGNED_RENEW_BEFORE >= info.not_after:
            return f"expired or expiring on {info.not_after:%Y-%m-%d}"
        if not _is_ip(self._hostname) and not info.matches(_dns_name(self._hostname)):
            return f"it does not name {self._hostname}"
        return None


# -- reading and checking files ----------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _read_material(cert_path: Path, key_path: Path) -> _Material:
    cert_pem = _read(cert_path, "certificate file")
    key_pem = cert_pem if key_path == cert_path else _read(key_path, "private key file")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError(
            f"{cert_path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(
            f"{key_path}: private key is encrypted; give an unencrypted key "
            "(and protect the file with permissions)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(
            f"{key_path}: no usable PEM private key found (expected -----BEGIN PRIVATE KEY-----)"
        ) from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise TlsError(f"{key_path}: private key does not match certificate {cert_path}")
    info = CertificateInfo(
        cert_path=cert_path,
        key_path=key_path,
        subject=leaf.subject.rfc4514_string(),
        names=_certificate_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=leaf.serial_number,
        self_signed=leaf.issuer == leaf.subject,
    )
    return _Material(info, cert_pem, key_pem)


def _certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        # Legacy certificate without SAN: clients ignore the CN today (RFC 6125 §6.4.4),
        # but it is still the best hint for choosing by SNI.
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(_normalise(n) for n in names if n))


def _snapshot(directory: Path, index: int, material: _Material) -> tuple[Path, Path]:
    """Write the checked bytes to private files for OpenSSL (it only loads from paths)."""
    cert_file, key_file = directory / f"{index}.crt", directory / f"{index}.key"
    for path, data in ((cert_file, material.cert_pem), (key_file, material.key_pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return cert_file, key_file


def _load_chain(ctx: ssl.SSLContext, info: CertificateInfo, cert: Path, key: Path) -> None:
    try:
        # A password is given so that OpenSSL never prompts on the terminal.
        ctx.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise TlsError(
            f"{info.cert_path}: OpenSSL refused the certificate or key {info.key_path}: "
            f"{' '.join(str(reason).split())}"
        ) from None


def _index(infos: tuple[CertificateInfo, ...], contexts: tuple[ssl.SSLContext, ...]) -> _Generation:
    generation = _Generation(infos, contexts)
    for i, info in enumerate(infos):
        for name in info.names:
            if name.startswith("*."):
                generation.wildcard.setdefault(name[2:], i)
            else:
                generation.exact.setdefault(name, i)
    return generation


def _normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        label, _, parent = name.partition(".")
        return bool(label) and parent == pattern[2:]
    return pattern == name


# -- the self-signed default ----------------------------------------------------------


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _dns_name(hostname: str) -> str:
    """The A-label form that certificates carry (RFC 5280 §4.2.1.6)."""
    name = _normalise(hostname)
    with contextlib.suppress(UnicodeError):
        return name.encode("idna").decode("ascii")
    return name


def _generate_self_signed(hostname: str) -> tuple[bytes, bytes]:
    """An EC P-256 key and a one-year certificate; returns (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    host_ip = _is_ip(hostname)
    dns = [] if host_ip else [_dns_name(hostname)]
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys([*dns, "localhost"])]
    ips = dict.fromkeys([*([hostname] if host_ip else []), "127.0.0.1", "::1"])
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    common_name = hostname if 0 < len(hostname) <= _UB_COMMON_NAME else "mailwright"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailwright self-signed"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + SELF_SIGNED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


# -- the client side (net.outbound) ----------------------------------------------------


def client_context(*, verify: bool, ca_file: Path | None = None) -> ssl.SSLContext:
    """A context for STARTTLS as a client.  ``verify``: the chain must lead to the
    system CAs (plus ``ca_file``); the *name* is checked by the caller against the
    policy's names (``certificate_names_match``: a policy may accept several, RFC 7672
    §3.2.2 / RFC 8461 §4.1), so OpenSSL's own host check is off.  Without ``verify``
    (opportunistic and "encrypt" policies, RFC 7435 §3) no certificate is checked.
    TLS 1.2 minimum on both (RFC 8996)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.check_hostname = False
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if ca_file is not None:
            ctx.load_verify_locations(cafile=str(ca_file))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_names_match(ssl_object: ssl.SSLObject, names: tuple[str, ...]) -> bool:
    """Whether the verified peer certificate is valid for one of ``names`` (RFC 6125
    §6.4): its DNS-IDs (subjectAltName), the common name only when it has none
    (§6.4.4), a wildcard only as the whole leftmost label (§6.4.3)."""
    cert = ssl_object.getpeercert()
    if not cert:
        return False
    san = cast(tuple[tuple[str, str], ...], cert.get("subjectAltName", ()))
    dns_ids = [value for kind, value in san if kind == "DNS"]
    if not dns_ids:
        subject = cast(tuple[tuple[tuple[str, str], ...], ...], cert.get("subject", ()))
        dns_ids = [value for rdn in subject for key, value in rdn if key == "commonName"]
    patterns = [_normalise(p) for p in dns_ids]
    wanted = [_dns_name(n) for n in names]
    return any(_name_matches(p, n) for p in patterns for n in wanted)
