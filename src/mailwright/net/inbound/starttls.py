"""The STARTTLS handshake of an inbound session (RFC 3207), after its 220.

Kept apart from the session loop in ``session``, which flushes what is owed, resumes
reading and then calls ``upgrade_to_tls`` when the core enters its TLS state.  This
module runs the handshake under a timeout and makes the core and the policy context
forget everything learnt before TLS.  It gets what it works on as arguments and
imports nothing of the session (imports go one way: session -> starttls).
"""

from __future__ import annotations

import asyncio
import ssl

from mailwright.net.inbound.sessionlog import log_tls
from mailwright.net.tls import TLS_HANDSHAKE_TIMEOUT, TlsManager, describe
from mailwright.obs.maillog import MailLog
from mailwright.policy.context import SessionContext
from mailwright.smtp import ServerConnection


async def upgrade_to_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    tls: TlsManager,
    conn: ServerConnection,
    ctx: SessionContext,
    maillog: MailLog,
) -> asyncio.Transport | None:
    """Run the handshake (RFC 3207 §4): the TLS transport, or None when it failed and
    the session is over (a failed handshake is logged and the transport aborted)."""
    loop = asyncio.get_running_loop()
    # The boundary between plaintext and TLS: start_tls takes the transport over
    # before it first yields, so everything buffered until here is plaintext and
    # everything the session receives from here on was decrypted.
    conn.begin_tls()
    try:
        async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
            upgraded = await loop.start_tls(
                transport, protocol, tls.server_context, server_side=True
            )
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
        maillog.rejected(
            ctx.session_id,
            ctx.peer_ip,
            "starttls",
            "TLS handshake failed",
            str(exc),
            helo=ctx.helo,
        )
        transport.abort()
        return None
    if upgraded is None:  # pragma: no cover - the peer closed during the handshake
        return None
    # RFC 3207 §4.2: forget everything learnt before TLS (the plaintext that followed
    # STARTTLS went at begin_tls: CVE-2011-0411).
    conn.tls_established()
    ctx.tls = describe(upgraded.get_extra_info("ssl_object"))
    ctx.helo = None
    ctx.auth_user = None
    log_tls(maillog, ctx)
    return upgraded
