"""The outbound SMTP/LMTP client session: the client half of the protocol core
(``smtp.ClientConnection``) over asyncio, used by the relay and by ``mailwright send``.

One ``OutboundSession`` is one connection to one peer.  Routing (MX lookup, smarthost),
retries, pooling across messages and concurrency limits are the caller's (the relay
in ``delivery``); this package speaks the protocol and reports what happened::

    from mailwright.net.outbound import (
        ClientSettings, OutboundSession, OutgoingMessage, OutgoingRecipient, Peer,
        SessionError, TlsMode, TlsPolicy,
    )

    settings = ClientSettings(helo_name="mx.example.org")
    try:
        session = await OutboundSession.open(
            Peer("mx1.example.net", "192.0.2.25", 25), settings, TlsPolicy(TlsMode.VERIFY)
        )
    except SessionError as exc:   # connect, greeting, EHLO/HELO, STARTTLS, TLS, AUTH
        exc.stage, exc.reason, exc.temporary, exc.reply, exc.result_reply, exc.transcript
    else:
        result = await session.send(OutgoingMessage(
            "alice@example.org", (OutgoingRecipient("bob@example.net"),), body
        ))
        for r in result.recipients:   # in the message's order
            r.recipient, r.reply, r.delivered, r.permanent, r.dsn_passed
        result.usable                 # may carry the next message (connection reuse)
        result.transcript             # every reply of this transaction, with its stage
        result.info                   # host, address, port, TLS version/cipher, policy,
                                      # extensions, greeting (SessionInfo)
        await session.send(message, reset_first=True)  # on an idle connection: RSET
                                      # ahead of MAIL (pipelined); result.stale: it was gone
        await session.reset()         # RSET alone: is an idle connection still good?
        await session.quit()          # QUIT and close; never raises

Contract:

* ``open`` raises ``SessionError`` (closing the connection) for any failure before a
  transaction; ``temporary`` is False only for a 5xx greeting/EHLO/HELO and an AUTH
  refusal (5xx): permanent *for this host*.  ``result_reply`` is the reply to record
  for every recipient (the peer's, or a fixed one from ``smtp.codes``: 4.4.1 no
  answer, 4.4.2 lost/timeout, 4.7.4 TLS required but not offered, 4.7.5 TLS failed).
* ``send`` never raises for what the peer or the network does: each recipient gets a
  reply, real or synthesised (a drop or timeout mid-transaction gives 451 4.4.2 to
  every recipient not yet answered; RFC 5321 §6.1).  Local refusals (SIZE, SMTPUTF8,
  conversion, NUL) are permanent and leave the connection usable.  After a result with
  ``usable`` False the session is closed; open a new one.
* Timeouts are RFC 5321 §4.5.3.2's (``ClientTimeouts``).  TLS policy modes are
  enforced as ``session`` describes; never a plaintext fallback when a policy requires
  TLS.  For LMTP (``ClientSettings(lmtp=True)``) ``Peer.address`` may be a unix socket
  path; replies after the data are per recipient (RFC 2033 §4.2).

Modules: ``model`` (the values), ``channel`` (asyncio transport + core), ``session``
(opening, TLS, AUTH), ``transaction`` (one message), ``downgrade`` (8-bit to 7-bit
MIME), ``tlspolicy`` (the policy type the relay hands in).
"""

from mailwright.net.outbound.model import (
    ClientSettings,
    ClientTimeouts,
    Credentials,
    OutgoingMessage,
    OutgoingRecipient,
    Peer,
    RecipientResult,
    SessionError,
    SessionInfo,
    Stage,
    TransactionResult,
    TranscriptEntry,
)
from mailwright.net.outbound.session import OutboundSession
from mailwright.net.outbound.tlspolicy import OPPORTUNISTIC, PeerCheck, TlsMode, TlsPolicy

__all__ = [
    "OPPORTUNISTIC",
    "ClientSettings",
    "ClientTimeouts",
    "Credentials",
    "OutboundSession",
    "OutgoingMessage",
    "OutgoingRecipient",
    "Peer",
    "PeerCheck",
    "RecipientResult",
    "SessionError",
    "SessionInfo",
    "Stage",
    "TlsMode",
    "TlsPolicy",
    "TransactionResult",
    "TranscriptEntry",
]
