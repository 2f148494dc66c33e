"""Session processes (``smtp.processes`` > 0): the main process accepts, children serve.

The main process's side: ``SessionProcesses`` starts, feeds and supervises the session
processes (``runtime.sessions``); ``net.handover.HandoverListener`` accepts for it.

One Python process runs on one CPU core; a busy MX needs more.  As Postfix's master
hands work to many smtpd processes, the main process here:

* binds every listener and **accepts every connection itself**, so the connection caps
  (``smtp.max_connections``, ``max_connections_per_ip``) stay exact: it is the only
  process counting.  Over a cap it answers ``421 4.7.0`` itself (RFC 5321 §3.8) and
  closes; an implicit-TLS listener just closes, as in-process;
* hands each admitted connection to the session process with the fewest open sessions,
  over a ``SOCK_SEQPACKET`` socket pair (the file descriptor travels as SCM_RIGHTS);
* owns the AUTH brute-force guard: session processes report each AUTH failure and
  success, and a ban is sent to all of them, so a guesser cannot spread its tries;
* wakes the delivery worker for every queue id a session process reports;
* restarts a session process that dies (``runtime.children``, as the delivery worker),
  after releasing the caps its connections held.  What it acknowledged with 250 is in the
  spool; the worker is woken so that its next scan finds it.

The session processes (``runtime.sessions``) never see a listening socket.  Each is a
``runtime.children.Child`` on a socket pair (``Channel.SOCKET``); the messages both
ways (``Adopt`` with the descriptor, ``Stress``, ``Ban``, ``ReloadTls``, ``ReopenLog``,
``Stop``; ``Ready``, ``Queued``, ``Released``, ``AuthFailed``, ``AuthSucceeded``) are
``runtime.control``'s.

While no session process is ready (start-up, every one restarting) the listeners stop
accepting: clients wait in the kernel's accept queue instead of being refused.

Stress mode (``net.stress``) is decided here, where the connections are counted: the
session processes are told when it starts and ends, and apply its shorter timeouts
and error limit.  At the cap, this process does not know which sessions are idle (only
their process does), so a new connection is admitted over the cap and handed over with
``make_room``: its process closes its oldest idle session for it, or, having none, refuses it
with 421 4.7.0.  Either way a slot is released within moments; at most
``MAX_EVICTIONS_IN_FLIGHT`` connections are over the cap at a time.  A process with no
idle session refuses even if another one has some: sessions are spread evenly, so
that is rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from mailwright.config import Config
from mailwright.net.handover import HandoverListener
from mailwright.net.listener import ConnectionLimits
from mailwright.policy.authguard import AuthGuard
from mailwright.runtime import control
from mailwright.runtime.children import Channel, Child, ChildKind

log = logging.getLogger(__name__)

SESSION_MODULE = "mailwright.runtime.sessions"
# All session processes must report ``ready`` within this at start-up.
START_TIMEOUT = 30.0
# After the shutdown grace: how long session processes may take to exit before SIGKILL.
STOP_MARGIN = 10.0


class HandoverError(Exception):
    """The session processes cannot be started."""


@dataclass(eq=False)
class _SessionProcess:
    """One session process slot, as the main process sees it."""

    index: int
    child: Child
    ready: bool = False
    active: int = 0
    ips: Counter[str] = field(default_factory=Counter)  # open connections by client IP


def _load(slot: _SessionProcess) -> int:
    return slot.active


class SessionProcesses:
    """Starts, feeds and supervises ``smtp.processes`` session processes."""

    def __init__(
        self,
        config: Config,
        limits: ConnectionLimits,
        auth_guard: AuthGuard,
        *,
        on_queued: Callable[[str], None],
        on_lost: Callable[[], None],
        announce: Callable[[str], None] = print,
        command: list[str] | None = None,
    ) -> None:
        self.config = config
        self.limits = limits
        self.auth_guard = auth_guard
        self.on_queued = on_queued
        self.on_lost = on_lost
        self.announce = announce
        kind = ChildKind("session process", SESSION_MODULE, Channel.SOCKET)
        self.children = [self._slot(index, kind, command) for index in range(config.smtp.processes)]
        self.listeners: list[HandoverListener] = []
        self._stopping = False
        self._starting = False
        self._start_failure: str | None = None
        self._some_ready = asyncio.Event()  # a process became ready, or one failed to start
        # Stress mode is decided here (module docstring): room is made where the
        # sessions are, and the session processes learn when stress starts and ends.
        limits.make_room = self._can_make_room
        limits.on_stress = self._tell_stress

    def _slot(self, index: int, kind: ChildKind, command: list[str] | None) -> _SessionProcess:
        child = Child(
            kind,
            self.config,
            name=f"session process {index}",
            announce=self.announce,
            command=command,
        )
        slot = _SessionProcess(index, child)
        child.on_readable = lambda _child: self._on_control(slot)
        child.on_exit = lambda _child, status: self._on_exit(slot, status)
        return slot

    @property
    def command(self) -> list[str]:
        return self.children[0].child.command if self.children else []

    @property
    def starts(self) -> int:
        return sum(slot.child.starts for slot in self.children)

    @property
    def pids(self) -> list[int]:
        return [slot.child.pid for slot in self.children if slot.child.pid is not None]

    async def start(self) -> None:
        """Start every session process and wait until each is ready; HandoverError
        if one exits first (its own message is on standard error) or takes too long."""
        self._starting = True
        try:
            for slot in self.children:
                await slot.child.start()
            async with asyncio.timeout(START_TIMEOUT):
                while not all(slot.ready for slot in self.children):
                    if self._start_failure is not None:
                        raise HandoverError(self._start_failure)
                    await self._wait_change()
        except TimeoutError:
            raise HandoverError(f"session processes not ready within {START_TIMEOUT:g} s") from None
        finally:
            self._starting = False

    async def _wait_change(self) -> None:
        self._some_ready.clear()
        await self._some_ready.wait()

    # -- connections -------------------------------------------------------------------

    def _can_make_room(self) -> bool:
        """At the cap: a connection may be admitted over it if a session process can
        take it and close an idle session for it (``make_room``, module docstring)."""
        return any(slot.ready and slot.active for slot in self.children)

    def _tell_stress(self, stressed: bool) -> None:
        self.broadcast(control.Stress(stressed))

    def hand_over(
        self,
        listener_index: int,
        connections: list[tuple[socket.socket, str]],
        *,
        over_cap: Collection[socket.socket] = (),
    ) -> list[tuple[socket.socket, str]]:
        """Give admitted connections (socket, client IP) to the least busy ready
        processes, one datagram per process; return those no process took.  A
        connection handed over is closed here: the process has its own copy.  Those
        in ``over_cap`` were admitted over the cap: their process makes room."""
        ready = [slot for slot in self.children if slot.ready]
        left = connections
        while left and ready:
            batches: dict[_SessionProcess, list[tuple[socket.socket, str]]] = {}
            for conn, ip in left:
                slot = min(ready, key=_load)
                slot.active += 1  # counted now so that the batch spreads
                batches.setdefault(slot, []).append((conn, ip))
            left = []
            for slot, batch in batches.items():
                data = control.encode_batch(
                    [control.Adopt(listener_index, ip, conn in over_cap) for conn, ip in batch]
                )
                try:
                    if slot.child.control is None:
                        raise ConnectionError("gone")
                    control.send_datagram(
                        slot.child.control, data, [conn.fileno() for conn, _ in batch]
                    )
                except OSError:  # its buffer is full or it is gone: the others may take them
                    slot.active -= len(batch)
                    ready.remove(slot)
                    left.extend(batch)
                    continue
                for conn, ip in batch:
                    conn.close()
                    slot.ips[ip] += 1
        return left

    def _release(self, slot: _SessionProcess, ip: str) -> None:
        if slot.ips[ip] <= 0:
            log.warning("session process %d released %s more often than it got it", slot.index, ip)
            return
        slot.ips[ip] -= 1
        if not slot.ips[ip]:
            del slot.ips[ip]
        slot.active -= 1
        self.limits.release(ip)

    # -- the control socket --------------------------------------------------------------

    def _on_control(self, slot: _SessionProcess) -> None:
        while True:
            sock = slot.child.control
            if sock is None:
                return
            try:
                data, fds = control.receive_datagram(sock)
            except BlockingIOError:
                return
            except control.TruncatedDatagram as exc:
                log.warning("session process %d: %s", slot.index, exc)
                _close_all(exc.fds)
                continue
            except OSError:
                data, fds = b"", []
            _close_all(fds)  # none are expected this way: never leak one
            if not data:  # the process is gone; its Child cleans up after it
                slot.child.close_channel()
                slot.ready = False
                return
            messages, problems = control.unpack(data, control.TO_MAIN)
            for problem in problems:
                log.warning("session process %d sent %s", slot.index, problem)
            for message in messages:
                self._on_message(slot, message)

    def _on_message(self, slot: _SessionProcess, message: control.Message) -> None:
        match message:
            case control.Queued(queue_id):
                self.on_queued(queue_id)
            case control.Released(ip):
                self._release(slot, ip)
            case control.AuthFailed(ip):
                self.auth_guard.failure(ip)
                if self.auth_guard.banned(ip):
                    self.broadcast(control.Ban(ip, self.auth_guard.ban_time))
            case control.AuthSucceeded(ip):
                self.auth_guard.success(ip)
            case control.Ready():
                slot.ready = True
                if self.limits.stressed:
                    with contextlib.suppress(OSError):
                        slot.child.send(control.Stress(True))
                self._some_ready.set()
                for listener in self.listeners:
                    listener.resume()

    def broadcast(self, message: control.Message) -> None:
        for slot in self.children:
            if slot.ready:
                with contextlib.suppress(OSError):  # a dying child: its successor starts clean
                    slot.child.send(message)

    # -- supervision -----------------------------------------------------------------

    def _on_exit(self, slot: _SessionProcess, status: int) -> bool:
        """A session process exited (``Child.on_exit``): free what it held; restart it
        unless stopping or starting."""
        slot.ready = False
        for ip, count in list(slot.ips.items()):
            for _ in range(count):
                self.limits.release(ip)
        slot.ips.clear()
        slot.active = 0
        if self._stopping:
            return False
        if self._starting:
            self._start_failure = (
                f"session process {slot.index} exited with status {status} while starting"
            )
            self._some_ready.set()
            return False
        if not any(other.ready for other in self.children):
            for listener in self.listeners:
                listener.pause()
        self.on_lost()  # its last queue ids may not have been reported
        return True

    async def stop(self, grace: float) -> None:
        """Stage 2 and 3 of shutdown: every session process finishes within ``grace``."""
        self._stopping = True
        await asyncio.gather(*(slot.child.stop(grace + STOP_MARGIN) for slot in self.children))
        for slot in self.children:
            slot.ready = False


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
