"""RFC 3464 bounces, parsed back with the stdlib ``email`` package."""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest

from mailwright.queue.agent import ReplySource
from mailwright.queue.dsn import (
    Action,
    Reported,
    ReportKind,
    build_bounce,
    build_report,
    split_headers,
    status_of,
)
from mailwright.queue.notices import wants_failure_notice
from mailwright.smtp import (
    NEED_DATA,
    Ehlo,
    MailFrom,
    RcptTo,
    Reply,
    ServerConnection,
    codes,
    ehlo_reply,
)
from mailwright.spool.model import (
    BodyType,
    Envelope,
    Recipient,
    RecipientState,
    RecipientStatus,
    RemoteReply,
    SpooledMessage,
)

ORIGINAL = (
    b"Received: from client.example\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"Subject: quarterly numbers\r\n"
    b"\r\n"
    b"The body text.\r\n"
)
NOW = 1_700_000_000.0


def message(*states: RecipientState, **env: object) -> SpooledMessage:
    envelope = Envelope(
        mail_from=str(env.pop("mail_from", "alice@example.com")),
        recipients=tuple(s.recipient for s in states),
        **env,  # type: ignore[arg-type]
    )
    return SpooledMessage(
        queue_id="1M7Z0JYX9YXH6DW5",
        envelope=envelope,
        size=len(ORIGINAL),
        received_at=NOW - 60,
        next_attempt=NOW,
        recipients=list(states),
    )


def failed(address: str, reply: RemoteReply | None, **kw: object) -> RecipientState:
    return RecipientState(
        Recipient(address, **kw),  # type: ignore[arg-type]
        status=RecipientStatus.FAILED,
        attempts=1,
        last_reply=reply,
    )


def parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data)


def report_blocks(msg: email.message.Message) -> list[email.message.Message]:
    parts = msg.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_bounce_is_a_parseable_multipart_report() -> None:
    states = [
        failed("bob@example.net", RemoteReply(550, "5.1.1", "<bob@example.net>: user unknown")),
        failed("carol@example.org", RemoteReply(552, "5.2.2", "mailbox full")),
    ]
    msg = message(*states, envid="ENV-42")
    data = build_bounce(
        msg, states, split_headers(ORIGINAL), "mx.example.com", NOW, original=ORIGINAL
    )

    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only, no bare LF
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"] == "<alice@example.com>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["From"].startswith("Mail Delivery System <MAILER-DAEMON@mx.example.com>")
    parts = parsed.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",  # small message, no RET: returned in full like Postfix
    ]
    human = parts[0].get_payload(decode=True)
    assert b"bob@example.net" in human and b"user unknown" in human

    per_message, bob, carol = report_blocks(parsed)
    assert per_message["Reporting-MTA"] == "dns; mx.example.com"
    assert per_message["Original-Envelope-Id"] == "ENV-42"
    assert per_message["Arrival-Date"]
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Original-Recipient"] is None  # no ORCPT given
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    # No host in the report: the reason is ours (RFC 3464 §2.3.6), not a remote reply.
    assert bob["Diagnostic-Code"] == "X-mailwright; <bob@example.net>: user unknown"
    assert bob["Remote-MTA"] is None
    assert carol["Status"] == "5.2.2" and carol["Action"] == "failed"

    returned = parts[2].get_payload()
    assert isinstance(returned, list)
    assert returned[0]["Subject"] == "quarterly numbers"


def test_ret_hdrs_returns_only_headers() -> None:
    state = failed("bob@example.net", RemoteReply(550, "5.1.1", "no"))
    msg = message(state, ret="HDRS")
    data = build_bounce(msg, [state], split_headers(ORIGINAL), "mx", NOW, original=ORIGINAL)
    parts = parse(data).get_payload()
    assert isinstance(parts, list)
    assert parts[2].get_content_type() == "text/rfc822-headers"
    text = parts[2].get_payload()
    assert "Subject: quarterly numbers" in text
    assert "The body text." not in text


def test_ret_full_returns_message_and_large_default_returns_headers() -> None:
    state = failed("bob@example.net", RemoteReply(550, "5.1.1", "no"))
    full = message(state, ret="FULL")
    data = build_bounce(full, [state], split_headers(ORIGINAL), "mx", NOW, original=ORIGINAL)
    parts = parse(data).get_payload()
    assert isinstance(parts, list) and parts[2].get_content_type() == "message/rfc822"
    assert b"The body text." in data

    big = message(state)
    big.size = 10_000_000
    data = build_bounce(big, [state], split_headers(ORIGINAL), "mx", NOW, original=ORIGINAL)
    parts = parse(data).get_payload()
    assert isinstance(parts, list) and parts[2].get_content_type() == "text/rfc822-headers"

    binary = message(state, ret="FULL", body_type=BodyType.BINARY_MIME)
    data = build_bounce(binary, [state], split_headers(ORIGINAL), "mx", NOW, original=ORIGINAL)
    assert b"The body text." not in data


def test_expired_recipient_reports_4_4_7() -> None:
    expired = RemoteReply(451, "4.4.7", "Message expired after 5 days in queue; last error: x")
    state = failed("bob@example.net", expired)
    data = build_bounce(message(state), [state], b"Subject: s\r\n", "mx", NOW)
    _, block = report_blocks(parse(data))
    assert block["Action"] == "failed"
    assert block["Status"] == "4.4.7"


def test_international_addresses_use_global_types() -> None:
    state = failed("dörte@exämple.de", RemoteReply(550, "5.1.1", "unknown"))
    msg = message(state, smtputf8=True, mail_from="jürgen@example.de")
    data = build_bounce(msg, [state], b"Subject: s\r\n", "mx", NOW)
    parsed = email.message_from_bytes(data, policy=email.policy.SMTPUTF8)
    types = [p.get_content_type() for p in parsed.iter_parts()]
    assert types[1] == "message/global-delivery-status"
    assert "utf-8; dörte@exämple.de".encode() in data


def test_refuses_null_sender_and_empty_list() -> None:
    state = failed("bob@example.net", RemoteReply(550, "5.1.1", "no"))
    with pytest.raises(ValueError, match="null reverse-path"):
        build_bounce(message(state, mail_from=""), [state], b"", "mx", NOW)
    with pytest.raises(ValueError):
        build_bounce(message(state), [], b"", "mx", NOW)


@pytest.mark.parametrize(
    ("notify", "wanted"),
    [
        ((), True),
        (("FAILURE",), True),
        (("SUCCESS", "FAILURE"), True),
        (("failure", "delay"), True),
        (("NEVER",), False),
        (("SUCCESS",), False),
        (("DELAY",), False),
    ],
)
def test_wants_failure_notice(notify: tuple[str, ...], wanted: bool) -> None:
    assert wants_failure_notice(Recipient("a@b", notify)) is wanted


def test_helpers() -> None:
    denied = RemoteReply(550, "5.7.1", "relaying denied")
    assert status_of(denied) == ("5.7.1", "550 5.7.1 relaying denied")
    assert status_of(RemoteReply(554, "", "transaction failed"))[0] == "5.0.0"
    assert status_of(RemoteReply(421, "4.4.2", "timeout"))[0] == "4.4.2"
    assert status_of(None) == ("5.0.0", None)
    injected = RemoteReply(550, "5.1.1", "bad\r\nInjected: header")
    assert status_of(injected)[1] == "550 5.1.1 bad Injected: header"
    assert split_headers(ORIGINAL).endswith(b"quarterly numbers\r\n")
    assert split_headers(b"A: b\n\nbody") == b"A: b\n"
    assert split_headers(b"no body") == b"no body"


def recipient_from_rcpt_line(line: bytes) -> Recipient:
    """Parse ``line`` with the server core, as a session does, and build the spool
    Recipient from the RcptTo event the way ``net.inbound.handlers`` builds the envelope."""
    conn = ServerConnection()
    conn.send(Reply.of(220, "", "mx.example.com ESMTP"))  # the greeting
    conn.receive_data(b"EHLO client.example\r\nMAIL FROM:<alice@example.com>\r\n" + line)
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, Ehlo):
            conn.send(ehlo_reply("mx.example.com", conn.extensions))
        elif isinstance(event, MailFrom):
            conn.send(codes.R250_SENDER_OK)
        else:
            assert isinstance(event, RcptTo), event
            conn.send(codes.R250_RECIPIENT_OK)
    rcpt = events[-1]
    assert isinstance(rcpt, RcptTo)
    return Recipient(str(rcpt.address), rcpt.params.notify, rcpt.params.orcpt)


def test_original_recipient_is_xtext_decoded_once() -> None:
    # Issue 8 item 11: "+2B41" is the xtext for "+41"; decoding it a second time
    # produced "userA@example.org".
    recipient = recipient_from_rcpt_line(
        b"RCPT TO:<x@remote.example> NOTIFY=FAILURE ORCPT=rfc822;user+2B41@example.org\r\n"
    )
    state = RecipientState(
        recipient,
        status=RecipientStatus.FAILED,
        attempts=1,
        last_reply=RemoteReply(550, "5.1.1", "unknown"),
    )
    data = build_bounce(message(state), [state], split_headers(ORIGINAL), "mx", NOW)
    _, block = report_blocks(parse(data))
    assert block["Final-Recipient"] == "rfc822; x@remote.example"
    assert block["Original-Recipient"] == "rfc822; user+41@example.org"


# -- who said it: the remote server's reply or our own reason (RFC 3464 §2.3.5/§2.3.6) --

MX = "mx.example.net[192.0.2.1]:25"  # how the relay names the host it talked to


def diagnostic(block: email.message.Message) -> str:
    """Diagnostic-Code unfolded (RFC 5322 §2.2.3: remove the CRLF, keep the space)."""
    return str(block["Diagnostic-Code"]).replace("\r\n", "")


def one_report(entry: Reported) -> tuple[email.message.Message, str]:
    """(the recipient's field block, the human part) of a failure report."""
    data = build_report(
        message(entry.state), ReportKind.FAILURE, [entry], b"Subject: s\r\n", "mta.example", NOW
    )
    parsed = parse(data)
    _, block = report_blocks(parsed)
    parts = parsed.get_payload()
    assert isinstance(parts, list)
    human = parts[0].get_payload(decode=True)
    assert isinstance(human, bytes)
    return block, human.decode()


def test_local_refusal_report_has_x_mailwright_diagnostic_and_no_remote_mta() -> None:
    """SMTPUTF8 needed but not offered is our refusal: the host was involved (named in
    the text, Postfix style without the port) but it said nothing of the kind."""
    refusal = codes.R553_SMTPUTF8_REQUIRED
    state = failed("bob@example.net", RemoteReply(refusal.code, refusal.enhanced, refusal.text))
    block, human = one_report(Reported(state, Action.FAILED, MX, "mx.example.net"))
    sentence = "SMTPUTF8 is required, but was not offered by host mx.example.net[192.0.2.1]"
    assert diagnostic(block) == f"X-mailwright; {sentence}"
    assert block["Remote-MTA"] is None
    assert block["Status"] == "5.6.7"  # the enhanced code, as before
    assert f"<bob@example.net>: {sentence}" in human.splitlines()
    assert "said" not in human


def test_remote_reply_report_keeps_smtp_diagnostic_and_remote_mta() -> None:
    state = failed("bob@example.net", RemoteReply(550, "5.1.1", "<bob@example.net>: unknown"))
    entry = Reported(state, Action.FAILED, MX, "mx.example.net", ReplySource.REMOTE)
    block, human = one_report(entry)
    assert diagnostic(block) == "smtp; 550 5.1.1 <bob@example.net>: unknown"
    assert block["Remote-MTA"] == "dns; mx.example.net"
    assert block["Status"] == "5.1.1"
    assert f"<bob@example.net>: host {MX} said: 550 5.1.1 <bob@example.net>: unknown" in human


@pytest.mark.parametrize(
    ("reply", "host", "text"),
    [
        # Worded to take the host's name (as Postfix's "... offered by host %s").
        (codes.R451_TLS_NOT_OFFERED, MX, f"{codes.R451_TLS_NOT_OFFERED.text} {MX[:-3]}"),
        # Any other reason of ours names the host in brackets.
        (codes.R451_TLS_FAILED, MX, f"{codes.R451_TLS_FAILED.text} (host {MX[:-3]})"),
        # An IPv6 address keeps its colons; only the port goes.
        (codes.R552_TOO_BIG_FOR_PEER, "mx[2001:db8::1]:25", "(host mx[2001:db8::1])"),
        # No host involved (NXDOMAIN, a null MX): the reason alone.
        (codes.R556_NULL_MX, None, codes.R556_NULL_MX.text),
    ],
)
def test_local_reason_names_the_host_it_concerns(reply: Reply, host: str | None, text: str) -> None:
    state = failed("bob@example.net", RemoteReply(reply.code, reply.enhanced, reply.text))
    block, human = one_report(Reported(state, Action.FAILED, host))
    assert diagnostic(block).startswith("X-mailwright; ")
    assert diagnostic(block).endswith(text)
    assert block["Remote-MTA"] is None
    assert block["Status"] == reply.enhanced
    assert "said" not in human and text in human


def test_a_remote_source_without_a_host_is_reported_as_ours() -> None:
    """A reply no host is named for cannot be put in a host's mouth: ``smtp;`` and
    Remote-MTA need the host (RFC 3464 §2.3.5)."""
    state = failed("bob@example.net", RemoteReply(550, "5.1.1", "unknown"))
    block, human = one_report(Reported(state, Action.FAILED, None, None, ReplySource.REMOTE))
    assert diagnostic(block) == "X-mailwright; unknown"
    assert block["Remote-MTA"] is None and "said" not in human
