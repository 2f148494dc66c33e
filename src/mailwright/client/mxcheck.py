"""``mailwright mx --check``: connect to each MX host and check what a sender relies on.

Per host, on its first address (A records before AAAA, the order a sender tries them):

1. the banner: a plain TCP connection that reads the greeting and says QUIT — the
   connect time and the time to the banner (RFC 5321 §4.5.3.2.1 gives senders 5
   minutes; a slow banner is usually a DNSBL lookup or a tarpit on the server);
2. STARTTLS and the certificate: ``net.outbound.OutboundSession`` with a VERIFY policy
   for the MX host name (the same check the relay and MTA-STS enforce: the chain to a
   trusted CA — the system's plus ``--ca`` — and the name, RFC 6125).  When that fails
   on the certificate, a second session with ENCRYPT fetches the chain anyway, so the
   report can say what the certificate *is* and whether TLSA matches it;
3. TLSA at ``_25._tcp.<host>`` (RFC 7672 §2.2.3; always port 25, whatever ``--port``
   says, because that is where senders look): published, DNSSEC-authenticated, and
   matching the chain (``delivery.tlspolicy.dane.DaneCheck``, the relay's own check).

Per domain: MTA-STS (RFC 8461) — the ``_mta-sts`` TXT record and the policy fetched
over HTTPS (``delivery.tlspolicy``'s parsers and fetcher), and whether every MX host is
covered by the policy's ``mx`` patterns (§4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from mailwright.delivery.tlspolicy.certs import peer_chain
from mailwright.delivery.tlspolicy.dane import DaneCheck, describe, tlsa_name, usable
from mailwright.delivery.tlspolicy.fetch import (
    HTTPS_PORT,
    HttpsPolicyFetcher,
    PolicyFetchError,
    ResolverConnector,
    check_response,
)
from mailwright.delivery.tlspolicy.mtasts import StsError, StsMode, parse_policy, parse_txt_records
from mailwright.dns.types import DnsTemporaryError, Resolver
from mailwright.net.outbound import (
    ClientSettings,
    ClientTimeouts,
    OutboundSession,
    Peer,
    SessionError,
    Stage,
    TlsMode,
    TlsPolicy,
)

SMTP_PORT = 25  # RFC 5321 §4.5.4.2 / RFC 7672 §2.2.3: where MX hosts listen, TLSA lives
# Each step (connect, banner, each command, the handshake) gets this long; a sender
# waits minutes (RFC 5321 §4.5.3.2), a person at a terminal does not.
DEFAULT_TIMEOUT = 10.0
MAX_BANNER_LINES = 50  # a greeting longer than this is not worth reading on
# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; a little slack for bad peers.
MAX_BANNER_LINE = 1024
# The enhanced codes ``net.outbound`` reports for "TLS required, not offered" and for a
# failed handshake or certificate check (``smtp.codes.R451_TLS_NOT_OFFERED`` / ``_FAILED``).
TLS_NOT_OFFERED = "4.7.4"


@dataclass(frozen=True, slots=True)
class CheckSettings:
    port: int = SMTP_PORT
    helo_name: str = "localhost"
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    sts_port: int = HTTPS_PORT  # where mta-sts.<domain> serves HTTPS (tests: loopback)


@dataclass(slots=True)
class HostCheck:
    """What the connection to one MX host showed."""

    host: str
    address: str
    port: int
    connect_ms: float | None = None
    banner_ms: float | None = None
    banner: str = ""
    error: str = ""  # could not connect / no greeting / session failed
    starttls: bool | None = None  # None: not known (the session failed before EHLO)
    tls_version: str | None = None
    cert_valid: bool | None = None
    cert_problem: str = ""
    cert_subject: str = ""
    cert_issuer: str = ""
    cert_names: tuple[str, ...] = ()
    cert_not_after: str = ""
    tlsa: list[str] = field(default_factory=list)  # "3 1 1 ab12..." as published
    tlsa_authentic: bool = False
    tlsa_match: bool | None = None  # None: no TLSA, or no certificate to match
    tlsa_detail: str = ""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.error:
            found.append(self.error)
        if self.starttls is False:
            found.append("STARTTLS not offered: mail to it travels in clear text")
        if self.cert_valid is False:
            found.append(f"certificate not valid for {self.host}: {self.cert_problem}")
        if self.tlsa and not self.tlsa_authentic:
            found.append("TLSA published but not DNSSEC-authenticated: DANE cannot use it")
        if self.tlsa_match is False:
            found.append(f"TLSA does not match the certificate: {self.tlsa_detail}")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "connect_ms": self.connect_ms,
            "banner_ms": self.banner_ms,
            "banner": self.banner,
            "error": self.error or None,
            "starttls": self.starttls,
            "tls_version": self.tls_version,
            "certificate": {
                "valid": self.cert_valid,
                "problem": self.cert_problem or None,
                "subject": self.cert_subject,
                "issuer": self.cert_issuer,
                "names": list(self.cert_names),
                "not_after": self.cert_not_after,
            }
            if self.cert_subject or self.cert_valid is not None
            else None,
            "tlsa": {
                "records": self.tlsa,
                "authenticated": self.tlsa_authentic,
                "matches": self.tlsa_match,
                "detail": self.tlsa_detail,
            },
            "problems": self.problems,
        }


@dataclass(slots=True)
class StsStatus:
    """The domain's MTA-STS state (RFC 8461)."""

    record: str = ""  # the TXT record as published ("" when none)
    record_id: str = ""
    error: str = ""  # TXT lookup, fetch or parse failure
    mode: str = ""
    max_age: int | None = None
    mx_patterns: tuple[str, ...] = ()
    uncovered: tuple[str, ...] = ()  # MX hosts no pattern matches

    @property
    def published(self) -> bool:
        return bool(self.record)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.error:
            found.append(self.error)
        if self.uncovered and self.mode == StsMode.ENFORCE:
            found.append(
                f"policy (enforce) does not cover {', '.join(self.uncovered)}: "
                "senders will not deliver to it"
            )
        elif self.uncovered and self.mode == StsMode.TESTING:
            found.append(f"policy (testing) does not cover {', '.join(self.uncovered)}")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "published": self.published,
            "record": self.record or None,
            "id": self.record_id or None,
            "mode": self.mode or None,
            "max_age": self.max_age,
            "mx": list(self.mx_patterns),
            "uncovered": list(self.uncovered),
            "error": self.error or None,
            "problems": self.problems,
        }


async def check_hosts(
    hosts: Sequence[tuple[str, str]], resolver: Resolver, settings: CheckSettings
) -> list[HostCheck]:
    """One ``HostCheck`` per ``(host, address)``, in their order (run together)."""
    return list(await asyncio.gather(*(_check_host(h, a, resolver, settings) for h, a in hosts)))


async def _check_host(
    host: str, address: str, resolver: Resolver, settings: CheckSettings
) -> HostCheck:
    check = HostCheck(host, address, settings.port)
    await _banner(check, settings.timeout)
    if not check.error:
        chain = await _tls(check, settings)
        await _tlsa(check, resolver, chain)
    return check


async def _banner(check: HostCheck, timeout: float) -> None:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                check.address, check.port, limit=MAX_BANNER_LINE
            )
    except (OSError, TimeoutError) as exc:
        check.error = f"cannot connect to [{check.address}]:{check.port}: {_why(exc)}"
        return
    connected = time.monotonic()
    check.connect_ms = round((connected - started) * 1000, 1)
    try:
        async with asyncio.timeout(timeout):
            lines = await _read_reply(reader)
        check.banner_ms = round((time.monotonic() - connected) * 1000, 1)
        check.banner = lines[0] if lines else ""
        if not lines:
            check.error = "connection closed before the banner"
        elif not lines[0].startswith("220"):
            check.error = f"the banner refuses mail: {lines[-1]}"
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await writer.drain()
                await reader.read(MAX_BANNER_LINE)  # the 221, then EOF
    except (OSError, TimeoutError, ValueError) as exc:
        check.error = (
            f"no banner within {timeout:g} s" if isinstance(exc, TimeoutError) else _why(exc)
        )
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await writer.wait_closed()


async def _read_reply(reader: asyncio.StreamReader) -> list[str]:
    """The lines of one reply (RFC 5321 §4.2.1: "NNN-" continues, "NNN " ends)."""
    lines: list[str] = []
    while len(lines) < MAX_BANNER_LINES:
        raw = await reader.readline()
        if not raw:
            break
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if line[3:4] != "-":
            break
    return lines


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


async def _tls(check: HostCheck, settings: CheckSettings) -> list[bytes]:
    """STARTTLS with certificate verification; the chain the server sent (or [])."""
    chain: list[bytes] = []

    def capture(ssl_object: ssl.SSLObject) -> str | None:
        chain[:] = peer_chain(ssl_object)
        return None

    timeouts = ClientTimeouts(
        connect=settings.timeout,
        greeting=settings.timeout,
        command=settings.timeout,
        tls_handshake=settings.timeout,
        quit=settings.timeout,
    )
    client = ClientSettings(
        helo_name=settings.helo_name, timeouts=timeouts, ca_file=settings.ca_file
    )
    peer = Peer(check.host, check.address, check.port)
    verify = TlsPolicy(TlsMode.VERIFY, "mx-check", "mailwright mx --check", (check.host,), capture)
    try:
        session = await OutboundSession.open(peer, client, verify)
    except SessionError as exc:
        if exc.result_reply.enhanced == TLS_NOT_OFFERED:
            check.starttls = False
            return []
        if exc.stage is not Stage.TLS:
            check.error = f"{exc.stage.value}: {exc.reason}"
            return []
        check.starttls = True
        check.cert_valid = False
        check.cert_problem = exc.reason
        # The certificate failed: look at it anyway (ENCRYPT does not verify).
        encrypt = TlsPolicy(TlsMode.ENCRYPT, "mx-check", "certificate details", (), capture)
        try:
            session = await OutboundSession.open(peer, client, encrypt)
        except SessionError:
            return chain
    else:
        check.starttls = True
        check.cert_valid = True
    check.tls_version = session.info.tls_version
    await session.quit()
    if chain:
        _describe_certificate(check, chain[0])
    return chain


def _describe_certificate(check: HostCheck, der: bytes) -> None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        check.cert_subject = "(unparsable certificate)"
        return
    check.cert_subject = cert.subject.rfc4514_string() or "(empty subject)"
    check.cert_issuer = cert.issuer.rfc4514_string() or "(empty issuer)"
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        check.cert_names = tuple(str(n) for n in san.value.get_values_for_type(x509.DNSName))
    not_after = cert.not_valid_after_utc
    check.cert_not_after = not_after.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _tlsa(check: HostCheck, resolver: Resolver, chain: list[bytes]) -> None:
    name = tlsa_name(check.host, SMTP_PORT)
    try:
        answer = await resolver.tlsa(name)
    except DnsTemporaryError as exc:
        check.tlsa_detail = f"TLSA lookup for {name} failed: {exc}"
        return
    records = answer.records
    check.tlsa = [f"{r.usage} {r.selector} {r.matching_type} {r.data.hex()}" for r in records]
    check.tlsa_authentic = answer.authentic
    if not records:
        check.tlsa_detail = f"no TLSA records at {name}"
        return
    good = tuple(r for r in records if usable(r))
    if not good:
        check.tlsa_detail = f"{describe(records)}: none usable for SMTP (RFC 7672 §3.1.3)"
        check.tlsa_match = False
        return
    if not chain:
        check.tlsa_detail = f"{describe(good)}; no certificate to match them against"
        return
    problem = DaneCheck(good, (check.host,)).check_chain(chain)
    check.tlsa_match = problem is None
    check.tlsa_detail = f"{describe(good)}: " + (problem or "the certificate matches")


async def check_sts(
    domain: str, hosts: Sequence[str], resolver: Resolver, settings: CheckSettings
) -> StsStatus:
    """The ``_mta-sts`` record, the policy behind it, and the MX hosts it leaves out."""
    status = StsStatus()
    name = f"_mta-sts.{domain}"
    try:
        answer = await resolver.txt(name)
    except DnsTemporaryError as exc:
        status.error = f"TXT lookup for {name} failed: {exc}"
        return status
    candidates = [t for t in answer.records if t.startswith("v=STSv1")]
    if not candidates:
        return status  # not published: no policy, nothing wrong
    status.record = candidates[0]
    record = parse_txt_records(answer.records)
    if record is None:
        status.error = (
            f"TXT at {name} is not one valid v=STSv1 record (RFC 8461 §3.1): "
            f"{len(candidates)} found"
        )
        return status
    status.record_id = record.id
    fetcher = HttpsPolicyFetcher(
        ResolverConnector(resolver),
        extra_ca_file=settings.ca_file,
        timeout=settings.timeout,
        port=settings.sts_port,
    )
    try:
        policy = parse_policy(check_response(await fetcher.fetch(domain)))
    except (PolicyFetchError, StsError) as exc:
        status.error = f"TXT record published but no valid policy at mta-sts.{domain}: {exc}"
        return status
    status.mode = policy.mode.value
    status.max_age = policy.max_age
    status.mx_patterns = policy.mx
    if policy.mode is not StsMode.NONE:
        status.uncovered = tuple(h for h in hosts if not policy.matches(h))
    return status
