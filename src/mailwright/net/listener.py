"""Listeners: bind, accept, enforce connection caps, and shut down in stages.

One ``Listener`` per configured (address, port, role).  All of them share one
``ConnectionLimits`` so the global and per-IP caps hold across ports.  Beyond a cap
the client gets ``421 4.7.0`` (RFC 5321 §3.8) before any session state is built.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import TYPE_CHECKING

from mailwright.config import ListenerConfig
from mailwright.smtp import Reply, codes

if TYPE_CHECKING:
    from mailwright.net.inbound import InboundSession
    from mailwright.net.services import SessionServices

log = logging.getLogger(__name__)

# The kernel's accept queue; Postfix uses 100 by default, busy MXs raise it.
LISTEN_BACKLOG = 1024
# The implicit-TLS handshake must finish within this (RFC 8314 gives no figure).
TLS_HANDSHAKE_TIMEOUT = 60.0


class ListenerError(Exception):
    """A listener cannot be started as configured."""


class ConnectionLimits:
    """Global and per-client-IP counts of open sessions."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.per_ip: Counter[str] = Counter()

    def acquire(self, ip: str) -> Reply | None:
        if self.total >= self.max_total:
            return codes.R421_TOO_MANY_CONNECTIONS
        if self.per_ip[ip] >= self.max_per_ip:
            return Reply.of(421, "4.7.0", "Too many connections from your address")
        self.total += 1
        self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]


class Listener:
    def __init__(
        self, config: ListenerConfig, services: SessionServices, limits: ConnectionLimits
    ) -> None:
        self.config = config
        self.services = services
        self.limits = limits
        self.sessions: set[InboundSession] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        from mailwright.net.inbound import InboundSession

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: InboundSession(self.services, self),
            host=self.config.address,
            port=self.config.port,
            family=socket.AF_INET6 if ":" in self.config.address else socket.AF_INET,
            reuse_address=True,
            backlog=LISTEN_BACKLOG,
            **self._tls_arguments(),
        )

    def _tls_arguments(self) -> dict[str, object]:
        if not self.config.implicit_tls:
            return {}
        tls = self.services.tls
        if tls is None:
            raise ListenerError(
                f"listener {self.config.address}:{self.config.port} (submissions) needs TLS, "
                "but TLS is disabled"
            )
        # The default context object stays the same across reloads (TlsManager
        # reloads it in place), so binding it here is safe.
        return {"ssl": tls.server_context, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT}

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that was 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def admit(self, session: InboundSession) -> Reply | None:
        refusal = self.limits.acquire(session.ctx.peer_ip)
        if refusal is None:
            self.sessions.add(session)
        else:
            self.services.maillog.rejected(
                session.ctx.session_id,
                session.ctx.peer_ip,
                "connect",
                refusal,
                "connection limit reached",
            )
        return refusal

    def release(self, session: InboundSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.limits.release(session.ctx.peer_ip)

    def stop_accepting(self) -> None:
        """Stage 1 of graceful shutdown."""
        if self._server is not None:
            self._server.close()

    async def drain(self, grace: float) -> None:
        """Stage 2 and 3: 421 to idle sessions, let messages in DATA finish within
        ``grace`` seconds, then cancel what is left (its message was never 250'd, so
        nothing acknowledged is lost)."""
        sessions = list(self.sessions)
        for session in sessions:
            session.request_shutdown()
        waits = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            for session in sessions:
                session.abort()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
