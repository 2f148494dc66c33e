"""``client.probe`` against scripted peers that misbehave in ways ``mailwright serve``
never does: a server that ends DATA at a bare LF (as lenient MTAs did before SMTP
smuggling was published), one that names its software version and offers no STARTTLS,
and one that still completes a TLS 1.0 handshake.

The peers are asyncio servers in the test's own loop; the probe runs through its
library API (``client.probe.probe``) in the same loop, and the test reads what the
peer received as well as what the probe reported.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from helpers.outbound import free_port, run, scripted_server
from helpers.servers import HOST
from mailwright.client.probe import ProbeSettings, Report, Severity, Target, probe

TO = "me@lenient.test"
LENIENT_BANNER = b"220 lenient.test ESMTP Sendmail 8.12.1; ready\r\n"


@dataclass
class Peer:
    """A lenient SMTP server: lines end at LF, DATA ends at any line that is "."."""

    banner: bytes = LENIENT_BANNER
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this context
    esmtp: bool = True  # False: EHLO is refused, only HELO works (RFC 821 servers)
    refuse_starttls: bool = False  # advertise STARTTLS, then answer it 454
    messages: list[bytes] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.banner)
        while True:
            line = await asyncio.wait_for(reader.readline(), 5)
            if not line:
                return
            command = line.rstrip(b"\r\n")
            self.commands.append(command)
            verb = command[:4].upper()
            if verb == b"EHLO" and not self.esmtp:
                writer.write(b"500 5.5.1 command unrecognized\r\n")
            elif verb == b"HELO":
                writer.write(b"250 lenient.test\r\n")
            elif verb == b"EHLO":
                in_tls = writer.get_extra_info("ssl_object") is not None
                offer = self.refuse_starttls or (self.tls is not None and not in_tls)
                tls = b"250-STARTTLS\r\n" if offer else b""
                writer.write(b"250-lenient.test\r\n" + tls + b"250 PIPELINING\r\n")
            elif verb == b"STAR" and self.refuse_starttls:
                writer.write(b"454 4.7.0 TLS not available due to local problem\r\n")
            elif verb == b"STAR" and self.tls is not None:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(self.tls)
            elif verb in (b"MAIL", b"RCPT", b"RSET"):
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"VRFY":
                writer.write(b"252 2.5.0 Cannot VRFY user\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                body = b""
                while True:
                    data = await asyncio.wait_for(reader.readline(), 5)
                    if not data or data.rstrip(b"\r\n") == b".":  # the lenient bug
                        break
                    body += data
                self.messages.append(body)
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.1 not implemented\r\n")
            await writer.drain()


def settings(**kwargs: object) -> ProbeSettings:
    base: dict[str, object] = {"helo": "probe.test", "timeout": 5.0, "smtps_port": 0}
    return ProbeSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def probe_peer(peer: Peer, **kwargs: object) -> Report:
    async def main() -> Report:
        async with scripted_server(peer) as port:
            return await probe(Target(HOST, HOST, port), settings(**kwargs))

    return run(main())


def test_server_ending_data_at_bare_lf_is_reported_per_variant() -> None:
    peer = Peer()
    report = probe_peer(peer, smuggling_to=TO)
    smuggling = sorted(i for i in report.ids() if i.startswith("smuggling-"))
    # The peer splits lines at LF and strips CR: exactly the LF variants end its data.
    assert smuggling == ["smuggling-bare-lf", "smuggling-crlf-dot-lf", "smuggling-lf-dot-crlf"]
    bare_lf = next(f for f in report.findings if f.id == "smuggling-bare-lf")
    assert bare_lf.severity is Severity.CRITICAL
    assert bare_lf.detail.endswith("then 250, 250, 354, 250: the smuggled message was accepted")
    # What the peer received: for each LF variant two messages, the second the
    # smuggled one; for the other four variants one message holding it all.
    headers = [m.partition(b"\r\n\r\n")[0] for m in peer.messages]
    assert len(peer.messages) == 3 * 2 + 4
    assert sum(b"Subject: mailwright probe: SMUGGLED" in h for h in headers) == 3
    for name in ("cr-dot-crlf", "crlf-dot-cr", "bare-cr", "lf-dot-cr"):
        assert report.facts["smuggling_test"][name].endswith("not vulnerable")


def test_smuggling_test_runs_only_when_asked() -> None:
    peer = Peer()
    report = probe_peer(peer)
    assert not [i for i in report.ids() if i.startswith("smuggling-")]
    assert peer.messages == [] and b"DATA" not in peer.commands


def test_no_starttls_versioned_banner_and_no_implicit_tls_are_reported() -> None:
    report = probe_peer(Peer(), smtps_port=free_port())
    found = {f.id: f.severity for f in report.findings}
    assert found["no-starttls"] is Severity.HIGH
    assert found["banner-reveals-software"] is Severity.LOW
    assert found["no-implicit-tls"] is Severity.INFO
    assert report.facts["banner"] == LENIENT_BANNER.decode().strip()


def test_server_without_ehlo_is_reported_and_probed_with_helo() -> None:
    peer = Peer(esmtp=False)
    report = probe_peer(peer, user_probe=TO)
    assert {"no-esmtp", "no-starttls"} <= set(report.ids())
    assert report.failed is None
    assert report.facts["ehlo"] == "250 lenient.test"  # the HELO that followed
    assert b"HELO probe.test" in peer.commands
    assert report.facts["enumeration"]["VRFY"].startswith("252")


def test_starttls_offered_but_refused_is_reported() -> None:
    report = probe_peer(Peer(refuse_starttls=True))
    failed = next(f for f in report.findings if f.id == "starttls-failed")
    assert failed.detail == "STARTTLS answered 454 4.7.0 TLS not available due to local problem"
    assert "no-starttls" not in report.ids()
    assert "454 4.7.0 TLS not available due to local problem" in report.reply_notes


def weak_tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context that still speaks TLS 1.0 (OpenSSL security level 0)."""
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ca.issue_cert("lenient.test").configure_cert(ctx)
    return ctx


def test_tls_1_0_accepted_is_reported(tmp_path: Path) -> None:
    report = probe_peer(Peer(tls=weak_tls_context(tmp_path)), tls_name="lenient.test")
    found = {f.id: f for f in report.findings}
    assert found["weak-tls-protocol"].severity is Severity.MEDIUM
    assert "no-starttls" not in found
    assert "untrusted-certificate" in found  # a CA the probe was not told about
    assert report.facts["tls"]["names"] == ["lenient.test"]
