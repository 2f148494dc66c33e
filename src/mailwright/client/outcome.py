"""Exit statuses of ``mailwright send``, one per way a test can end (swaks' 2x codes:
21 banner, 22 EHLO, 23 MAIL, 24 RCPT, 25 DATA, 26 after the data, 28 AUTH, 29 TLS),
and the derivation of one from a session's result."""

from __future__ import annotations

from mailwright.net.outbound import SessionError, Stage, TransactionResult

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments or an unreadable file (click's own usage status)
EXIT_CONNECT = 3  # no connection, no answer, or the connection lost or timed out
EXIT_BANNER = 21  # the greeting was a refusal
EXIT_EHLO = 22  # EHLO/HELO/LHLO refused
EXIT_MAIL = 23  # MAIL FROM refused (or the message could not be offered at all)
EXIT_RCPT = 24  # no RCPT TO accepted
EXIT_DATA = 25  # DATA (or a BDAT chunk) refused
EXIT_MESSAGE = 26  # the message refused after its last octet
EXIT_AUTH = 28  # AUTH refused or impossible (no common mechanism)
EXIT_TLS = 29  # STARTTLS refused or not offered when required, handshake failed

MEANINGS = {
    EXIT_OK: "success (or stopped where --quit-after asked)",
    EXIT_USAGE: "usage error: bad option, unreadable file, no address to try",
    EXIT_CONNECT: "connection failed, timed out or was lost",
    EXIT_BANNER: "the server's greeting refused the connection",
    EXIT_EHLO: "EHLO/HELO/LHLO refused",
    EXIT_MAIL: "MAIL FROM refused",
    EXIT_RCPT: "no recipient accepted",
    EXIT_DATA: "DATA or BDAT refused",
    EXIT_MESSAGE: "the message was refused after the data",
    EXIT_AUTH: "authentication failed",
    EXIT_TLS: "TLS failed, was refused, or is required and not offered",
}

_SESSION_STAGES = {
    Stage.GREETING: EXIT_BANNER,
    Stage.EHLO: EXIT_EHLO,
    Stage.HELO: EXIT_EHLO,
    Stage.STARTTLS: EXIT_TLS,
    Stage.TLS: EXIT_TLS,
    Stage.AUTH: EXIT_AUTH,
}


def session_status(exc: SessionError) -> int:
    """The status for a session that could not be opened."""
    if exc.stage in (Stage.STARTTLS, Stage.TLS, Stage.AUTH):
        return _SESSION_STAGES[exc.stage]
    if exc.reply is None:  # no reply at all: the network's doing
        return EXIT_CONNECT
    return _SESSION_STAGES.get(exc.stage, EXIT_CONNECT)


def transaction_status(result: TransactionResult) -> int:
    """The status for a transaction: the first stage that refused, in order."""
    if any(r.delivered for r in result.recipients):
        return EXIT_OK
    if result.reason.startswith("stopped after"):
        return EXIT_OK
    if result.mail_reply is None:
        return EXIT_MAIL  # refused before MAIL (SMTPUTF8 not offered, too big, ...)
    seen = {entry.stage: entry.reply for entry in result.transcript}
    if not result.mail_reply.is_positive:
        return EXIT_MAIL
    rcpts = [e.reply for e in result.transcript if e.stage is Stage.RCPT]
    if len(rcpts) == len(result.recipients) and not any(r.is_positive for r in rcpts):
        return EXIT_RCPT
    data = seen.get(Stage.DATA)
    if data is not None and data.code != 354:
        return EXIT_DATA
    bdat = [e.reply for e in result.transcript if e.stage is Stage.BDAT]
    if any(not r.is_positive for r in bdat):
        return EXIT_DATA
    final = seen.get(Stage.MESSAGE)
    if final is not None and not final.is_positive:
        return EXIT_MESSAGE
    return EXIT_CONNECT  # no refusal seen: the connection ended the transaction
