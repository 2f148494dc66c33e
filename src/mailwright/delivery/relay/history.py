"""What the attempt history keeps of a relay session, per recipient (``RemoteSession``).

Issue 10: "the session records every reply it gets (code, enhanced code, text, the
remote host and address, TLS version and cipher) as attempt history".  One recipient's
row gets the replies that concern it, in the order they came: the opening (greeting,
EHLO/LHLO/HELO, STARTTLS, AUTH), MAIL, *its* RCPT, DATA or the BDAT chunks, and the
reply after the data — for LMTP its own one of those (RFC 2033 §4.2: one per accepted
recipient, in RCPT order).  Other recipients' RCPT replies and RSETs stay out: a
timeline of one recipient names no other address.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailwright.net.outbound.model import SessionError, SessionInfo, Stage, TranscriptEntry
from mailwright.net.outbound.tlspolicy import TlsPolicy
from mailwright.smtp import Reply
from mailwright.spool.model import RemoteReply, RemoteSession, SessionReply

# Replies that concern every recipient of a transaction (or of the session).
_SHARED = frozenset(
    {
        Stage.GREETING,
        Stage.EHLO,
        Stage.HELO,
        Stage.STARTTLS,
        Stage.TLS,
        Stage.AUTH,
        Stage.MAIL,
        Stage.DATA,
        Stage.BDAT,
    }
)


def _stored(entry: TranscriptEntry) -> SessionReply:
    reply: Reply = entry.reply
    return SessionReply(
        entry.stage.value, entry.command, RemoteReply(reply.code, reply.enhanced, reply.text)
    )


def recipient_replies(
    transcript: Sequence[TranscriptEntry], index: int, *, lmtp: bool
) -> tuple[SessionReply, ...]:
    """The replies of ``transcript`` that concern the recipient at ``index`` of the
    transaction (the RCPTs go out, and are answered, in the message's order)."""
    rcpts = [e for e in transcript if e.stage is Stage.RCPT]
    # Which recipients the peer took, in order: LMTP's replies after the data follow them.
    accepted = [i for i, e in enumerate(rcpts) if e.reply.is_positive]
    mine: list[SessionReply] = []
    rcpt_seen = message_seen = 0
    for entry in transcript:
        if entry.stage in _SHARED:
            mine.append(_stored(entry))
        elif entry.stage is Stage.RCPT:
            if rcpt_seen == index:
                mine.append(_stored(entry))
            rcpt_seen += 1
        elif entry.stage is Stage.MESSAGE:
            owner = accepted[message_seen] if message_seen < len(accepted) else None
            if not lmtp or owner == index:
                mine.append(_stored(entry))
            message_seen += 1
    return tuple(mine)


def transaction_session(
    info: SessionInfo,
    policy: TlsPolicy,
    transcript: Sequence[TranscriptEntry],
    index: int,
    *,
    lmtp: bool,
) -> RemoteSession:
    """A delivered-or-refused recipient's session: ``transcript`` is the session's
    opening plus this transaction (``OutboundSession.transcript`` after ``send``)."""
    return RemoteSession(
        host=info.host,
        address=info.address,
        port=info.port,
        tls_version=info.tls_version,
        tls_cipher=info.tls_cipher,
        tls_mode=policy.mode.value,
        tls_source=policy.source,
        tls_reason=policy.reason,
        replies=recipient_replies(transcript, index, lmtp=lmtp),
    )


def failed_session(error: SessionError, policy: TlsPolicy) -> RemoteSession:
    """A session that ended before a transaction (greeting, EHLO, TLS, AUTH): what it
    got; every recipient shares it."""
    peer = error.peer
    return RemoteSession(
        host=peer.host,
        address=peer.address,
        port=peer.port,
        tls_mode=policy.mode.value,
        tls_source=policy.source,
        tls_reason=policy.reason,
        replies=tuple(_stored(e) for e in error.transcript),
    )
