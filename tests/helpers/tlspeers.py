"""Receiving servers with TLS and SMTPUTF8 for the relay's policy cases, and what a
test needs to pin or trust their certificates.

* ``Recorder``: an aiosmtpd handler that records what arrived — each EHLO, each MAIL
  with its parameters and whether it came over TLS, each message with the TLS
  version it came under — so a test proves there was (no) transaction, (no)
  plaintext, and which extensions the relay used;
* ``receiver``: that handler on ``address:port`` (aiosmtpd ``Controller``), with
  STARTTLS (``tls_context``) and/or SMTPUTF8 when asked;
* ``self_signed``: a self-signed certificate (any name, any dates) made with
  ``cryptography``; ``spki_sha256``: the DANE-EE ``3 1 1`` association data of a
  certificate (RFC 6698 §2.1: SHA-256 of the SubjectPublicKeyInfo);
* ``policy_harness``: a ``RelayHarness`` whose TLS policy decider is built from the
  configuration (``[[tls_policy]]``, DANE, MTA-STS) as the composition root builds
  it, with the MTA-STS policy served through ``ServedPolicies``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from helpers.dnsserver import LoopbackDns
from helpers.mtasts_env import ServedPolicies
from helpers.relaykit import RelayHarness
from helpers.resolvers import resolver_for
from mailwright.config import parse_config
from mailwright.delivery.tlspolicy.build import build_decider

CERT_DAYS = 30  # validity of a test certificate that is meant to be current


@dataclass(frozen=True, slots=True)
class MailSeen:
    address: str
    options: tuple[str, ...]  # the MAIL parameters, upper case (aiosmtpd)
    tls: bool  # the MAIL came after a completed STARTTLS


@dataclass(frozen=True, slots=True)
class MessageSeen:
    mail_options: tuple[str, ...]
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls_version: str | None  # "TLSv1.3", or None in plaintext


class Recorder:
    """aiosmtpd handler: accepts everything and records it (module docstring)."""

    def __init__(self) -> None:
        self.ehlos = 0
        self.mails: list[MailSeen] = []
        self.messages: list[MessageSeen] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        self.mails.append(MailSeen(address, tuple(mail_options), session.ssl is not None))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        version = None
        if session.ssl is not None:
            ssl_object = session.ssl.get("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
        self.messages.append(
            MessageSeen(
                tuple(envelope.mail_options),
                tuple(envelope.rcpt_tos),
                bytes(envelope.original_content or envelope.content),
                version,
            )
        )
        return "250 2.0.0 Ok: stored"


@contextlib.contextmanager
def receiver(
    handler: Recorder,
    address: str,
    port: int,
    *,
    tls_context: ssl.SSLContext | None = None,
    smtputf8: bool = False,
) -> Iterator[Controller]:
    controller = Controller(
        handler,
        hostname=address,
        port=port,
        tls_context=tls_context,
        enable_SMTPUTF8=smtputf8,
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def self_signed(
    name: str, folder: Path, *, expired: bool = False
) -> tuple[Path, Path, x509.Certificate]:
    """(certificate file, key file, certificate): self-signed for ``name``; with
    ``expired`` its validity ended years ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    start = now.replace(year=2001) if expired else now - datetime.timedelta(days=1)
    end = now.replace(year=2002) if expired else now + datetime.timedelta(days=CERT_DAYS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file, cert


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def spki_sha256(cert: x509.Certificate) -> str:
    """TLSA ``3 1 1`` data, hex: SHA-256 of the SubjectPublicKeyInfo (RFC 6698 §2.1)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def policy_harness(dns: LoopbackDns, doc: dict[str, Any], sts_policy: bytes = b"") -> RelayHarness:
    """``RelayHarness`` with the decider the composition root builds from ``doc``
    (``runtime.compose``: ``build_decider`` with ``[outbound] ca_file`` as extra trust),
    the MTA-STS policy answered by ``ServedPolicies(sts_policy)``."""
    config = parse_config(doc)
    decider = build_decider(
        config,
        resolver_for(dns),
        fetcher=ServedPolicies(sts_policy),
        extra_ca_file=config.outbound.ca_file,
    )
    return RelayHarness(dns, doc, decider=decider)
