"""The main process's listening sockets when sessions run in session processes.

With ``smtp.processes`` > 0 the main process binds every listener and **accepts every
connection itself**, so the connection caps (``smtp.max_connections``,
``max_connections_per_ip``) stay exact: it is the only process counting.  Over a cap it
answers ``421 4.7.0`` itself (RFC 5321 §3.8) and closes; an implicit-TLS listener just
closes, as in-process.  Admitted connections go to a ``ConnectionTaker`` (the session
pool, ``runtime.sessionpool``), which passes them to the session processes as
SCM_RIGHTS over their control sockets (``runtime.control``).  Connections no process
could take are refused here with ``421 4.3.2``.

While no session process is ready (start-up, every one restarting) the listeners stop
accepting (``pause``): clients wait in the kernel's accept queue instead of being
refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Collection
from typing import Protocol

from mailwright.config import ListenerConfig
from mailwright.net.listener import LISTEN_BACKLOG, ConnectionLimits
from mailwright.obs.maillog import MailLog
from mailwright.smtp import Reply, codes

log = logging.getLogger(__name__)

# Connections taken from one listener per wake-up before other work gets a turn; they
# go to the session processes together (SCM_RIGHTS carries at most 253 descriptors).
ACCEPT_BATCH = 64


class ConnectionTaker(Protocol):
    """Where admitted connections go (the session pool)."""

    def hand_over(
        self,
        listener_index: int,
        connections: list[tuple[socket.socket, str]],
        *,
        over_cap: Collection[socket.socket] = (),
    ) -> list[tuple[socket.socket, str]]:
        """Take what it can of ``connections``; return those it could not take."""
        ...


class HandoverListener:
    """A listening socket of the main process: accept, count, hand over (module doc)."""

    def __init__(
        self,
        index: int,
        config: ListenerConfig,
        processes: ConnectionTaker,
        limits: ConnectionLimits,
        maillog: MailLog,
    ) -> None:
        self.index = index
        self.config = config
        self.processes = processes
        self.limits = limits
        self.maillog = maillog
        self._socket: socket.socket | None = None
        self._reading = False

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.config.address else socket.AF_INET
        sock = socket.create_server(
            (self.config.address, self.config.port), family=family, backlog=LISTEN_BACKLOG
        )
        sock.setblocking(False)
        self._socket = sock

    @property
    def port(self) -> int:
        assert self._socket is not None
        port: int = self._socket.getsockname()[1]  # getsockname() is Any
        return port

    def resume(self) -> None:
        if self._socket is not None and not self._reading:
            asyncio.get_running_loop().add_reader(self._socket.fileno(), self._on_acceptable)
            self._reading = True

    def pause(self) -> None:
        if self._socket is not None and self._reading:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._reading = False

    def stop_accepting(self) -> None:
        self.pause()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _on_acceptable(self) -> None:
        """Accept what is waiting (up to ``ACCEPT_BATCH``); hand the admitted
        connections over together, one datagram per session process."""
        sock = self._socket
        if sock is None:
            return
        admitted: list[tuple[socket.socket, str]] = []
        over_cap: set[socket.socket] = set()
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # EMFILE and friends: the next wake-up tries again
                log.warning("accept failed on %s: %s", self.config.port, exc)
                break
            ip = peer[0]
            refusal = self.limits.acquire(ip)
            if refusal is None:
                admitted.append((conn, ip))
                if self.limits.total > self.limits.max_total:  # admitted by make_room
                    over_cap.add(conn)
            else:
                self._refuse(conn, ip, refusal, "connection limit reached")
        if admitted:
            left = self.processes.hand_over(self.index, admitted, over_cap=over_cap)
            for conn, ip in left:
                self.limits.release(ip)
                self._refuse(
                    conn, ip, codes.R421_NO_SESSION_PROCESS, "no session process available"
                )

    def _refuse(self, conn: socket.socket, ip: str, refusal: Reply, reason: str) -> None:
        conn.setblocking(False)
        if not self.config.implicit_tls:  # no TLS yet, so no way to say 421
            with contextlib.suppress(OSError):
                conn.send(refusal.to_bytes())
        conn.close()
        self.maillog.rejected("-", ip, "connect", refusal, reason)
