"""Listeners: bind, accept, enforce connection caps, and shut down in stages.

One ``Listener`` per configured (address, port, role).  All of them share one
``ConnectionLimits`` so the global and per-IP caps hold across ports.  Beyond a cap
the client gets ``421 4.7.0`` (RFC 5321 §3.8) before any session state is built,
unless an idle session can make room for it (stress mode, ``net.stress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
from collections import Counter
from collections.abc import Callable

from mailwright.config import ListenerConfig
from mailwright.net.inbound.session import InboundSession
from mailwright.net.services import SessionServices
from mailwright.net.stress import MAX_EVICTIONS_IN_FLIGHT, STRESS_THRESHOLD
from mailwright.net.tls import TLS_HANDSHAKE_TIMEOUT
from mailwright.smtp import Reply, codes

log = logging.getLogger(__name__)

# The kernel's accept queue; Postfix uses 100 by default, busy MXs raise it.
LISTEN_BACKLOG = 1024
# After a failed accept() (e.g. EMFILE) wait this long before the next one.
ACCEPT_ERROR_PAUSE = 0.1
# The timeout watchdog runs every quarter of the shortest timeout, within these bounds.
WATCHDOG_MIN_INTERVAL = 0.05
WATCHDOG_MAX_INTERVAL = 1.0


class ListenerError(Exception):
    """A listener cannot be started as configured."""


class ConnectionLimits:
    """Global and per-client-IP counts of open sessions, and stress mode (``net.stress``)."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.stress_level = max(1, math.ceil(max_total * STRESS_THRESHOLD))
        # The listeners counted here, whose idle sessions make_room may close.
        self.listeners: list[Listener] = []
        # At the cap: close an idle session to make room for a new client; True if one
        # will be closed.  Session processes (runtime.sessionpool) replace it: the sessions
        # are theirs.
        self.make_room: Callable[[], bool] = self.close_oldest_idle
        # Told when stress mode starts (True) and ends (False); runtime.sessionpool passes it on.
        self.on_stress: Callable[[bool], None] | None = None

    @property
    def stressed(self) -> bool:
        return self.total >= self.stress_level

    def acquire(self, ip: str) -> Reply | None:
        full = self.total >= self.max_total
        if full and self.total >= self.max_total + MAX_EVICTIONS_IN_FLIGHT:
            return codes.R421_TOO_MANY_CONNECTIONS
        if self.per_ip[ip] >= self.max_per_ip:
            return codes.R421_TOO_MANY_FROM_ADDRESS
        # Checked last: closing a session for a client refused anyway would be a loss.
        if full and not self.make_room():
            return codes.R421_TOO_MANY_CONNECTIONS
        self.total += 1
        self.per_ip[ip] += 1
        if self.total == self.stress_level and self.on_stress is not None:
            self.on_stress(True)
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        if self.total == self.stress_level - 1 and self.on_stress is not None:
            self.on_stress(False)

    def close_oldest_idle(self) -> bool:
        """Close the oldest session that waits for a command before MAIL (421 4.7.0);
        False if there is none.  Only at the cap, so the scan is rare."""
        idle = [s for listener in self.listeners for s in listener.sessions if s.idle]
        if not idle:
            return False
        min(idle, key=lambda s: s.started_at).make_room()
        return True


class Listener:
    def __init__(
        self, config: ListenerConfig, services: SessionServices, limits: ConnectionLimits
    ) -> None:
        self.config = config
        self.services = services
        self.limits = limits
        limits.listeners.append(self)
        self.sessions: set[InboundSession] = set()
        self._server: asyncio.Server | None = None
        self._socket: socket.socket | None = None  # implicit TLS: our own accept loop
        self._accept_task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        hostname = services.config.smtp.hostname
        # Built once per listener, not per connection (the bench showed it).
        self.greeting = Reply.of(220, "", f"{hostname} ESMTP mailwright")

    async def start(self, *, handed: bool = False) -> None:
        """Bind and accept; or, ``handed``, only serve the connections the main process
        accepted and counted (``adopt``; ``net.handover``)."""
        loop = asyncio.get_running_loop()
        self._watchdog = loop.create_task(self._watch_timeouts())
        if handed:
            return
        family = socket.AF_INET6 if ":" in self.config.address else socket.AF_INET
        if self.config.implicit_tls:
            await self._start_implicit_tls(family)
            return
        self._server = await loop.create_server(
            lambda: InboundSession(self.services, self),
            host=self.config.address,
            port=self.config.port,
            family=family,
            reuse_address=True,
            backlog=LISTEN_BACKLOG,
        )

    async def _watch_timeouts(self) -> None:
        """One timer per listener instead of one per command: wake every session whose
        wait passed its deadline (RFC 5321 §4.5.3.2 timeouts are minutes, so checking a
        few times per timeout is precise enough)."""
        smtp = self.services.config.smtp
        shortest = min(
            smtp.command_timeout,
            smtp.idle_timeout,
            smtp.data_block_timeout,
            smtp.session_timeout,
            smtp.stress_timeout,
        )
        interval = min(WATCHDOG_MAX_INTERVAL, max(WATCHDOG_MIN_INTERVAL, shortest / 4))
        loop = asyncio.get_running_loop()
        limits = self.limits
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            # Under stress the shorter deadlines apply, also to waits begun before.
            stressed = limits.stressed
            for session in list(self.sessions):
                deadline = session.stress_deadline if stressed else session.wait_deadline
                if deadline and now >= deadline:
                    session.timed_out = True
                    session.wake()

    # -- implicit TLS (RFC 8314) ----------------------------------------------------
    #
    # ``create_server(ssl=...)`` would call our protocol only after the handshake, so
    # connections stuck before or inside it would escape the connection caps and
    # could each hold a socket for the whole handshake timeout.  Our own accept loop
    # counts a connection the moment it is accepted and releases it if the handshake
    # fails.

    async def _start_implicit_tls(self, family: socket.AddressFamily) -> None:
        tls = self.services.tls
        if tls is None:
            raise ListenerError(
                f"listener {self.config.address}:{self.config.port} (submissions) needs TLS, "
                "but TLS is disabled"
            )
        sock = socket.create_server(
            (self.config.address, self.config.port), family=family, backlog=LISTEN_BACKLOG
        )
        sock.setblocking(False)
        self._socket = sock
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                return
            except OSError as exc:  # EMFILE and friends: back off, keep serving
                log.warning("accept failed on %s: %s", self.config.port, exc)
                await asyncio.sleep(ACCEPT_ERROR_PAUSE)
                continue
            ip = peer[0]
            refusal = self.limits.acquire(ip)
            if refusal is not None:
                # No TLS yet, so no way to say 421: close (RFC 8314 §3.3 clients retry).
                self.services.maillog.rejected(
                    "-", ip, "connect", refusal, "connection limit reached (implicit TLS)"
                )
                conn.close()
                continue
            task = loop.create_task(self._handshake(conn, ip))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def adopt(self, conn: socket.socket, ip: str, *, make_room: bool = False) -> None:
        """Serve a connection the main process accepted and counted (``net.handover``);
        ``make_room``: it was admitted over the cap, so close an idle session for it,
        or refuse it if there is none."""
        if make_room and not self.limits.make_room():
            self.limits.release(ip)
            if not self.config.implicit_tls:  # no TLS yet, so no way to say 421
                with contextlib.suppress(OSError):
                    conn.send(codes.R421_TOO_MANY_CONNECTIONS.to_bytes())
            conn.close()
            self.services.maillog.rejected(
                "-", ip, "connect", codes.R421_TOO_MANY_CONNECTIONS, "connection limit reached"
            )
            return
        coro = self._handshake(conn, ip) if self.config.implicit_tls else self._adopt(conn, ip)
        task = asyncio.get_running_loop().create_task(coro)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _adopt(self, conn: socket.socket, ip: str) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: InboundSession(self.services, self, admitted_ip=ip), conn
            )
        except (OSError, ConnectionError) as exc:
            self.limits.release(ip)
            conn.close()
            log.info("connection from %s lost before its session started: %s", ip, exc)

    async def _handshake(self, conn: socket.socket, ip: str) -> None:
        tls = self.services.tls
        assert tls is not None
        loop = asyncio.get_running_loop()
        try:
            # The default context object stays the same across reloads (TlsManager
            # reloads it in place), so using it here is safe.
            await loop.connect_accepted_socket(
                lambda: InboundSession(self.services, self, admitted_ip=ip),
                conn,
                ssl=tls.server_context,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.limits.release(ip)
            conn.close()
            log.info("implicit TLS handshake with %s failed: %s", ip, exc)

    @property
    def stressed(self) -> bool:
        """Stress mode across all listeners (``ConnectionLimits``): what a session
        asks its listener (``net.inbound.session.SessionHost``)."""
        return self.limits.stressed

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that was 0)."""
        if self._socket is not None:
            bound: int = self._socket.getsockname()[1]  # getsockname() is Any
            return bound
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def admit(self, session: InboundSession, *, preadmitted: bool = False) -> Reply | None:
        refusal = None if preadmitted else self.limits.acquire(session.ctx.peer_ip)
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
        if self._accept_task is not None:
            self._accept_task.cancel()
        if self._socket is not None:
            self._socket.close()
        for task in self._handshakes:
            task.cancel()

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
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._server is not None:
            await self._server.wait_closed()
