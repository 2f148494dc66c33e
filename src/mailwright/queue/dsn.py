"""Non-delivery reports: RFC 3464 delivery status notifications (bounces).

A bounce is a ``multipart/report; report-type=delivery-status`` message (RFC 6522)
with three parts:

1. ``text/plain`` for the human: which recipients failed and why;
2. ``message/delivery-status`` (RFC 3464 §2): per-message fields (Reporting-MTA,
   Original-Envelope-Id, Arrival-Date) then, per failed recipient, Final-Recipient,
   Original-Recipient (from ORCPT, RFC 3461 §4.2, as decoded by the parser),
   ``Action: failed``, Status (RFC 3463) and Diagnostic-Code;
3. the original message: full (``message/rfc822``) or only its header
   (``text/rfc822-headers``), as RET asked (RFC 3461 §4.3).  Without RET we return the
   full message if it is small, as Postfix does (``bounce_size_limit``); a BINARYMIME
   original is never embedded (it may not survive 8BITMIME transport).

Who gets a bounce (RFC 3461 §4.1, RFC 5321 §4.5.5, §6.1):

* never the null reverse-path ``<>`` — a bounce about a bounce would loop;
* not for recipients that said ``NOTIFY=NEVER``, or gave a NOTIFY list without
  ``FAILURE``; no NOTIFY at all means "FAILURE" (and DELAY, not implemented).

Internationalised mail (RFC 6533): when an address or diagnostic is not ASCII, the
report uses ``message/global-delivery-status`` and ``utf-8`` address types, and the
original header part becomes ``message/global-headers``.

The bounce is sent ``MAIL FROM:<>`` (set by the queue runner) and carries
``Auto-Submitted: auto-replied`` (RFC 3834) so vacation responders stay quiet.
"""

from __future__ import annotations

import secrets
from email.utils import formatdate

from mailwright.spool.model import (
    BodyType,
    Recipient,
    RecipientState,
    RemoteReply,
    SpooledMessage,
)

# Postfix's bounce_size_limit: above this only the header is returned without RET=FULL.
FULL_BODY_LIMIT = 50_000
# Even with RET=FULL, do not mail back more than this (the sender has the original).
MAX_RETURNED_BODY = 10 * 1024 * 1024
# RFC 5322 §2.1.1: lines are at most 998 octets; we keep diagnostic lines well below.
MAX_FIELD_TEXT = 900
SUBJECT = "Undelivered Mail Returned to Sender"
DEFAULT_FAILURE_STATUS = "5.0.0"  # RFC 3463 "other undefined status"

CRLF = b"\r\n"


def wants_failure_notice(recipient: Recipient) -> bool:
    """RFC 3461 §4.1: does this recipient want a DSN when delivery fails?"""
    notify = {n.upper() for n in recipient.notify}
    if not notify:
        return True  # default behaviour: report failures
    return "FAILURE" in notify and "NEVER" not in notify


def status_of(reply: RemoteReply | None) -> tuple[str, str | None]:
    """(RFC 3463 status, Diagnostic-Code text or None) from the stored reply: its
    enhanced code, or only the class (X.0.0, RFC 3463 §2) when the reply had none."""
    if reply is None:
        return DEFAULT_FAILURE_STATUS, None
    return reply.enhanced or f"{reply.code // 100}.0.0", _clean(str(reply)) or None


def split_headers(message: bytes) -> bytes:
    """The header section of an RFC 5322 message, without the blank separator line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            return message[: end + len(sep) // 2]
    return message


def bounce_body_type(data: bytes) -> BodyType:
    """7BIT if the bounce is pure ASCII, else 8BITMIME (RFC 6152)."""
    return BodyType.SEVEN_BIT if data.isascii() else BodyType.EIGHT_BIT_MIME


def _clean(text: str) -> str:
    """One header-safe line: no CR/LF/control characters, bounded length."""
    flat = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text)
    return " ".join(flat.split())[:MAX_FIELD_TEXT]


def _address_field(address: str) -> str:
    return f"utf-8; {address}" if not address.isascii() else f"rfc822; {address}"


def _original_recipient(orcpt: str) -> str | None:
    """The Original-Recipient value (RFC 3464 §2.3.1) from the stored ORCPT.

    The spool holds ORCPT as "addr-type;address" with the address already decoded
    from xtext by the protocol core (``smtp._xtext``; RFC 3461 §4.2: xtext is only
    how the parameter travels in the RCPT command).  The field's generic-address is
    plain text, "the same as that provided by the sender" (RFC 3464 §2.3.1), so it
    is written as stored: decoding it again would turn ``user+41@x`` into ``userA@x``.
    """
    addr_type, sep, address = orcpt.partition(";")
    if not sep or not addr_type.strip():
        return None
    text = _clean(address)
    return f"{addr_type.strip()}; {text}" if text else None


def _returned_part(message: SpooledMessage, headers: bytes, original: bytes | None) -> bytes:
    env = message.envelope
    ret = (env.ret or "").upper()
    want_full = ret == "FULL" or (not ret and message.size <= FULL_BODY_LIMIT)
    can_full = (
        original is not None
        and env.body_type is not BodyType.BINARY_MIME
        and len(original) <= MAX_RETURNED_BODY
    )
    utf8 = env.smtputf8 or not headers.isascii()
    if want_full and can_full and original is not None:
        kind = b"message/global" if env.smtputf8 else b"message/rfc822"
        body = original
        description = b"Undelivered Message"
    else:
        kind = b"message/global-headers" if utf8 else b"text/rfc822-headers"
        body = headers.rstrip(b"\r\n") + CRLF
        description = b"Undelivered Message Headers"
    cte = b"" if body.isascii() else b"Content-Transfer-Encoding: 8bit\r\n"
    if not body.endswith(b"\n"):
        body += CRLF
    head = b"Content-Description: " + description + CRLF + b"Content-Type: " + kind + CRLF
    return head + cte + CRLF + body


def _human_text(message: SpooledMessage, failed: list[RecipientState], reporting_mta: str) -> str:
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        f"Queue ID: {message.queue_id}",
        "",
    ]
    for state in failed:
        _, diagnostic = status_of(state.last_reply)
        lines.append(f"<{state.recipient.address}>: {diagnostic or 'delivery failed'}")
    return "\r\n".join(lines) + "\r\n"


def _delivery_status(
    message: SpooledMessage, failed: list[RecipientState], reporting_mta: str, now: float
) -> str:
    env = message.envelope
    fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if env.envid:
        fields.append(f"Original-Envelope-Id: {_clean(env.envid)}")
    fields.append(f"Arrival-Date: {formatdate(message.received_at, usegmt=True)}")
    blocks = ["\r\n".join(fields)]
    for state in failed:
        status, diagnostic = status_of(state.last_reply)
        if status.startswith("2"):
            status = DEFAULT_FAILURE_STATUS  # a failure is never reported as success
        rcpt = [f"Final-Recipient: {_address_field(state.recipient.address)}"]
        if state.recipient.orcpt and (original := _original_recipient(state.recipient.orcpt)):
            rcpt.append(f"Original-Recipient: {original}")
        rcpt += ["Action: failed", f"Status: {status}"]
        if diagnostic:
            rcpt.append(f"Diagnostic-Code: smtp; {diagnostic}")
        rcpt.append(f"Last-Attempt-Date: {formatdate(now, usegmt=True)}")
        blocks.append("\r\n".join(rcpt))
    return "\r\n\r\n".join(blocks) + "\r\n"


def build_bounce(
    message: SpooledMessage,
    failed: list[RecipientState],
    body_headers: bytes,
    reporting_mta: str,
    now: float,
    *,
    original: bytes | None = None,
) -> bytes:
    """The RFC 3464 report for ``failed`` recipients of ``message`` as wire bytes (CRLF).

    ``body_headers`` is the original header section (``split_headers``); pass the whole
    message as ``original`` to allow returning it in full (RET=FULL or small).  The
    caller decides *whether* to bounce (``wants_failure_notice``, null sender).
    """
    if not failed:
        raise ValueError("a bounce needs at least one failed recipient")
    sender = message.envelope.mail_from
    if not sender:
        raise ValueError("never bounce a message with a null reverse-path")
    report = _delivery_status(message, failed, reporting_mta, now)
    human = _human_text(message, failed, reporting_mta)
    international = not (report.isascii() and human.isascii())
    status_type = "message/global-delivery-status" if international else "message/delivery-status"
    text_cte = "8bit" if not human.isascii() else "7bit"
    # RFC 2046 §5.1.1 bchars only; random, so it cannot occur in the enclosed message.
    boundary = f"=_{message.queue_id}.{secrets.token_hex(12)}"
    mailer_daemon = f"MAILER-DAEMON@{reporting_mta}"
    head = "\r\n".join(
        [
            f"Date: {formatdate(now, usegmt=True)}",
            f"From: Mail Delivery System <{mailer_daemon}>",
            f"To: <{sender}>",
            f"Subject: {SUBJECT}",
            f"Message-ID: <{message.queue_id}.{int(now)}.bounce@{reporting_mta}>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;",
            f'\tboundary="{boundary}"',
            "",
            "This is a MIME-encapsulated message.",
            "",
        ]
    )
    parts = [
        (
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {text_cte}\r\n\r\n" + human
        ).encode("utf-8"),
        (
            "Content-Description: Delivery report\r\n"
            f"Content-Type: {status_type}\r\n"
            + ("Content-Transfer-Encoding: 8bit\r\n" if international else "")
            + "\r\n"
            + report
        ).encode("utf-8"),
        _returned_part(message, body_headers, original),
    ]
    delimiter = f"--{boundary}\r\n".encode("ascii", "replace")
    out = [head.encode("utf-8"), CRLF]
    for part in parts:
        out += [delimiter, part]
        if not part.endswith(CRLF):
            out.append(CRLF)
    out.append(f"--{boundary}--\r\n".encode("ascii", "replace"))
    return b"".join(out)
