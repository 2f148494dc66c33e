"""The STARTTLS handshake of an inbound session (RFC 3207), after its 220.

Kept apart from the session loop in ``session``, which calls ``upgrade_to_tls`` when
the core enters its TLS state.  It works on the session's transport and core, as the
loop does: flush what is owed, resume reading, run the handshake under a timeout, then
make the core and the policy context forget everything learnt before TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

from mailwright.net.inbound.sessionlog import log_tls
from mailwright.net.tls import describe

if TYPE_CHECKING:
    from mailwright.net.inbound.session import InboundSession

# RFC 5321 §4.5.3.2 has no TLS figure; Postfix's smtpd_starttls_timeout is 300 s, a
# minute is plenty on today's links and frees the slot sooner.
TLS_HANDSHAKE_TIMEOUT = 60.0


async def upgrade_to_tls(session: InboundSession) -> bool:
    """Run the handshake (RFC 3207 §4); False when it failed and the session is over."""
    tls = session.services.tls
    transport = session.transport
    assert tls is not None and transport is not None
    session.flush()
    session.resume_reading()
    loop = asyncio.get_running_loop()
    # The boundary between plaintext and TLS: start_tls takes the transport over
    # before it first yields, so everything buffered until here is plaintext and
    # everything the session receives from here on was decrypted.
    session.conn.begin_tls()
    try:
        async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
            upgraded = await loop.start_tls(
                transport, session, tls.server_context, server_side=True
            )
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
        session.reject_reason = f"TLS handshake failed: {exc}"
        session.services.maillog.rejected(
            session.ctx.session_id,
            session.ctx.peer_ip,
            "starttls",
            "TLS handshake failed",
            str(exc),
            helo=session.ctx.helo,
        )
        session.lose_transport(abort=True)
        return False
    if upgraded is None:  # pragma: no cover - the peer closed during the handshake
        session.lose_transport(abort=False)
        return False
    session.transport = cast(asyncio.Transport, upgraded)
    # RFC 3207 §4.2: forget everything learnt before TLS (the plaintext that followed
    # STARTTLS went at begin_tls: CVE-2011-0411).
    session.conn.tls_established()
    session.ctx.tls = describe(upgraded.get_extra_info("ssl_object"))
    session.ctx.helo = None
    session.ctx.auth_user = None
    log_tls(session.services.maillog, session.ctx)
    return True
