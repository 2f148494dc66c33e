"""Mail-log lines an inbound session writes about itself: a refused command (with the
stage it was refused at) and the TLS parameters negotiated.  ``InboundSession._reply``
decides *when* (DESIGN principle 5: one place writes, logs and counts); this module
only knows *what* such a line holds."""

from __future__ import annotations

from mailwright.obs.maillog import MailLog
from mailwright.policy.context import SessionContext
from mailwright.smtp import (
    Bdat,
    CommandError,
    Data,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    RcptTo,
    Reply,
    ServerConnection,
)

# The mail-log stage of a refused command (other commands log their own name).
_STAGE_OF: dict[type, str] = {
    MailFrom: "mail",
    RcptTo: "rcpt",
    Data: "data",
    EndOfData: "data",
    Bdat: "data",
    Helo: "helo",
    Ehlo: "helo",
    CommandError: "command",
}


def log_rejection(
    maillog: MailLog,
    ctx: SessionContext,
    conn: ServerConnection,
    event: object,
    reply: Reply,
    reason: str,
) -> None:
    """A refused command; ``event`` None is the connection itself (the greeting)."""
    if event is None:
        stage = "connect"
    else:
        stage = _STAGE_OF.get(type(event)) or type(event).__name__.lower()
    mail = conn.transaction.mail
    rcpt = event.address if isinstance(event, RcptTo) else None
    maillog.rejected(
        ctx.session_id,
        ctx.peer_ip,
        stage,
        reply,
        reason,
        mail_from=None if mail is None else str(mail.address or ""),
        rcpt=None if rcpt is None else str(rcpt),
        helo=ctx.helo,
    )


def log_tls(maillog: MailLog, ctx: SessionContext) -> None:
    """The negotiated protocol and cipher, in the mail log (as in Received)."""
    version, _, cipher = (ctx.tls or "").partition(" ")
    maillog.emit(
        ctx.session_id,
        "tls",
        client=ctx.peer_ip,
        version=version,
        cipher=cipher or None,
    )
