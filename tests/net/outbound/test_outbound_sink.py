"""The outbound session against Postfix's ``smtp-sink`` (an independent peer): HELO
fallback, 8-bit downgrade for a server without 8BITMIME, DSN parameters on the wire,
injected 4xx/5xx replies, TLS required but not offered, and LMTP per-recipient replies
over a unix socket.  smtp-sink's dump (-D) shows the MAIL/RCPT arguments it got."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from helpers.outbound import message, run, settings, smtp_sink
from mailwright.net.outbound import (
    Credentials,
    OutboundSession,
    OutgoingRecipient,
    Peer,
    SessionError,
    Stage,
    TlsMode,
    TlsPolicy,
)
from mailwright.spool.model import BodyType

pytestmark = pytest.mark.interop

NO_TLS = TlsPolicy(TlsMode.NONE)
SINK = "sink.example.test"
EIGHT_BIT = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: 8bit\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße, señor — ça va?\r\n".encode()
)


def send_one(sink, msg, policy=NO_TLS, **kwargs):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(
            Peer(SINK, sink.address, sink.port), settings(**kwargs), policy
        )
        result = await session.send(msg)
        await session.quit()
        return session, result

    return run(main())


def dump_fields(dump: bytes, name: bytes) -> list[bytes]:
    return [line[len(name) + 2 :] for line in dump.split(b"\n") if line.startswith(name + b": ")]


def test_helo_fallback_when_ehlo_is_refused(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, "-f", "EHLO") as sink:
        session, result = send_one(sink, message("bob@example.test"))
        dumped = sink.dumped()
    assert result.recipients[0].delivered and not result.info.esmtp
    assert result.info.extensions == {}
    ehlo, helo = (e for e in session.transcript if e.stage in (Stage.EHLO, Stage.HELO))
    assert ehlo.reply.code == 500 and helo.reply.code == 250
    assert helo.command == "HELO client.example.test"
    assert dump_fields(dumped[0], b"X-Client-Proto") == [b"SMTP"]
    # No ESMTP: plain MAIL FROM without parameters.
    assert dump_fields(dumped[0], b"X-Mail-Args") == [b"<alice@example.test>"]


def test_8bit_message_is_converted_for_a_server_without_8bitmime(tmp_path: Path) -> None:
    msg = message("bob@example.test", data=EIGHT_BIT, body_type=BodyType.EIGHT_BIT_MIME)
    with smtp_sink(tmp_path, "-8") as sink:
        _, result = send_one(sink, msg)
        dumped = sink.dumped()
    assert result.recipients[0].delivered
    assert "8BITMIME" not in result.info.extensions
    assert b"BODY=" not in dump_fields(dumped[0], b"X-Mail-Args")[0]
    # The message follows smtp-sink's own header block, which ends with its Received:.
    own, _, rest = dumped[0].partition(b"\nFrom: alice@example.test\n")
    assert b"\nReceived: " in own
    # ... and the dump format adds an empty line after the message.
    assert rest.endswith(b"\n\n")
    arrived = email.message_from_bytes(
        b"From: alice@example.test\n" + rest[:-1], policy=email.policy.default
    )
    original = email.message_from_bytes(EIGHT_BIT, policy=email.policy.default)
    assert arrived["Content-Transfer-Encoding"] == "quoted-printable"
    assert arrived.get_content().replace("\r\n", "\n") == original.get_content().replace(
        "\r\n", "\n"
    )
    assert b"Gr=C3=BC=C3=9Fe" in dumped[0] and dumped[0].isascii()


def test_8bit_message_passes_body_8bitmime_when_offered(tmp_path: Path) -> None:
    msg = message("bob@example.test", data=EIGHT_BIT, body_type=BodyType.EIGHT_BIT_MIME)
    with smtp_sink(tmp_path) as sink:
        _, result = send_one(sink, msg)
        dumped = sink.dumped()
    assert result.recipients[0].delivered
    assert dump_fields(dumped[0], b"X-Mail-Args")[0].endswith(b" BODY=8BITMIME")
    assert "Grüße".encode() in dumped[0]


def test_non_mime_8bit_message_fails_permanently_naming_the_reason(tmp_path: Path) -> None:
    data = b"From: alice@example.test\r\nSubject: raw\r\n\r\n" + "Grüße\r\n".encode()
    with smtp_sink(tmp_path, "-8") as sink:
        _, result = send_one(sink, message("bob@example.test", data=data))
    reply = result.recipients[0].reply
    assert (reply.code, reply.enhanced) == (554, "5.6.3") and result.recipients[0].permanent
    assert result.reason.startswith("8-bit body without MIME structure")
    assert result.mail_reply is None and result.transcript == () and result.usable


def test_dsn_parameters_on_the_wire(tmp_path: Path) -> None:
    rcpts = (
        OutgoingRecipient("bob@example.test", ("SUCCESS", "FAILURE"), "rfc822;Bob+x@example.org"),
        OutgoingRecipient("carol@example.test", ("NEVER",)),
    )
    msg = message(*rcpts, ret="FULL", envid="id=1 é")
    with smtp_sink(tmp_path) as sink:
        _, result = send_one(sink, msg)
        dumped = sink.dumped()
    assert all(r.delivered and r.dsn_passed for r in result.recipients)
    # RFC 3461 §4: ENVID and ORCPT are xtext ("=", " ", "+" and non-ASCII octets as +HH).
    assert dump_fields(dumped[0], b"X-Mail-Args") == [
        b"<alice@example.test> RET=FULL ENVID=id+3D1+20+C3+A9"
    ]
    assert dump_fields(dumped[0], b"X-Rcpt-Args") == [
        b"<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@example.org",
        b"<carol@example.test> NOTIFY=NEVER",
    ]


def test_no_dsn_parameters_when_dsn_is_not_offered(tmp_path: Path) -> None:
    msg = message(OutgoingRecipient("bob@example.test", ("SUCCESS",)), ret="HDRS", envid="x")
    with smtp_sink(tmp_path, "-N") as sink:
        _, result = send_one(sink, msg)
        dumped = sink.dumped()
    assert result.recipients[0].delivered and not result.recipients[0].dsn_passed
    assert b"RET=" not in dumped[0] and b"NOTIFY=" not in dumped[0]
    assert dump_fields(dumped[0], b"X-Rcpt-Args") == [b"<bob@example.test>"]


def test_4xx_at_rcpt_is_temporary_and_no_data_is_sent(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, "-r", "RCPT") as sink:
        session, result = send_one(sink, message("bob@example.test"))
    reply = result.recipients[0].reply
    assert reply.code == 450 and not result.recipients[0].permanent
    # -r implies no PIPELINING: RCPT refused, so no DATA; RSET ends the transaction.
    assert [e.stage.value for e in result.transcript] == ["mail", "rcpt", "rset"]
    assert result.usable and session.transcript[-1].stage is Stage.QUIT


def test_5xx_at_data_is_every_recipients_permanent_reply(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, "-f", "DATA") as sink:
        _, result = send_one(
            sink, message("bob@example.test", "carol@example.test"), use_chunking=False
        )
    assert [(r.reply.code, r.permanent) for r in result.recipients] == [(500, True)] * 2
    assert [e.stage.value for e in result.transcript] == ["mail", "rcpt", "rcpt", "data", "rset"]
    assert result.usable


def test_5xx_after_the_final_dot(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, "-f", ".") as sink:
        _, result = send_one(sink, message("bob@example.test"), use_chunking=False)
    assert result.recipients[0].reply.code == 500 and result.recipients[0].permanent
    assert result.transcript[-1].stage is Stage.MESSAGE and result.usable


def test_tls_required_but_not_offered(tmp_path: Path) -> None:
    with smtp_sink(tmp_path) as sink, pytest.raises(SessionError) as caught:
        send_one(sink, message("bob@example.test"), TlsPolicy(TlsMode.ENCRYPT))
    err = caught.value
    assert err.stage is Stage.STARTTLS and err.temporary
    assert err.reason == "TLS required but not offered"
    assert (err.result_reply.code, err.result_reply.enhanced) == (451, "4.7.4")
    assert [e.stage for e in err.transcript] == [Stage.GREETING, Stage.EHLO]


def test_lmtp_per_recipient_replies_over_a_unix_socket(tmp_path: Path) -> None:
    rcpts = ("bob@example.test", "carol@example.test", "dave@example.test")
    with smtp_sink(tmp_path, "-L", unix=True) as sink:
        session, result = send_one(sink, message(*rcpts), lmtp=True, use_chunking=False)
        dumped = sink.dumped()
    assert [r.reply.code for r in result.recipients] == [250, 250, 250]
    assert [e.stage.value for e in result.transcript][-3:] == ["message"] * 3
    assert session.transcript[1].command == "LHLO client.example.test"
    assert dump_fields(dumped[0], b"X-Client-Proto") == [b"LMTP"]
    assert len(dump_fields(dumped[0], b"X-Rcpt-Args")) == 3


def test_binarymime_is_base64_encoded_for_a_server_without_it(tmp_path: Path) -> None:
    part = b"\0\x01\xff bare LF\n bare CR\r end\r\n"
    data = (
        b"From: alice@example.test\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + part
    )
    msg = message("bob@example.test", data=data, body_type=BodyType.BINARY_MIME)
    with smtp_sink(tmp_path) as sink:
        _, result = send_one(sink, msg)
        dumped = sink.dumped()
    assert result.recipients[0].delivered
    assert b"BODY=" not in dump_fields(dumped[0], b"X-Mail-Args")[0]
    _, _, rest = dumped[0].partition(b"\nFrom: alice@example.test\n")
    arrived = email.message_from_bytes(b"From: alice@example.test\n" + rest[:-1])
    assert arrived["Content-Transfer-Encoding"] == "base64"
    assert arrived.get_payload(decode=True) == part


def test_auth_over_plaintext_only_when_allowed(tmp_path: Path) -> None:
    creds = Credentials("alice", "secret")
    with smtp_sink(tmp_path) as sink:
        session, result = send_one(
            sink, message("bob@example.test"), auth=creds, allow_plaintext_auth=True
        )
    auth = [e for e in session.transcript if e.stage is Stage.AUTH]
    # Without TLS the mechanisms that keep the password off the wire come first; the
    # sink offers only PLAIN and LOGIN.
    assert auth[0].command == "AUTH PLAIN" and auth[-1].reply.code == 250  # the sink's 2xx
    assert result.info.authenticated_as == "alice" and result.recipients[0].delivered
