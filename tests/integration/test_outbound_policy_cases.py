"""Issue 10's policy cases through the queue, end to end: SMTPUTF8 needed but not
offered, 8-bit content to a 7-bit-only server, TLS required but not offered, MTA-STS
enforce with a certificate that does not match, DANE-EE match and mismatch.

Each case runs the real spool, runner and relay agent (``RelayHarness``, the TLS
policy decider as the composition root builds it) against real receiving servers on
127.0.0.N (Postfix's ``smtp-sink``; aiosmtpd with STARTTLS or SMTPUTF8), routed by a
DNS server on loopback, and asserts (a) the per-recipient state in the queue, (b) the
retry timing with the settable clock, (c) the DSN parsed back with ``email``.

A permanent failure leaves nothing to retry, so its message would leave the queue
with the bounce: each such case adds a second recipient at a domain whose MX does not
answer (``DOWN``), which keeps the message queued and shows both states side by side —
the failed recipient is never tried again while the other one is.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import ssl
from pathlib import Path

import pytest
import trustme

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.relaykit import RelayHarness, free_shared_port, report_fields, run, sinks
from helpers.relaykit import relay_config as base_config
from helpers.tlspeers import (
    Recorder,
    policy_harness,
    receiver,
    self_signed,
    server_context,
    spki_sha256,
)
from mailwright.queue.agent import ReplySource
from mailwright.spool.model import BodyType, RecipientStatus, SpooledMessage

pytestmark = pytest.mark.interop

SOA = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
STS_ID = "20261205"
ZONE = f"""
$ORIGIN test.
$TTL 300
{SOA}
utf8         IN MX 10 mx.utf8
mx.utf8      IN A 127.0.0.21
seven        IN MX 10 mx.seven
mx.seven     IN A 127.0.0.22
tlsreq       IN MX 10 mx.tlsreq
mx.tlsreq    IN A 127.0.0.23
sts          IN MX 10 mx.sts
mx.sts       IN A 127.0.0.24
_mta-sts.sts IN TXT "v=STSv1; id={STS_ID}"
down         IN MX 10 mx.down
mx.down      IN A 127.0.0.29
tls2         IN MX 10 mx1.tls2
tls2         IN MX 20 mx2.tls2
mx1.tls2     IN A 127.0.0.23
mx2.tls2     IN A 127.0.0.26
"""
UTF8_HOST, SEVEN_HOST, TLSREQ_HOST, STS_HOST, DANE_HOST = (f"127.0.0.{n}" for n in range(21, 26))
TLS2_HOST = "127.0.0.26"  # mx2.tls2.test; mx1.tls2.test is TLSREQ_HOST
ADDRESSES = [UTF8_HOST, SEVEN_HOST, TLSREQ_HOST, STS_HOST, DANE_HOST, TLS2_HOST, "127.0.0.29"]
DOWN = "x@down.test"  # nothing listens at mx.down.test: deferred, 451 4.4.1
# relaykit.RETRY: 60 s, doubling, for a day.
RETRY_INITIAL = 60.0
LIFETIME = 86400.0


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


@pytest.fixture
def port() -> int:
    return free_shared_port(ADDRESSES)


def relay_config(tmp_path: Path, dns: LoopbackDns, port: int, **sections: object) -> dict:
    """relaykit's relay configuration with extra top-level sections (``tls_policy``)
    and ``[outbound]`` keys (``outbound=...``)."""
    outbound = sections.pop("outbound", {})
    assert isinstance(outbound, dict)
    return {**base_config(tmp_path, dns, port, **outbound), **sections}


def states(message: SpooledMessage) -> dict[str, RecipientStatus]:
    return {r.recipient.address: r.status for r in message.recipients}


def attempts(message: SpooledMessage) -> dict[str, int]:
    return {r.recipient.address: r.attempts for r in message.recipients}


def one_recipient_report(reports: list[email.message.Message]) -> email.message.Message:
    (dsn,) = reports
    assert dsn.get_content_type() == "multipart/report"
    (fields,) = report_fields(dsn)
    return fields


def human_text(report: email.message.Message) -> str:
    """The report's first part, for the human (RFC 6522 §3)."""
    first = next(p for p in report.walk() if p.get_content_type() == "text/plain")
    data = first.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data.decode("utf-8")


def ehlo_text(result) -> str:
    """What the peer's EHLO reply said (the relay's own transcript of the session)."""
    session = result.session
    assert session is not None
    return " ".join(r.reply.text for r in session.replies if r.stage == "ehlo")


def stages(result) -> list[str]:
    session = result.session
    assert session is not None
    return [r.stage for r in session.replies]


async def bounced_at_once_never_retried(h: RelayHarness, rcpt: str, started: float):
    """After the first run: ``rcpt`` FAILED while ``DOWN`` waits for its retry at
    exactly started + 60 s; one DSN; at the retry only ``DOWN`` is tried again."""
    (queued,) = await h.queued()
    assert states(queued) == {rcpt: RecipientStatus.FAILED, DOWN: RecipientStatus.PENDING}
    assert queued.next_attempt == started + RETRY_INITIAL  # jitter 0
    reports = await h.bounces()
    h.clock.advance(RETRY_INITIAL)
    assert await h.run_once() == 1
    (queued,) = await h.queued()
    assert states(queued) == {rcpt: RecipientStatus.FAILED, DOWN: RecipientStatus.PENDING}
    assert attempts(queued) == {rcpt: 1, DOWN: 2}
    assert len(await h.bounces()) == len(reports) == 1  # no second DSN
    return reports


async def deferred_until_expiry(h: RelayHarness, rcpt: str, started: float):
    """After the first run: ``rcpt`` PENDING, due at exactly started + 60 s, not a
    second earlier; retried then (next at + 120 s, doubling); at the end of the queue
    lifetime one expiry DSN.  Returns (the queued message after the first run, the
    parsed reports)."""
    (first,) = await h.queued()
    assert states(first) == {rcpt: RecipientStatus.PENDING}
    assert first.next_attempt == started + RETRY_INITIAL  # jitter 0
    h.clock.advance(RETRY_INITIAL - 1)
    assert await h.run_once() == 0  # not due yet
    h.clock.advance(1)
    assert await h.run_once() == 1
    (second,) = await h.queued()
    assert states(second) == {rcpt: RecipientStatus.PENDING}
    assert second.next_attempt == started + RETRY_INITIAL + 2 * RETRY_INITIAL
    assert await h.bounces() == []  # no DSN while it is retried
    h.clock.now = started + LIFETIME
    await h.run_once()
    reports = await h.bounces()
    assert await h.queued() == []
    return first, reports


# -- 1. SMTPUTF8 needed but not offered --------------------------------------------

UTF8_RCPT = "jürgen@utf8.test"
UTF8_BODY = (
    "From: Sender <sender@origin.test>\r\n"
    "To: Jürgen <jürgen@utf8.test>\r\n"
    "Subject: Grüße\r\n"
    "Message-ID: <utf8-case@origin.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hallo Jürgen.\r\n"
).encode()


def test_smtputf8_recipient_to_a_host_without_smtputf8_bounces_at_once(tmp_path, dns, port):
    """RFC 6531 §3.2: a message that needs SMTPUTF8 must not go to a server that does
    not offer it, and waiting does not help: 553 5.6.7 at once, no transaction."""
    with sinks((UTF8_HOST, ()), port=port) as (sink,):

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            started = h.clock.now
            await h.put(
                UTF8_RCPT, DOWN, body=UTF8_BODY, body_type=BodyType.EIGHT_BIT_MIME, smtputf8=True
            )
            await h.run_once()
            reports = await bounced_at_once_never_retried(h, UTF8_RCPT, started)
            await h.close()
            return h, reports

        h, reports = run(main())
    refused = "553 5.6.7 SMTPUTF8 is required, but was not offered by host"
    assert h.events[0] == ("bounced", UTF8_RCPT, refused)
    assert [e[:2] for e in h.events[1:]] == [("deferred", DOWN), ("deferred", DOWN)]
    result = h.results[0]
    assert "SMTPUTF8 required but not offered" in result.reason
    assert "8BITMIME" in ehlo_text(result) and "SMTPUTF8" not in ehlo_text(result)
    assert "mail" not in stages(result)  # refused before MAIL FROM
    assert sink.dumps() == []
    fields = one_recipient_report(reports)
    assert fields["Final-Recipient"].endswith(f"; {UTF8_RCPT}")
    assert (fields["Action"], fields["Status"]) == ("failed", "5.6.7")
    # Our refusal, not the host's reply (RFC 3464 §2.3.6): see the test below.
    assert fields["Diagnostic-Code"] == (
        f"X-mailwright; SMTPUTF8 is required, but was not offered by host mx.utf8.test[{UTF8_HOST}]"
    )
    assert fields["Remote-MTA"] is None


def test_local_refusal_dsn_has_an_x_mailwright_diagnostic_and_no_remote_mta(tmp_path, dns, port):
    """RFC 3464 §2.3.5/§2.3.6: the relay refused the message itself (SMTPUTF8 needed,
    not offered; smtp-sink said nothing of the kind), so the DSN has no Remote-MTA, an
    ``X-mailwright`` diagnostic naming the host, and its text says what happened
    instead of "host ... said: 553 5.6.7" (Postfix: ``X-Postfix; SMTPUTF8 is required,
    but was not offered by host mx[addr]``)."""
    with sinks((UTF8_HOST, ()), port=port) as (sink,):

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            await h.put(UTF8_RCPT, body=UTF8_BODY, body_type=BodyType.EIGHT_BIT_MIME, smtputf8=True)
            await h.run_once()
            reports = await h.bounces()
            await h.close()
            return h, reports

        h, reports = run(main())
    assert sink.dumps() == []
    (result,) = h.results
    assert result.source is ReplySource.LOCAL
    assert result.remote_host == f"mx.utf8.test[{UTF8_HOST}]:{port}"  # it was involved
    (dsn,) = reports
    fields = one_recipient_report(reports)
    sentence = f"SMTPUTF8 is required, but was not offered by host mx.utf8.test[{UTF8_HOST}]"
    assert fields["Diagnostic-Code"] == f"X-mailwright; {sentence}"
    assert fields["Remote-MTA"] is None
    assert fields["Status"] == "5.6.7"
    human = human_text(dsn)
    assert f"<{UTF8_RCPT}>: {sentence}" in human.splitlines()
    assert " said:" not in human


def test_smtputf8_recipient_to_a_host_offering_smtputf8_is_delivered(tmp_path, dns, port):
    handler = Recorder()
    with receiver(handler, UTF8_HOST, port, smtputf8=True):

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            await h.put(UTF8_RCPT, body=UTF8_BODY, body_type=BodyType.EIGHT_BIT_MIME, smtputf8=True)
            await h.run_once()
            queued = await h.queued()
            reports = await h.bounces()
            await h.close()
            return h, queued, reports

        h, queued, reports = run(main())
    assert [e[:2] for e in h.events] == [("delivered", UTF8_RCPT)]
    assert queued == [] and reports == []
    (mail,) = handler.mails
    assert "SMTPUTF8" in mail.options and "BODY=8BITMIME" in mail.options
    (message,) = handler.messages
    assert message.rcpt_tos == (UTF8_RCPT,)
    assert message.content.replace(b"\r\n", b"\n") == UTF8_BODY.replace(b"\r\n", b"\n")


# -- 2. 8-bit body to a 7-bit-only server -------------------------------------------

EIGHT_BIT_TEXT = "Grüße aus Köln: ½ Liter Kölsch für 2 €.\r\nZweite Zeile, ganz normal.\r\n"
EIGHT_BIT_BODY = (
    "From: Sender <sender@origin.test>\r\n"
    "To: Someone <someone@seven.test>\r\n"
    "Subject: eight bit\r\n"
    "Message-ID: <eight-bit@origin.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n" + EIGHT_BIT_TEXT
).encode()
MULTIPART_BODY = (
    "From: Sender <sender@origin.test>\r\n"
    "To: Someone <someone@seven.test>\r\n"
    "Subject: eight bit in one part\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Plain ASCII part.\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n" + EIGHT_BIT_TEXT + "--b1--\r\n"
).encode()
HEADER_8BIT_BODY = EIGHT_BIT_BODY.replace(b"Subject: eight bit", "Subject: Grüße".encode())


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def seven_bit_delivery(tmp_path, dns, port, body: bytes):
    """``body`` (BODY=8BITMIME) through the queue to smtp-sink -8 (no 8BITMIME):
    (the harness, what the sink received, parsed)."""
    with sinks((SEVEN_HOST, ("-8",)), port=port) as (sink,):

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            await h.put("someone@seven.test", body=body, body_type=BodyType.EIGHT_BIT_MIME)
            await h.run_once()
            assert await h.queued() == []
            assert await h.bounces() == []
            await h.close()
            return h

        h = run(main())
    assert [e[:2] for e in h.events] == [("delivered", "someone@seven.test")]
    assert "8BITMIME" not in ehlo_text(h.results[0])  # the sink really is 7-bit only
    (mail,) = [r.command for r in h.results[0].session.replies if r.stage == "mail"]
    assert "BODY=" not in mail.upper()  # RFC 6152 §3: no BODY=8BITMIME to such a host
    (dump,) = sink.dumps()
    assert all(octet < 128 for octet in dump)
    # smtp-sink's dump: its own X- fields, the message with LF line ends, one empty
    # line after it.
    assert dump.endswith(b"\n\n")
    return h, email.message_from_bytes(dump[:-1], policy=email.policy.default)


def test_8bit_body_to_a_7bit_server_is_converted_and_decodes_back(tmp_path, dns, port):
    _, received = seven_bit_delivery(tmp_path, dns, port, EIGHT_BIT_BODY)
    assert received["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert received["Subject"] == "eight bit"
    assert lf(received.get_content()) == lf(EIGHT_BIT_TEXT)


def test_multipart_with_one_8bit_part_each_part_decodes_back(tmp_path, dns, port):
    _, received = seven_bit_delivery(tmp_path, dns, port, MULTIPART_BODY)
    assert received.get_content_type() == "multipart/mixed"
    ascii_part, utf8_part = received.iter_parts()
    # RFC 2046 §5.1.1: the line break before a delimiter belongs to the delimiter.
    assert ascii_part.get_content() == "Plain ASCII part."
    assert utf8_part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert lf(utf8_part.get_content()) == lf(EIGHT_BIT_TEXT).removesuffix("\n")


def test_8bit_header_to_a_7bit_server_bounces_at_once_with_5_6_3(tmp_path, dns, port):
    """8-bit octets in the header section cannot be made 7-bit without knowing their
    charset (net/outbound/downgrade.py): a permanent failure naming the reason."""
    with sinks((SEVEN_HOST, ("-8",)), port=port) as (sink,):

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            started = h.clock.now
            await h.put(
                "someone@seven.test",
                DOWN,
                body=HEADER_8BIT_BODY,
                body_type=BodyType.EIGHT_BIT_MIME,
            )
            await h.run_once()
            reports = await bounced_at_once_never_retried(h, "someone@seven.test", started)
            await h.close()
            return h, reports

        h, reports = run(main())
    refused = (
        "554 5.6.3 8-bit message cannot be converted to 7-bit MIME for a host without 8BITMIME"
    )
    assert h.events[0] == ("bounced", "someone@seven.test", refused)
    assert "8-bit octets in a header section" in h.results[0].reason
    assert "mail" not in stages(h.results[0])
    assert sink.dumps() == []
    fields = one_recipient_report(reports)
    assert fields["Final-Recipient"] == "rfc822; someone@seven.test"
    assert (fields["Action"], fields["Status"]) == ("failed", "5.6.3")
    assert fields["Diagnostic-Code"] == (
        "X-mailwright; 8-bit message cannot be converted to 7-bit MIME for a host without"
        f" 8BITMIME (host mx.seven.test[{SEVEN_HOST}])"
    )
    assert fields["Remote-MTA"] is None


# -- 3. TLS required but not offered -------------------------------------------------


def test_tls_policy_encrypt_to_a_host_without_starttls_defers_then_expires(tmp_path, dns, port):
    """``[[tls_policy]] mode = "encrypt"``: smtp-sink offers no STARTTLS, so the mail
    waits (451 4.7.4, as Postfix defers) and never goes in plaintext; at the end of
    the queue lifetime one bounce carrying the TLS reason."""
    doc = relay_config(
        tmp_path, dns, port, tls_policy=[{"domain": "tlsreq.test", "mode": "encrypt"}]
    )
    with sinks((TLSREQ_HOST, ()), port=port) as (sink,):

        async def main():
            h = policy_harness(dns, doc)
            started = h.clock.now
            await h.put("x@tlsreq.test")
            await h.run_once()
            first, reports = await deferred_until_expiry(h, "x@tlsreq.test", started)
            await h.close()
            return h, first, reports

        h, first, reports = run(main())
    not_offered = "451 4.7.4 TLS is required, but was not offered by host"
    assert str(first.recipients[0].last_reply) == not_offered
    assert [e[0] for e in h.events] == ["deferred", "deferred", "expired"]
    assert [e[2] for e in h.events[:2]] == [not_offered, not_offered]
    expired = h.events[2][2]
    assert expired.startswith("451 4.4.7 Message expired") and not_offered in expired
    for result in h.results[:2]:
        assert "tls=encrypt (tls_policy: [[tls_policy]] for tlsreq.test: encrypt)" in result.reason
        assert "STARTTLS" not in ehlo_text(result)
        assert stages(result) == ["greeting", "ehlo"]  # no MAIL FROM, no plaintext
        # The host answered (greeting, EHLO) but the 4.7.4 is our policy's verdict.
        assert result.source is ReplySource.LOCAL
        assert result.remote_host == f"mx.tlsreq.test[{TLSREQ_HOST}]:{port}"
    assert sink.dumps() == []
    fields = one_recipient_report(reports)
    assert (fields["Action"], fields["Status"]) == ("failed", "4.4.7")
    # Our verdicts (the lifetime, the TLS policy), not the host's: it offered no STARTTLS.
    expired_text = expired.removeprefix("451 4.4.7 ")
    assert fields["Diagnostic-Code"] == (
        f"X-mailwright; {expired_text} mx.tlsreq.test[{TLSREQ_HOST}]"
    )
    assert fields["Diagnostic-Code"].endswith(
        f"TLS is required, but was not offered by host mx.tlsreq.test[{TLSREQ_HOST}]"
    )
    assert fields["Remote-MTA"] is None


def test_tls_policy_encrypt_moves_on_to_an_mx_that_offers_starttls(tmp_path, dns, port):
    """TLS required: the preferred MX (smtp-sink) offers no STARTTLS, so the attempt
    goes on to the next MX (as Postfix does) and delivers there over TLS; the first
    host never gets a MAIL FROM."""
    doc = relay_config(tmp_path, dns, port, tls_policy=[{"domain": "tls2.test", "mode": "encrypt"}])
    handler = Recorder()
    context = issued_context(trustme.CA(), "unrelated.test")  # encrypt: not verified
    with (
        sinks((TLSREQ_HOST, ()), port=port) as (mx1,),
        receiver(handler, TLS2_HOST, port, tls_context=context),
    ):

        async def main():
            h = policy_harness(dns, doc)
            await h.put("x@tls2.test")
            await h.run_once()
            queued = await h.queued()
            reports = await h.bounces()
            await h.close()
            return h, queued, reports

        h, queued, reports = run(main())
    assert queued == [] and reports == []
    assert [e[:2] for e in h.events] == [("delivered", "x@tls2.test")]
    result = h.results[0]
    assert result.remote_host == f"mx2.tls2.test[{TLS2_HOST}]:{port}"
    assert result.session is not None and result.session.tls_mode == "encrypt"
    assert mx1.dumps() == []
    (mail,) = handler.mails
    assert mail.tls
    (message,) = handler.messages
    assert message.tls_version == result.session.tls_version


# -- 4. MTA-STS enforce with a certificate that does not match -----------------------


def sts_policy(mode: str) -> bytes:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n".encode()


def issued_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def sts_run(tmp_path, dns, port, ca: trustme.CA, cert_name: str, mode: str, *, expire: bool):
    """x@sts.test through the queue under an MTA-STS ``mode`` policy listing
    mx.sts.test, whose certificate (from ``ca``, trusted by ``[outbound] ca_file``)
    names ``cert_name``."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    doc = relay_config(tmp_path, dns, port, outbound={"ca_file": str(ca_file)})
    handler = Recorder()
    with receiver(handler, STS_HOST, port, tls_context=issued_context(ca, cert_name)):

        async def main():
            h = policy_harness(dns, doc, sts_policy(mode))
            started = h.clock.now
            await h.put("x@sts.test")
            await h.run_once()
            if not expire:
                queued = await h.queued()
                reports = await h.bounces()
                await h.close()
                return h, queued, reports
            first, reports = await deferred_until_expiry(h, "x@sts.test", started)
            await h.close()
            return h, [first], reports

        h, queued, reports = run(main())
    return h, handler, queued, reports


def test_mta_sts_enforce_certificate_for_another_name_defers_never_plaintext(tmp_path, dns, port):
    h, handler, (first,), reports = sts_run(
        tmp_path, dns, port, trustme.CA(), "other.sts.test", "enforce", expire=True
    )
    failed = "451 4.7.5 TLS negotiation or certificate check failed"
    assert str(first.recipients[0].last_reply) == failed
    assert [e[0] for e in h.events] == ["deferred", "deferred", "expired"]
    assert h.events[0][2] == failed
    result = h.results[0]
    assert "tls=verify (mta-sts: MTA-STS enforce" in result.reason
    assert "tls: certificate does not match mx.sts.test" in result.reason
    assert stages(result) == ["greeting", "ehlo", "starttls"]
    # Three attempts (the last at expiry), each one connection that ended in the
    # handshake: no second, plaintext connection, no MAIL, nothing stored.
    assert handler.ehlos == 3
    assert handler.mails == [] and handler.messages == []
    fields = one_recipient_report(reports)
    assert (fields["Action"], fields["Status"]) == ("failed", "4.4.7")
    expired_text = h.events[2][2].removeprefix("451 4.4.7 ")
    assert fields["Diagnostic-Code"] == (
        f"X-mailwright; {expired_text} (host mx.sts.test[{STS_HOST}])"
    )
    assert fields["Diagnostic-Code"].endswith(
        f"last error: {failed} (host mx.sts.test[{STS_HOST}])"
    )
    assert fields["Remote-MTA"] is None


def test_mta_sts_enforce_matching_trusted_certificate_delivers_over_tls(tmp_path, dns, port):
    h, handler, queued, reports = sts_run(
        tmp_path, dns, port, trustme.CA(), "mx.sts.test", "enforce", expire=False
    )
    assert queued == [] and reports == []
    assert [e[:2] for e in h.events] == [("delivered", "x@sts.test")]
    session = h.results[0].session
    assert session is not None
    assert (session.tls_mode, session.tls_source) == ("verify", "mta-sts")
    assert session.tls_version in ("TLSv1.2", "TLSv1.3")
    (mail,) = handler.mails
    assert mail.tls
    (message,) = handler.messages
    assert message.tls_version == session.tls_version


def test_mta_sts_testing_mode_mismatching_certificate_still_delivers(tmp_path, dns, port):
    """RFC 8461 §5: a policy in testing mode does not block delivery."""
    h, handler, queued, reports = sts_run(
        tmp_path, dns, port, trustme.CA(), "other.sts.test", "testing", expire=False
    )
    assert queued == [] and reports == []
    assert [e[:2] for e in h.events] == [("delivered", "x@sts.test")]
    result = h.results[0]
    assert "MTA-STS testing" in result.reason and "not enforced" in result.reason
    assert result.session is not None and result.session.tls_mode == "may"
    (message,) = handler.messages
    assert message.tls_version in ("TLSv1.2", "TLSv1.3")


# -- 5. DANE-EE match and mismatch ---------------------------------------------------


def dane_zone(port: int, digest: str, mx: str) -> str:
    return f"""
$ORIGIN test.
$TTL 300
{SOA}
dane                 IN MX 10 {mx}
{mx}              IN A {DANE_HOST}
_{port}._tcp.{mx} IN TLSA 3 1 1 {digest}
"""


def dane_run(
    tmp_path,
    loopback_dns: MakeDns,
    port,
    *,
    pinned: bool,
    authentic: tuple[str, ...] = ("dane.test",),
    mx: str = "mx.dane",
    unsigned_tlsa: bool = False,
):
    """x@dane.test to an MX (``mx``.test) presenting a self-signed, expired
    certificate for another name; the TLSA record (3 1 1) pins its key (``pinned``)
    or another one; the AD flag on the answers for names under ``authentic``, except
    the TLSA name when ``unsigned_tlsa`` (an unsigned child zone).  A deferral is driven
    on to the expiry bounce."""
    cert_file, key_file, cert = self_signed("unrelated.invalid", tmp_path / "mx", expired=True)
    _, _, other = self_signed("unrelated.invalid", tmp_path / "other")
    digest = spki_sha256(cert if pinned else other)
    insecure = (f"_{port}._tcp.{mx}.test",) if unsigned_tlsa else ()
    dns = loopback_dns(dane_zone(port, digest, mx), authentic=authentic, insecure=insecure)
    doc = relay_config(tmp_path, dns, port)
    handler = Recorder()
    with receiver(handler, DANE_HOST, port, tls_context=server_context(cert_file, key_file)):

        async def main():
            h = policy_harness(dns, doc)
            started = h.clock.now
            await h.put("x@dane.test")
            await h.run_once()
            if [e[0] for e in h.events] != ["deferred"]:
                queued = await h.queued()
                reports = await h.bounces()
                await h.close()
                return h, queued, reports
            first, reports = await deferred_until_expiry(h, "x@dane.test", started)
            await h.close()
            return h, [first], reports

        h, queued, reports = run(main())
    return h, handler, queued, reports, dns


def test_dane_ee_match_delivers_over_tls_despite_name_and_expiry(tmp_path, loopback_dns, port):
    """RFC 7672 §3.1.1: with DANE-EE the DNS binding is the authentication; the
    certificate's names and dates do not matter."""
    h, handler, queued, reports, dns = dane_run(tmp_path, loopback_dns, port, pinned=True)
    assert queued == [] and reports == []
    assert [e[:2] for e in h.events] == [("delivered", "x@dane.test")]
    session = h.results[0].session
    assert session is not None
    assert (session.tls_mode, session.tls_source) == ("dane", "dane")
    assert session.tls_reason == f"authenticated TLSA at _{port}._tcp.mx.dane.test: 1 DANE-EE"
    assert session.tls_version in ("TLSv1.2", "TLSv1.3")
    (message,) = handler.messages
    assert message.tls_version == session.tls_version
    assert dns.asked(f"_{port}._tcp.mx.dane.test", "TLSA") >= 1


def test_dane_ee_mismatch_defers_never_plaintext_then_expires(tmp_path, loopback_dns, port):
    h, handler, (first,), reports, _ = dane_run(tmp_path, loopback_dns, port, pinned=False)
    failed = "451 4.7.5 TLS negotiation or certificate check failed"
    assert str(first.recipients[0].last_reply) == failed
    assert [e[0] for e in h.events] == ["deferred", "deferred", "expired"]
    result = h.results[0]
    assert "tls=dane (dane: authenticated TLSA" in result.reason
    assert "matches none of 1 usable TLSA records (1 DANE-EE)" in result.reason
    assert stages(result) == ["greeting", "ehlo", "starttls"]
    assert handler.ehlos == 3  # one connection per attempt, none in plaintext
    assert handler.mails == [] and handler.messages == []
    fields = one_recipient_report(reports)
    assert (fields["Action"], fields["Status"]) == ("failed", "4.4.7")
    expired_text = h.events[2][2].removeprefix("451 4.4.7 ")
    assert fields["Diagnostic-Code"] == (
        f"X-mailwright; {expired_text} (host mx.dane.test[{DANE_HOST}])"
    )
    assert fields["Diagnostic-Code"].endswith(
        f"last error: {failed} (host mx.dane.test[{DANE_HOST}])"
    )
    assert fields["Remote-MTA"] is None


@pytest.mark.parametrize(
    ("authentic", "unsigned_tlsa", "why"),
    [
        # No AD at all: the MX answer is not authenticated, so TLSA is not even asked.
        ((), False, "MX answer not DNSSEC-authenticated: DANE not applicable"),
        # The MX and address answers have AD, the TLSA answer (an unsigned child zone)
        # does not.
        (
            ("dane.test",),
            True,
            "TLSA records at _{port}._tcp.mx.dane.test not authenticated: ignored",
        ),
    ],
    ids=["no-ad", "tlsa-without-ad"],
)
def test_tlsa_without_the_ad_flag_is_ignored_and_delivery_is_opportunistic(
    tmp_path, loopback_dns, port, authentic, unsigned_tlsa, why
):
    """The same (mismatching) TLSA record from a resolver that does not vouch for it:
    not DANE (RFC 7672 §2.2), so it neither blocks delivery nor wedges the queue;
    the reason says DANE was not used, and why."""
    h, handler, queued, reports, _ = dane_run(
        tmp_path, loopback_dns, port, pinned=False, authentic=authentic, unsigned_tlsa=unsigned_tlsa
    )
    assert queued == [] and reports == []
    assert [e[:2] for e in h.events] == [("delivered", "x@dane.test")]
    result = h.results[0]
    assert "tls=may (default: opportunistic STARTTLS (" in result.reason
    assert why.format(port=port) in result.reason
    assert result.session is not None and result.session.tls_mode == "may"
    (message,) = handler.messages
    assert message.tls_version in ("TLSv1.2", "TLSv1.3")
