"""The one child supervisor: spawn a child process kind, restart it, stop it in order.

Every child of the main process — the delivery worker (``runtime.workerlink``) and
each session process (``runtime.sessionpool``) — is a ``Child``: started as ``python
-m <kind's module> <server pid> [<control fd>]`` with the main process's validated
config on its standard input (``control.config_frame``), and given its control channel
(``runtime.control``):

* ``Channel.PIPE``: the child's standard input stays open and carries the messages
  (``Child.stdin``); closing it is end of file, which the child takes as ``Stop``;
* ``Channel.SOCKET``: a ``SOCK_SEQPACKET`` socket pair, the child's end passed as an
  inherited descriptor; standard input is closed after the config.  ``Child`` reads
  the main process's end with ``on_readable`` and closes it when the child is gone.

If a child exits while the main process runs, ``on_exit`` cleans up after it (and may
say not to restart, e.g. while starting), the exit is logged and announced, and it is
started again after a back-off (``RESTART_DELAYS``; a child that ran ``HEALTHY_AFTER``
starts again at the first delay), with further tries if starting fails.  ``stop``
sends ``Stop`` and waits (the child finishes its work: sessions in DATA, deliveries in
flight), then SIGKILLs it past its timeout.  If the main process dies, even by
SIGKILL, the kernel kills every child too (``PR_SET_PDEATHSIG``, set by the child in
``compose.run_child``): acknowledged mail is in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.config import Config
from mailwright.runtime import control

log = logging.getLogger(__name__)

# Seconds before each restart of a child that keeps exiting; the last one repeats.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A child that ran this long is healthy again: the next restart starts at the first delay.
HEALTHY_AFTER = 60.0


class Channel(enum.Enum):
    PIPE = "pipe"  # the child's standard input (a stream)
    SOCKET = "socket"  # a SOCK_SEQPACKET socket pair (datagrams, descriptors)


@dataclass(frozen=True)
class ChildKind:
    """What differs between child process kinds, besides their callbacks."""

    label: str  # "delivery worker", "session process": in log lines and errors
    module: str  # run as ``python -m <module>``
    channel: Channel


def _no_exit_hook(child: Child, status: int) -> bool:
    return True


class Child:
    """One child process slot, supervised: a restart takes the same slot."""

    def __init__(
        self,
        kind: ChildKind,
        config: Config,
        *,
        name: str | None = None,
        announce: Callable[[str], None] = print,
        command: list[str] | None = None,
        on_readable: Callable[[Child], None] | None = None,
        on_spawned: Callable[[Child], None] | None = None,
        on_exit: Callable[[Child, int], bool] = _no_exit_hook,
    ) -> None:
        self.kind = kind
        self.config = config
        self.name = name or kind.label  # "session process 0"
        self.announce = announce
        self.command = command or [sys.executable, "-m", kind.module]
        # Channel.SOCKET: called when the control socket is readable.
        self.on_readable = on_readable
        # After each start (restarts included), before any message is read.
        self.on_spawned = on_spawned
        # The process exited (also while stopping: clean up); False: do not restart.
        self.on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None  # Channel.SOCKET: our end
        self.starts = 0  # processes started (restarts included), for tests and metrics
        self.failures = 0  # exits in a row, for the restart back-off
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        """Channel.PIPE: the writer of the child's standard input (None once stopped)."""
        return self.proc.stdin if self.proc is not None else None

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        """Start the child (raises OSError if it cannot be started at all) and watch it."""
        await self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=self.name)

    async def _spawn(self) -> None:
        args = [*self.command, str(os.getpid())]
        pass_fds: tuple[int, ...] = ()
        ours = theirs = None
        if self.kind.channel is Channel.SOCKET:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            args.append(str(theirs.fileno()))
            pass_fds = (theirs.fileno(),)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                # The child's diagnostics go where the server's go.
                stdout=None,
                stderr=None,
                pass_fds=pass_fds,
            )
        except BaseException:
            if ours is not None:
                ours.close()
            raise
        finally:
            if theirs is not None:
                theirs.close()
        assert proc.stdin is not None
        proc.stdin.write(control.config_frame(self.config))
        if ours is not None:
            proc.stdin.close()
            ours.setblocking(False)
            self.control = ours
            if self.on_readable is not None:
                asyncio.get_running_loop().add_reader(ours.fileno(), self.on_readable, self)
        self.proc = proc
        self.started = time.monotonic()
        self.starts += 1
        log.info("%s started, pid %d", self.name, proc.pid)
        if self.on_spawned is not None:
            self.on_spawned(self)

    def send(self, message: control.Message) -> None:
        """Channel.SOCKET: one message as one datagram (OSError if it cannot be sent)."""
        if self.control is None:
            raise ConnectionError(f"{self.name} has no control channel")
        control.send_datagram(self.control, message.encode())

    def close_channel(self) -> None:
        """Channel.SOCKET: stop reading and close our end (idempotent)."""
        sock = self.control
        if sock is None:
            return
        self.control = None
        if sock.fileno() >= 0:
            if self.on_readable is not None:
                with contextlib.suppress(ValueError, OSError, RuntimeError):
                    asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    async def _supervise(self) -> None:
        """The one restart loop (module docstring)."""
        while True:
            proc = self.proc
            assert proc is not None
            status = await proc.wait()
            self.close_channel()
            if not self.on_exit(self, status) or self._stopping:
                return
            if time.monotonic() - self.started >= HEALTHY_AFTER:
                self.failures = 0
            delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
            log.error(
                "%s (pid %d) exited with status %d; restarting in %g s",
                self.name,
                proc.pid,
                status,
                delay,
            )
            self.announce(
                f"mailwright: {self.name} exited (status {status}), restarting in {delay:g} s"
            )
            while True:
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                self.failures += 1
                try:
                    await self._spawn()
                    break
                except OSError as exc:  # fork or exec failed: try again after a longer wait
                    log.error("cannot start %s: %s", self.name, exc)
                    self.announce(f"mailwright: cannot start a {self.kind.label}: {exc}")
                delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]

    async def stop(self, timeout: float) -> None:
        """Tell the child to stop (``Stop``, then end of file) and wait ``timeout``
        seconds for it to finish its work; then SIGKILL it."""
        self._stopping = True
        if self._task is not None:  # no restart from here on
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        proc = self.proc
        if proc is not None and proc.returncode is None:
            self._say_stop(proc)
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                log.error(
                    "%s (pid %d) did not stop in %g s; killing it", self.name, proc.pid, timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.close_channel()

    def _say_stop(self, proc: asyncio.subprocess.Process) -> None:
        if self.kind.channel is Channel.SOCKET:
            try:
                self.send(control.Stop())
            except OSError:  # not reading: closing our end says the same (end of file)
                self.close_channel()
        elif proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.write(control.encode_stream([control.Stop()]))
            proc.stdin.close()
