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
* restarts a session process that dies (back-off as for the delivery worker), after
  releasing the caps its connections held.  What it acknowledged with 250 is in the
  spool; the worker is woken so that its next scan finds it.

The session processes (``runtime.sessions``) never see a listening socket.  Each
datagram on the control socket is one or more lines:

    main -> session    ``c <listener index> <client ip>``: serve a connection; one
                       such line per descriptor the datagram carries, in order
                       ``e <listener index> <client ip>``: the same, admitted over
                       the cap: close an idle session to make room, or refuse it
                       ``S 1`` / ``S 0``: stress mode starts / ends (``net.stress``)
                       ``b <client ip> <seconds>``: AUTH from that IP is banned
                       ``h``: reload the TLS certificates (SIGHUP)
                       ``o``: reopen the mail log (SIGUSR1, SIGHUP; logrotate)
                       ``x``: stop (staged, within ``smtp.shutdown_grace``)
    session -> main    ``ready``; ``q <queue id>``: stored; ``r <client ip>``: a
                       connection ended; ``f <ip>`` / ``s <ip>``: AUTH failed / succeeded

While no session process is ready (start-up, every one restarting) the listeners stop
accepting: clients wait in the kernel's accept queue instead of being refused.

Stress mode (``net.stress``) is decided here, where the connections are counted: the
session processes are told when it starts and ends, and apply its shorter timeouts
and error limit.  At the cap, this process does not know which sessions are idle (only
their process does), so a new connection is admitted over the cap and handed over with
``e``: its process closes its oldest idle session for it, or, having none, refuses it
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
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from mailwright.config import Config
from mailwright.net.handover import HandoverListener
from mailwright.net.listener import ConnectionLimits
from mailwright.policy.authguard import AuthGuard
from mailwright.runtime.children import HEALTHY_AFTER, RESTART_DELAYS, config_frame

log = logging.getLogger(__name__)

SESSION_MODULE = "mailwright.runtime.sessions"
# Largest control datagram; lines are short, a batch of queue ids fits many times.
CONTROL_DATAGRAM_MAX = 64 * 1024
# All session processes must report ``ready`` within this at start-up.
START_TIMEOUT = 30.0
# After the shutdown grace: how long session processes may take to exit before SIGKILL.
STOP_MARGIN = 10.0


class HandoverError(Exception):
    """The session processes cannot be started."""


@dataclass(eq=False)
class _Child:
    """One session process, as the main process sees it."""

    index: int
    proc: asyncio.subprocess.Process
    control: socket.socket
    ready: bool = False
    active: int = 0
    ips: Counter[str] = field(default_factory=Counter)  # open connections by client IP
    failures: int = 0  # exits in a row, for the restart back-off
    started: float = field(default_factory=time.monotonic)


def _load(child: _Child) -> int:
    return child.active


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
        self.command = command or [sys.executable, "-m", SESSION_MODULE]
        self.children: list[_Child | None] = [None] * config.smtp.processes
        self.starts = 0
        self.listeners: list[HandoverListener] = []
        self._supervisors: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._starting = False
        self._start_failure: str | None = None
        self._some_ready = asyncio.Event()  # a process became ready, or one failed to start
        # Stress mode is decided here (module docstring): room is made where the
        # sessions are, and the session processes learn when stress starts and ends.
        limits.make_room = self._can_make_room
        limits.on_stress = self._tell_stress

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.children if c is not None]

    async def start(self) -> None:
        """Start every session process and wait until each is ready; HandoverError
        if one exits first (its own message is on standard error) or takes too long."""
        self._starting = True
        try:
            for index in range(len(self.children)):
                await self._spawn(index)
            async with asyncio.timeout(START_TIMEOUT):
                while not all(c is not None and c.ready for c in self.children):
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

    async def _spawn(self, index: int, failures: int = 0) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                str(os.getpid()),
                str(theirs.fileno()),
                stdin=asyncio.subprocess.PIPE,
                stdout=None,  # diagnostics go where the server's go
                stderr=None,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        assert proc.stdin is not None
        proc.stdin.write(config_frame(self.config))
        proc.stdin.close()
        ours.setblocking(False)
        child = _Child(index, proc, ours, failures=failures)
        self.children[index] = child
        self.starts += 1
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._on_control, child)
        task = loop.create_task(self._supervise(child), name=f"session-process-{index}")
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)
        log.info("session process %d started, pid %d", index, proc.pid)

    # -- connections -------------------------------------------------------------------

    def _can_make_room(self) -> bool:
        """At the cap: a connection may be admitted over it if a session process can
        take it and close an idle session for it (``e``, module docstring)."""
        return any(c is not None and c.ready and c.active for c in self.children)

    def _tell_stress(self, stressed: bool) -> None:
        self.broadcast(b"S 1" if stressed else b"S 0")

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
        ready = [c for c in self.children if c is not None and c.ready]
        left = connections
        while left and ready:
            batches: dict[_Child, list[tuple[socket.socket, str]]] = {}
            for conn, ip in left:
                child = min(ready, key=_load)
                child.active += 1  # counted now so that the batch spreads
                batches.setdefault(child, []).append((conn, ip))
            left = []
            for child, batch in batches.items():
                lines = b"\n".join(
                    f"{'e' if conn in over_cap else 'c'} {listener_index} {ip}".encode("ascii")
                    for conn, ip in batch
                )
                try:
                    socket.send_fds(child.control, [lines], [conn.fileno() for conn, _ in batch])
                except OSError:  # its buffer is full or it is gone: the others may take them
                    child.active -= len(batch)
                    ready.remove(child)
                    left.extend(batch)
                    continue
                for conn, ip in batch:
                    conn.close()
                    child.ips[ip] += 1
        return left

    def _release(self, child: _Child, ip: str) -> None:
        if child.ips[ip] <= 0:
            log.warning("session process %d released %s more often than it got it", child.index, ip)
            return
        child.ips[ip] -= 1
        if not child.ips[ip]:
            del child.ips[ip]
        child.active -= 1
        self.limits.release(ip)

    # -- the control socket --------------------------------------------------------------

    def _on_control(self, child: _Child) -> None:
        while True:
            try:
                data = child.control.recv(CONTROL_DATAGRAM_MAX)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the process is gone; _supervise cleans up after it
                self._forget_control(child)
                return
            for line in data.split(b"\n"):
                self._on_line(child, line)

    def _on_line(self, child: _Child, line: bytes) -> None:
        kind, _, arg = line.partition(b" ")
        value = arg.decode("ascii", "replace")
        if kind == b"q":
            self.on_queued(value)
        elif kind == b"r":
            self._release(child, value)
        elif kind == b"f":
            self.auth_guard.failure(value)
            if self.auth_guard.banned(value):
                self.broadcast(f"b {value} {self.auth_guard.ban_time:g}".encode("ascii"))
        elif kind == b"s":
            self.auth_guard.success(value)
        elif kind == b"ready":
            child.ready = True
            if self.limits.stressed:
                with contextlib.suppress(OSError):
                    child.control.send(b"S 1")
            self._some_ready.set()
            for listener in self.listeners:
                listener.resume()
        elif kind:
            log.warning("session process %d sent an unknown line %r", child.index, line[:80])

    def broadcast(self, message: bytes) -> None:
        for child in self.children:
            if child is not None and child.ready:
                with contextlib.suppress(OSError):  # a dying child: its successor starts clean
                    child.control.send(message)

    def _forget_control(self, child: _Child) -> None:
        if child.control.fileno() >= 0:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(child.control.fileno())
            child.control.close()
        child.ready = False

    # -- supervision -----------------------------------------------------------------

    async def _supervise(self, child: _Child) -> None:
        status = await child.proc.wait()
        self._forget_control(child)
        for ip, count in list(child.ips.items()):
            for _ in range(count):
                self.limits.release(ip)
        child.ips.clear()
        child.active = 0
        if self._stopping:
            return
        if self._starting:
            self._start_failure = (
                f"session process {child.index} exited with status {status} while starting"
            )
            self._some_ready.set()
            return
        if not any(c is not None and c.ready for c in self.children):
            for listener in self.listeners:
                listener.pause()
        self.on_lost()  # its last queue ids may not have been reported
        failures = 0 if time.monotonic() - child.started >= HEALTHY_AFTER else child.failures
        delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
        log.error(
            "session process %d (pid %d) exited with status %d; restarting in %g s",
            child.index,
            child.proc.pid,
            status,
            delay,
        )
        self.announce(
            f"mailwright: session process {child.index} exited (status {status}), "
            f"restarting in {delay:g} s"
        )
        while True:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            failures += 1
            try:
                await self._spawn(child.index, failures)
                return
            except OSError as exc:  # fork or exec failed: try again after a longer wait
                log.error("cannot start session process %d: %s", child.index, exc)
                self.announce(f"mailwright: cannot start a session process: {exc}")
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]

    async def stop(self, grace: float) -> None:
        """Stage 2 and 3 of shutdown: every session process finishes within ``grace``."""
        self._stopping = True
        for child in self.children:
            if child is None or child.proc.returncode is not None:
                continue
            try:
                child.control.send(b"x")
            except OSError:  # not reading: closing our end says the same (end of file)
                self._forget_control(child)
        procs = [c.proc for c in self.children if c is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace + STOP_MARGIN)
            if pending:
                for proc in procs:
                    if proc.returncode is None:
                        log.error("session process pid %d did not stop; killing it", proc.pid)
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                await asyncio.wait(pending, timeout=STOP_MARGIN)
        for task in list(self._supervisors):
            task.cancel()
        for child in self.children:
            if child is not None:
                self._forget_control(child)
