"""TlsManager over real loopback handshakes (asyncio on both ends, no SMTP involved).

Servers use ``manager.server_context`` exactly as the session loop will: bound into the
listener (implicit TLS, RFC 8314) or handed to ``start_tls`` after accept (STARTTLS,
RFC 3207; that mode also lets the test see the server-side handshake error).  Clients
trust a trustme CA or the generated self-signed certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailwright.config import CertificateConfig, ConfigError, TlsConfig, load_config, parse_config
from mailwright.net.tls import (
    MODERN_TLS12_CIPHERS,
    SELF_SIGNED_CERT,
    SELF_SIGNED_KEY,
    TlsError,
    TlsManager,
    describe,
)

HOST = "127.0.0.1"
NO_SNI = ""  # asyncio: an empty server_hostname sends no SNI
TIMEOUT = 10.0

# -- fixtures and helpers ------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_pair(ca: trustme.CA, directory: Path, stem: str, *names: str) -> CertificateConfig:
    leaf = ca.issue_cert(*names)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return CertificateConfig(cert=cert, key=key)


def manager_for(tmp_path: Path, *certs: CertificateConfig, **tls: Any) -> TlsManager:
    manager = TlsManager(TlsConfig(certificates=list(certs), **tls), tmp_path / "data", "mx")
    manager.load()
    return manager


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), TIMEOUT)

    asyncio.run(bounded())


@dataclass
class ServerRecord:
    port: int = 0
    described: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tls_server(ctx: ssl.SSLContext, *, starttls: bool = False) -> AsyncIterator[ServerRecord]:
    """An echo server: implicit TLS on the listener, or ``start_tls`` after accept."""
    record = ServerRecord()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if starttls:
            try:
                await writer.start_tls(ctx)
            except (ssl.SSLError, ConnectionError) as exc:
                record.errors.append(exc)
                writer.close()
                return
        record.described.append(describe(writer.get_extra_info("ssl_object")))
        await _echo(reader, writer)

    server = await asyncio.start_server(handle, HOST, 0, ssl=None if starttls else ctx)
    record.port = server.sockets[0].getsockname()[1]
    try:
        yield record
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self.writer.get_extra_info("ssl_object")

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.ssl_object.getpeercert(binary_form=True))

    @property
    def names(self) -> list[str]:
        san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return san.value.get_values_for_type(x509.DNSName)

    async def echo(self, data: bytes = b"ping\n") -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reader.readline()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def connect(
    port: int,
    trust: trustme.CA | Path,
    server_name: str = NO_SNI,
    *,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> Client:
    """Connect and handshake; the chain is always verified, the name only if SNI is sent."""
    ctx = ssl.create_default_context()
    if isinstance(trust, Path):
        ctx.load_verify_locations(cafile=trust)
    else:
        trust.configure_trust(ctx)
    ctx.check_hostname = False  # unknown names get the default cert: check names in tests
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        if ciphers is not None or version == ssl.TLSVersion.TLSv1_1:
            ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
    reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=server_name)
    return Client(reader, writer)


async def handshake(port: int, trust: trustme.CA | Path, server_name: str = NO_SNI) -> Client:
    client = await connect(port, trust, server_name)
    assert await client.echo() == b"ping\n"
    return client


async def refused(record: ServerRecord, trust: trustme.CA, **kwargs: Any) -> str:
    """Attempt a handshake that the server must refuse; return OpenSSL's server-side reason."""
    with pytest.raises((ssl.SSLError, ConnectionError)) as info:
        client = await connect(record.port, trust, "mail.example.org", **kwargs)
        await client.echo()  # TLS 1.3 reports some server-side failures only here
    if getattr(info.value, "reason", None) == "NO_PROTOCOLS_AVAILABLE":
        pytest.skip("this OpenSSL cannot even offer the old protocol version")
    for _ in range(100):
        if record.errors:
            break
        await asyncio.sleep(0.01)
    assert record.errors, "the server side did not fail"
    assert not record.described
    return getattr(record.errors[0], "reason", "") or str(record.errors[0])


def expiring_self_signed(directory: Path, hostname: str, not_after: datetime) -> bytes:
    """Write a self-signed pair like the generated one but with the given expiry."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / SELF_SIGNED_CERT).write_bytes(pem)
    (directory / SELF_SIGNED_KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


# -- SNI -------------------------------------------------------------------------------


def test_sni_picks_each_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    manager = manager_for(
        tmp_path,
        write_pair(ca, tmp_path, "mail", "mail.example.org"),
        write_pair(ca, tmp_path, "other", "other.example.net"),
    )

    async def scenario() -> None:
        async with tls_server(manager.server_context) as server:
            for sent, expected in [
                ("mail.example.org", "mail.example.org"),
                ("other.example.net", "other.example.net"),
                ("OTHER.Example.NET", "other.example.net"),  # case-insensitive
                ("unknown.example.com", "mail.example.org"),  # unknown -> first
                (NO_SNI, "mail.example.org"),  # no SNI -> first
            ]:
                client = await handshake(server.port, ca, sent)
                assert client.names == [expected], sent
                await client.close()

    run(scenario)


def test_wildcard_matches_exactly_one_label(tmp_path: Path, ca: trustme.CA) -> None:
    manager = manager_for(
        tmp_path,
        write_pair(ca, tmp_path, "mail", "mail.example.org"),
        write_pair(ca, tmp_path, "wild", "*.example.net"),
        write_pair(ca, tmp_path, "exact", "smtp.example.net"),
    )
    cases = {
        "a.example.net": "*.example.net",
        "MX.EXAMPLE.NET.": "*.example.net",
        "smtp.example.net": "smtp.example.net",  # an exact name beats a wildcard
        "example.net": "mail.example.org",  # the wildcard needs a label
        "a.b.example.net": "mail.example.org",  # ...and only one
        "xexample.net": "mail.example.org",
    }
    for sent, expected in cases.items():
        assert manager.certificate_for(sent).names == (expected,), sent

    async def scenario() -> None:
        async with tls_server(manager.server_context) as server:
            for sent in ("a.example.net", "a.b.example.net"):
                client = await handshake(server.port, ca, sent)
                assert client.names == [cases[sent]]
                await client.close()

    run(scenario)


# -- protocol versions and ciphers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_tls12_and_tls13_accepted(
    tmp_path: Path, ca: trustme.CA, version: ssl.TLSVersion, name: str
) -> None:
    manager = manager_for(tmp_path, write_pair(ca, tmp_path, "mail", "mail.example.org"))

    async def scenario() -> None:
        async with tls_server(manager.server_context, starttls=True) as server:
            client = await connect(server.port, ca, "mail.example.org", version=version)
            assert await client.echo() == b"ping\n"
            cipher = client.ssl_object.cipher()[0]
            assert client.ssl_object.version() == name
            if version == ssl.TLSVersion.TLSv1_2:
                assert cipher in MODERN_TLS12_CIPHERS.split(":")
            assert server.described == [f"{name} {cipher}"]
            assert TlsManager.describe(client.ssl_object) == f"{name} {cipher}"
            await client.close()

    run(scenario)


def test_tls11_client_refused(tmp_path: Path, ca: trustme.CA) -> None:
    manager = manager_for(tmp_path, write_pair(ca, tmp_path, "mail", "mail.example.org"))

    async def scenario() -> None:
        async with tls_server(manager.server_context, starttls=True) as server:
            reason = await refused(server, ca, version=ssl.TLSVersion.TLSv1_1)
            assert reason == "UNSUPPORTED_PROTOCOL"

    run(scenario)


def test_min_version_tls13_refuses_tls12(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    manager = manager_for(tmp_path, pair, min_version="TLSv1.3")

    async def scenario() -> None:
        async with tls_server(manager.server_context, starttls=True) as server:
            reason = await refused(server, ca, version=ssl.TLSVersion.TLSv1_2)
            assert reason == "UNSUPPORTED_PROTOCOL"
            client = await handshake(server.port, ca, "mail.example.org")
            assert client.ssl_object.version() == "TLSv1.3"
            await client.close()

    run(scenario)


@pytest.mark.parametrize(
    "ciphers",
    [
        "AES128-GCM-SHA256:AES256-GCM-SHA384:AES256-SHA",  # RSA key exchange
        # CBC (trustme certificates are ECDSA), including the SHA-256/384 suites that
        # CPython's own server default would still accept.
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA",
    ],
)
def test_tls12_refuses_rsa_key_exchange_and_cbc(
    tmp_path: Path, ca: trustme.CA, ciphers: str
) -> None:
    manager = manager_for(tmp_path, write_pair(ca, tmp_path, "mail", "mail.example.org"))

    async def scenario() -> None:
        async with tls_server(manager.server_context, starttls=True) as server:
            reason = await refused(server, ca, version=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
            assert reason == "NO_SHARED_CIPHER"

    run(scenario)


# -- the self-signed default ---------------------------------------------------------------


def test_self_signed_generated_once_then_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = TlsManager(TlsConfig(), data, "mail.example.org")
    manager.load()
    crt, key = data / "tls" / SELF_SIGNED_CERT, data / "tls" / SELF_SIGNED_KEY
    assert manager.generated is not None
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    info = manager.certificates[0]
    assert info.self_signed and info.names == ("mail.example.org", "localhost")
    assert timedelta(days=360) < info.not_after - datetime.now(UTC) < timedelta(days=366)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    first = (crt.read_bytes(), key.read_bytes())

    again = TlsManager(TlsConfig(), data, "mail.example.org")
    again.load()
    assert again.generated is None
    assert (crt.read_bytes(), key.read_bytes()) == first

    async def scenario() -> None:
        async with tls_server(again.server_context) as server:
            for name in ("mail.example.org", "localhost"):
                # Trusting the self-signed certificate itself, with name checking on.
                ctx = ssl.create_default_context(cafile=crt)
                reader, writer = await asyncio.open_connection(
                    HOST, server.port, ssl=ctx, server_hostname=name
                )
                await Client(reader, writer).close()

    run(scenario)


def test_self_signed_regenerated_when_expired(tmp_path: Path) -> None:
    tls_dir = tmp_path / "data" / "tls"
    old = expiring_self_signed(tls_dir, "mail.example.org", datetime.now(UTC) - timedelta(days=1))
    manager = TlsManager(TlsConfig(), tmp_path / "data", "mail.example.org")
    manager.load()
    assert manager.generated is not None and "expir" in manager.generated
    assert (tls_dir / SELF_SIGNED_CERT).read_bytes() != old
    assert not manager.certificates[0].expired()
    assert stat.S_IMODE(os.stat(tls_dir / SELF_SIGNED_KEY).st_mode) == 0o600


def test_self_signed_regenerated_for_new_hostname_or_broken_pair(tmp_path: Path) -> None:
    data = tmp_path / "data"
    TlsManager(TlsConfig(), data, "mail.example.org").load()
    renamed = TlsManager(TlsConfig(), data, "mx.example.org")
    renamed.load()
    assert renamed.generated is not None and renamed.certificates[0].names[0] == "mx.example.org"
    # A crash between the key and the certificate writes leaves a mismatched pair.
    key = ec.generate_private_key(ec.SECP256R1())
    (data / "tls" / SELF_SIGNED_KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    repaired = TlsManager(TlsConfig(), data, "mx.example.org")
    repaired.load()
    assert repaired.generated is not None and "does not match" in repaired.generated


def test_tls_disabled_without_certificates_or_self_signed(tmp_path: Path) -> None:
    config = TlsConfig(self_signed=False)
    assert not config.enabled
    with pytest.raises(TlsError, match="disabled"):
        TlsManager(config, tmp_path, "mx").load()


# -- reload ------------------------------------------------------------------------------


def test_reload_serves_new_cert_and_keeps_old_sessions(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    write_pair(ca, tmp_path, "other", "other.example.net")
    other = CertificateConfig(cert=tmp_path / "other.crt", key=tmp_path / "other.key")
    manager = manager_for(tmp_path, pair, other)
    default = manager.server_context
    old_serial = manager.certificates[0].serial

    async def scenario() -> None:
        # The listener captures the default context at bind time, as create_server does.
        async with tls_server(default) as server:
            before = await handshake(server.port, ca, "mail.example.org")
            assert before.cert.serial_number == old_serial

            # Renewal: new files under the same names, new serial and subject.
            write_pair(ca, tmp_path, "mail", "mail.example.org", "smtp.example.org")
            manager.reload()
            assert manager.server_context is default
            new_serial = manager.certificates[0].serial
            assert new_serial != old_serial

            for name in ("mail.example.org", "smtp.example.org", NO_SNI):
                after = await handshake(server.port, ca, name)
                assert after.cert.serial_number == new_serial, name
                await after.close()
            assert await before.echo(b"still here\n") == b"still here\n"
            await before.close()

            # The chain was also replaced in place on the default context itself: with
            # the SNI callback out of the way it serves the new certificate too.
            default.sni_callback = None
            try:
                bare = await handshake(server.port, ca, "other.example.net")
                assert bare.cert.serial_number == new_serial
                await bare.close()
            finally:
                default.sni_callback = manager._on_server_name

    run(scenario)


def test_reload_with_broken_file_keeps_old_contexts(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    manager = manager_for(tmp_path, pair)
    before = manager.certificates
    pair.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ntruncated")

    with pytest.raises(TlsError) as info:
        manager.reload()
    assert str(pair.cert) in str(info.value) and "\n" not in str(info.value)
    assert manager.certificates == before and manager.generation == 1

    # A key from another certificate is refused the same way.
    write_pair(ca, tmp_path, "mail", "mail.example.org")
    ca.issue_cert("x.example.org").private_key_pem.write_to_path(str(pair.key))
    with pytest.raises(TlsError, match="does not match"):
        manager.reload()

    async def scenario() -> None:
        async with tls_server(manager.server_context) as server:
            client = await handshake(server.port, ca, "mail.example.org")
            assert client.cert.serial_number == before[0].serial
            await client.close()

    run(scenario)


# -- errors --------------------------------------------------------------------------------


def _load_error(tmp_path: Path, pair: CertificateConfig) -> str:
    manager = TlsManager(TlsConfig(certificates=[pair]), tmp_path, "mx")
    with pytest.raises(TlsError) as info:
        manager.load()
    with pytest.raises(RuntimeError):
        _ = manager.server_context
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_files_are_named(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    missing = tmp_path / "nope.crt"
    message = _load_error(tmp_path, CertificateConfig(cert=missing, key=pair.key))
    assert message == f"{missing}: cannot read certificate file: No such file or directory"
    missing_key = tmp_path / "nope.key"
    message = _load_error(tmp_path, CertificateConfig(cert=pair.cert, key=missing_key))
    assert message == f"{missing_key}: cannot read private key file: No such file or directory"


def test_mismatched_key_is_named(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    other = write_pair(ca, tmp_path, "other", "other.example.net")
    message = _load_error(tmp_path, CertificateConfig(cert=pair.cert, key=other.key))
    assert message == f"{other.key}: private key does not match certificate {pair.cert}"


def test_unreadable_pem_is_named(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a pem file\n")
    message = _load_error(tmp_path, CertificateConfig(cert=garbage, key=pair.key))
    assert message.startswith(f"{garbage}: no PEM certificate found")
    # A key file given as the certificate, and the other way round.
    message = _load_error(tmp_path, CertificateConfig(cert=pair.key, key=pair.key))
    assert message.startswith(f"{pair.key}: no PEM certificate found")
    message = _load_error(tmp_path, CertificateConfig(cert=pair.cert, key=pair.cert))
    assert message.startswith(f"{pair.cert}: no usable PEM private key")


def test_encrypted_key_is_refused_without_prompting(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    message = _load_error(tmp_path, pair)
    assert message.startswith(f"{pair.key}: private key is encrypted")


def test_combined_cert_and_key_file(tmp_path: Path, ca: trustme.CA) -> None:
    pair = write_pair(ca, tmp_path, "mail", "mail.example.org")
    both = tmp_path / "both.pem"
    both.write_bytes(pair.cert.read_bytes() + pair.key.read_bytes())
    manager = manager_for(tmp_path, CertificateConfig(cert=both, key=both))
    assert manager.certificates[0].names == ("mail.example.org",)


def test_certificate_summary(tmp_path: Path, ca: trustme.CA) -> None:
    manager = manager_for(
        tmp_path,
        write_pair(ca, tmp_path, "mail", "mail.example.org", "*.example.org"),
        write_pair(ca, tmp_path, "other", "other.example.net"),
    )
    first, second = manager.certificate_summary()
    expiry = f"{manager.certificates[0].not_after:%Y-%m-%d}"
    assert first.startswith("mail.example.org, *.example.org: valid until " + expiry)
    assert str(tmp_path / "mail.crt") in first and "[default]" in first
    assert second.startswith("other.example.net: ")


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ({"certificates": [{"cert": "a.pem"}]}, "tls.certificates.0: key is missing"),
        ({"certificates": [{"key": "a.key"}]}, "tls.certificates.0: cert is missing"),
        (
            {"min_version": "TLSv1.1"},
            "tls.min_version: must be 'TLSv1.2' or 'TLSv1.3', not 'TLSv1.1'",
        ),
        ({"ciphers": "ALL"}, "tls.ciphers: unknown field"),
        (
            {"certificates": [{"cert": "a", "key": "b"}, {"cert": "a", "key": "c"}]},
            "tls.certificates: certificate a is listed twice",
        ),
    ],
)
def test_config_errors(tls: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tls": tls}, "mailwright.toml")
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_config_paths_relative_to_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "mailwright.toml"
    path.parent.mkdir()
    path.write_text(
        '[tls]\nmin_version = "TLSv1.3"\n'
        '[[tls.certificates]]\ncert = "certs/mail.crt"\nkey = "/srv/keys/mail.key"\n'
    )
    config = load_config(path)
    assert config.tls.min_version == "TLSv1.3"
    assert config.tls.certificates == [
        CertificateConfig(cert=path.parent / "certs/mail.crt", key=Path("/srv/keys/mail.key"))
    ]
    assert parse_config({}).tls == TlsConfig() and TlsConfig().enabled
