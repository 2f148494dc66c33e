"""Delivery status notifications: RFC 3464 reports about what became of a message.

A report is a ``multipart/report; report-type=delivery-status`` message (RFC 6522)
with three parts:

1. ``text/plain`` for the human: what happened to which recipients, and why;
2. ``message/delivery-status`` (RFC 3464 §2): per-message fields (Reporting-MTA,
   Original-Envelope-Id from ENVID, Arrival-Date) then, per recipient reported,
   Final-Recipient, Original-Recipient (from ORCPT, RFC 3461 §4.2, as decoded by the
   parser), Action, Status (RFC 3463), Remote-MTA (RFC 3464 §2.3.5: the host that gave
   the reply, when it was not us), Diagnostic-Code (§2.3.6: ``smtp;`` and the whole
   reply, every line, folded rather than cut, when a remote server sent it;
   ``X-mailwright;`` and what happened, naming the host involved, when the reason is
   ours — a refusal before sending, routing, TLS policy, a timeout — as Postfix writes
   ``X-Postfix;``), Last-Attempt-Date and, for a delay, Will-Retry-Until;
3. the original message: full (``message/rfc822``) or only its header
   (``text/rfc822-headers``).  A failure report follows RET (RFC 3461 §4.3); without
   RET we return the full message if it is small, as Postfix does
   (``bounce_size_limit``); a BINARYMIME original is never embedded (it may not survive
   8BITMIME transport).  A report without a failure (delay, success) returns only the
   header: RFC 3461 §4.3 "SHOULD" — the message is on its way or has arrived.

The kinds (``ReportKind``), as Postfix names them:

* FAILURE — "Undelivered Mail Returned to Sender": ``Action: failed``;
* DELAY — "Delayed Mail (still being retried)": ``Action: delayed`` with a 4.x.x Status
  from the last reply and the time the queue gives up (Will-Retry-Until);
* SUCCESS — "Successful Mail Delivery Report": ``Action: delivered`` (we put it in the
  mailbox) or ``relayed`` (handed to a next hop that does not do DSN, RFC 3464
  §2.3.3, so no further report will come);
* POSTMASTER — "Postmaster Copy: Undelivered Mail": a report that could not be
  delivered (a double bounce), sent to the postmaster with the header of the failed
  report only: as Postfix's postmaster notices, it does not show the postmaster the
  content of someone else's mail that the failed report may carry.

Who gets which report is decided by the caller (``notices``); this module only writes
it.  Internationalised mail (RFC 6533): when an address or diagnostic is not ASCII, the
report uses ``message/global-delivery-status`` and ``utf-8`` address types, and the
original header part becomes ``message/global-headers``.

Reports are sent ``MAIL FROM:<>`` (set by the queue) and carry ``Auto-Submitted:
auto-replied`` (RFC 3834) so vacation responders stay quiet.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from enum import Enum, StrEnum

from mailwright.queue.agent import ReplySource
from mailwright.spool.model import (
    BodyType,
    RecipientState,
    RemoteReply,
    SpooledMessage,
)

# Postfix's bounce_size_limit: above this only the header is returned without RET=FULL.
FULL_BODY_LIMIT = 50_000
# Even with RET=FULL, do not mail back more than this (the sender has the original).
MAX_RETURNED_BODY = 10 * 1024 * 1024
# RFC 5322 §2.1.1: lines are at most 998 octets; the human part's lines stay below.
MAX_FIELD_TEXT = 900
# The whole remote reply goes into Diagnostic-Code (folded); our SMTP client reads at
# most 100 lines (``smtp._client.MAX_REPLY_LINES``), this bounds what a report repeats.
MAX_DIAGNOSTIC_TEXT = 10_000
# RFC 5322 §2.1.1: header lines SHOULD stay within 78 characters; longer fields are
# folded at a space (§2.2.3), which unfolding restores exactly.
FOLD_WIDTH = 78
SUBJECT = "Undelivered Mail Returned to Sender"
DEFAULT_FAILURE_STATUS = "5.0.0"  # RFC 3463 "other undefined status"
DEFAULT_DELAY_STATUS = "4.0.0"
DEFAULT_SUCCESS_STATUS = "2.0.0"
# RFC 3464 §2.3.6: "smtp" is the diagnostic type of a reply a remote SMTP server sent;
# a reason of our own gets an "X-" type, as Postfix's "X-Postfix".
REMOTE_DIAGNOSTIC_TYPE = "smtp"
LOCAL_DIAGNOSTIC_TYPE = "X-mailwright"

CRLF = b"\r\n"


class Action(StrEnum):
    """RFC 3464 §2.3.3 action-value (``expanded`` is not used: aliases are local)."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"


class ReportKind(Enum):
    """(Subject, Message-ID tag, whether the original may be returned in full, the
    mail-log name of the notification as Postfix logs it)."""

    FAILURE = (SUBJECT, "bounce", True, "sender non-delivery notification")
    DELAY = ("Delayed Mail (still being retried)", "delay", False, "sender delay notification")
    SUCCESS = (
        "Successful Mail Delivery Report",
        "success",
        False,
        "sender delivery status notification",
    )
    POSTMASTER = (
        "Postmaster Copy: Undelivered Mail",
        "2bounce",
        False,
        "postmaster non-delivery notification",
    )

    @property
    def subject(self) -> str:
        return str(self.value[0])

    @property
    def tag(self) -> str:
        return str(self.value[1])

    @property
    def returns_full(self) -> bool:
        return bool(self.value[2])

    @property
    def log_name(self) -> str:
        return str(self.value[3])


@dataclass(frozen=True, slots=True)
class Reported:
    """One recipient in a report: its state, what happened, the host involved (None:
    none) and whether its last reply is that host's (``source``) or our own reason."""

    state: RecipientState
    action: Action
    remote_host: str | None = None  # Postfix style "host[address]:port", for the text
    remote_mta: str | None = None  # the host's name alone: Remote-MTA (RFC 3464 §2.3.5)
    source: ReplySource = ReplySource.LOCAL

    @property
    def said_by_remote(self) -> bool:
        """The last reply is what the remote host sent: "host X said", ``smtp;``."""
        return self.source is ReplySource.REMOTE and self.remote_host is not None


def status_of(reply: RemoteReply | None) -> tuple[str, str | None]:
    """(RFC 3463 status, Diagnostic-Code text or None) from the stored reply: its
    enhanced code, or only the class (X.0.0, RFC 3463 §2) when the reply had none.
    The text is the whole reply on one line (up to ``MAX_DIAGNOSTIC_TEXT``)."""
    if reply is None:
        return DEFAULT_FAILURE_STATUS, None
    status = reply.enhanced or f"{reply.code // 100}.0.0"
    return status, _clean(str(reply), MAX_DIAGNOSTIC_TEXT) or None


def host_for_text(remote_host: str) -> str:
    """The host as Postfix names it in a reason, without the port: "mx[192.0.2.1]" from
    "mx[192.0.2.1]:25" ("... was not offered by host mx[192.0.2.1]")."""
    if remote_host.endswith("]"):
        return remote_host
    name, bracket, rest = remote_host.rpartition("]:")
    return f"{name}]" if bracket and rest.isdigit() else remote_host


def local_diagnostic(reply: RemoteReply | None, remote_host: str | None) -> str | None:
    """Our own reason in words, naming the host it concerns (Postfix's ``X-Postfix``
    text): the reply's text without the codes (the Status field has them), the host
    appended where the text ends in "host" ("SMTPUTF8 is required, but was not offered
    by host mx.example[192.0.2.1]", as ``smtp.codes`` words those), else in brackets."""
    if reply is None:
        return None
    text = _clean(reply.text or str(reply), MAX_DIAGNOSTIC_TEXT)
    if remote_host is None or not (host := _clean(host_for_text(remote_host))):
        return text or None
    if text.endswith(" host"):
        return f"{text} {host}"
    return f"{text} (host {host})" if text else f"host {host}"


def diagnostic_of(entry: Reported) -> str | None:
    """The Diagnostic-Code value (RFC 3464 §2.3.6): ``smtp; <the whole reply>`` for a
    remote server's reply, ``X-mailwright; <what happened>`` for our own reason."""
    if entry.said_by_remote:
        _, text = status_of(entry.state.last_reply)
        return f"{REMOTE_DIAGNOSTIC_TYPE}; {text}" if text else None
    text = local_diagnostic(entry.state.last_reply, entry.remote_host)
    return f"{LOCAL_DIAGNOSTIC_TYPE}; {text}" if text else None


def split_headers(message: bytes) -> bytes:
    """The header section of an RFC 5322 message, without the blank separator line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            return message[: end + len(sep) // 2]
    return message


def bounce_body_type(data: bytes) -> BodyType:
    """7BIT if the report is pure ASCII, else 8BITMIME (RFC 6152)."""
    return BodyType.SEVEN_BIT if data.isascii() else BodyType.EIGHT_BIT_MIME


def _clean(text: str, limit: int = MAX_FIELD_TEXT) -> str:
    """One header-safe line: no CR/LF/control characters, bounded length."""
    flat = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text)
    return " ".join(flat.split())[:limit]


def _fold(name: str, value: str) -> str:
    """``name: value``, folded before a space where a line would pass ``FOLD_WIDTH``
    (a word longer than that stays whole: ``_clean`` bounds it below 998 octets)."""
    lines: list[str] = []
    line, only_name = f"{name}:", True
    for word in value.split(" "):
        word = word[:MAX_FIELD_TEXT]
        if not only_name and len(line) + 1 + len(word) > FOLD_WIDTH:
            lines.append(line)
            line = ""
        line, only_name = line + " " + word, False
    lines.append(line)
    return "\r\n".join(lines)


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


def _status(entry: Reported) -> str:
    """The Status field: the reply's code if its class matches the action, else X.0.0."""
    status, _ = status_of(entry.state.last_reply)
    if entry.action is Action.FAILED:
        # A failure is never reported as success; 4.4.7 (expired) stays as it is.
        return DEFAULT_FAILURE_STATUS if status.startswith("2") else status
    if entry.action is Action.DELAYED:
        return status if status.startswith("4") else DEFAULT_DELAY_STATUS
    return status if status.startswith("2") else DEFAULT_SUCCESS_STATUS


def _returned_part(
    message: SpooledMessage, kind: ReportKind, headers: bytes, original: bytes | None
) -> bytes:
    env = message.envelope
    ret = (env.ret or "").upper()
    want_full = kind.returns_full and (
        ret == "FULL" or (not ret and message.size <= FULL_BODY_LIMIT)
    )
    can_full = (
        original is not None
        and env.body_type is not BodyType.BINARY_MIME
        and len(original) <= MAX_RETURNED_BODY
    )
    utf8 = env.smtputf8 or not headers.isascii()
    if want_full and can_full and original is not None:
        kind_type = b"message/global" if env.smtputf8 else b"message/rfc822"
        body = original
        description = b"Undelivered Message"
    else:
        kind_type = b"message/global-headers" if utf8 else b"text/rfc822-headers"
        body = headers.rstrip(b"\r\n") + CRLF
        description = b"Undelivered Message Headers" if kind.returns_full else b"Message Headers"
    cte = b"" if body.isascii() else b"Content-Transfer-Encoding: 8bit\r\n"
    if not body.endswith(b"\n"):
        body += CRLF
    head = b"Content-Description: " + description + CRLF + b"Content-Type: " + kind_type + CRLF
    return head + cte + CRLF + body


def _intro(kind: ReportKind, message: SpooledMessage, lifetime: float, now: float) -> list[str]:
    if kind is ReportKind.DELAY:
        hours = (now - message.received_at) / 3600
        return [
            "####### THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #######",
            "",
            f"Your message could not be delivered for more than {hours:.0f} hour(s).",
            f"It will be retried until it is {lifetime / 86400:g} day(s) old.",
        ]
    if kind is ReportKind.SUCCESS:
        return [
            "Your message was successfully delivered to the destination(s) listed",
            "below.  If the message was delivered to a mailbox you will receive no",
            "further notifications.  Otherwise you may still receive notifications",
            "of mail delivery errors from other systems.",
        ]
    if kind is ReportKind.POSTMASTER:
        return [
            "A delivery status notification (sent with a null sender) could not be",
            "delivered to its recipient(s).  It is attached below.  No further",
            "notification is sent about it.",
        ]
    return [
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
    ]


def _human_text(
    message: SpooledMessage,
    kind: ReportKind,
    entries: Sequence[Reported],
    reporting_mta: str,
    lifetime: float,
    now: float,
) -> str:
    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    lines += _intro(kind, message, lifetime, now)
    lines += ["", f"Queue ID: {message.queue_id}", ""]
    for entry in entries:
        if entry.said_by_remote and entry.remote_host is not None:
            # The remote host's own words (Postfix: "host mx[192.0.2.1] said: 550 ...").
            _, diagnostic = status_of(entry.state.last_reply)
            said = f"host {_clean(entry.remote_host)} said: "
        else:  # what happened, in our words: no host "said" it
            diagnostic = local_diagnostic(entry.state.last_reply, entry.remote_host)
            said = ""
        text = _clean(diagnostic or f"delivery {entry.action}")
        lines.append(f"<{entry.state.recipient.address}>: {said}{text}")
    return "\r\n".join(lines) + "\r\n"


def _delivery_status(
    message: SpooledMessage,
    entries: Sequence[Reported],
    reporting_mta: str,
    lifetime: float,
    now: float,
) -> str:
    env = message.envelope
    fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if env.envid:
        fields.append(f"Original-Envelope-Id: {_clean(env.envid)}")
    fields.append(f"Arrival-Date: {formatdate(message.received_at, usegmt=True)}")
    blocks = ["\r\n".join(fields)]
    for entry in entries:
        recipient = entry.state.recipient
        diagnostic = diagnostic_of(entry)
        rcpt = [f"Final-Recipient: {_address_field(recipient.address)}"]
        if recipient.orcpt and (original := _original_recipient(recipient.orcpt)):
            rcpt.append(f"Original-Recipient: {original}")
        rcpt += [f"Action: {entry.action}", f"Status: {_status(entry)}"]
        # §2.3.5: the MTA that reported the status, only when a remote host did.
        if entry.said_by_remote and entry.remote_mta and (host := _clean(entry.remote_mta)):
            rcpt.append(f"Remote-MTA: dns; {host}")
        if diagnostic:
            rcpt.append(_fold("Diagnostic-Code", diagnostic))
        rcpt.append(f"Last-Attempt-Date: {formatdate(now, usegmt=True)}")
        if entry.action is Action.DELAYED:
            until = message.received_at + lifetime
            rcpt.append(f"Will-Retry-Until: {formatdate(until, usegmt=True)}")
        blocks.append("\r\n".join(rcpt))
    return "\r\n\r\n".join(blocks) + "\r\n"


def build_report(
    message: SpooledMessage,
    kind: ReportKind,
    entries: Sequence[Reported],
    body_headers: bytes,
    reporting_mta: str,
    now: float,
    *,
    to: str | None = None,
    original: bytes | None = None,
    lifetime: float = 0.0,
) -> bytes:
    """The RFC 3464 report of ``kind`` about ``entries`` of ``message`` as wire bytes.

    ``to`` is who receives it (default: the message's sender); ``body_headers`` is the
    original header section (``split_headers``); pass the whole message as
    ``original`` to allow returning it in full; ``lifetime`` is the queue lifetime
    (``max_queue_lifetime``), for a delay report's Will-Retry-Until.
    """
    if not entries:
        raise ValueError("a report needs at least one recipient")
    recipient = message.envelope.mail_from if to is None else to
    if not recipient:
        raise ValueError("never report to a null reverse-path")
    report = _delivery_status(message, entries, reporting_mta, lifetime, now)
    human = _human_text(message, kind, entries, reporting_mta, lifetime, now)
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
            f"To: <{recipient}>",
            f"Subject: {kind.subject}",
            f"Message-ID: <{message.queue_id}.{int(now)}.{kind.tag}@{reporting_mta}>",
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
        _returned_part(message, kind, body_headers, original),
    ]
    delimiter = f"--{boundary}\r\n".encode("ascii", "replace")
    out = [head.encode("utf-8"), CRLF]
    for part in parts:
        out += [delimiter, part]
        if not part.endswith(CRLF):
            out.append(CRLF)
    out.append(f"--{boundary}--\r\n".encode("ascii", "replace"))
    return b"".join(out)


def build_bounce(
    message: SpooledMessage,
    failed: list[RecipientState],
    body_headers: bytes,
    reporting_mta: str,
    now: float,
    *,
    original: bytes | None = None,
) -> bytes:
    """The failure report (``build_report``, FAILURE) for ``failed`` recipients of
    ``message``, answered by us; the caller decides *whether* to bounce."""
    if not failed:
        raise ValueError("a bounce needs at least one failed recipient")
    if not message.envelope.mail_from:
        raise ValueError("never bounce a message with a null reverse-path")
    entries = [Reported(state, Action.FAILED) for state in failed]
    return build_report(
        message, ReportKind.FAILURE, entries, body_headers, reporting_mta, now, original=original
    )
