"""The server's side of the delivery worker: start it, tell it about new mail, restart it.

With ``delivery.worker`` on (the default) the queue runner lives in a second process,
``mailwright.runtime.worker``, as Postfix keeps its queue manager and delivery agents apart
from smtpd.  Receiving and delivering then never compete for one interpreter lock, and
the worker runs at a lower CPU priority (``delivery.worker_idle``, else
``worker_nice``; ``runtime.worker`` sets it): under a burst the server acknowledges mail
first and the backlog is delivered as soon as CPU is free.
Both processes share the spool; SQLite in WAL mode is made for that.

The pipe to the worker's standard input carries, in order (``runtime.worker`` reads it):

1. ``CONFIG_HEADER``-framed pickled ``Config``: the worker runs exactly the server's
   validated configuration, with no second parse that could disagree.  Pickle is safe
   here: the bytes come from this process over a private pipe;
2. one queue id per line for each message stored (``notify``, the server's
   ``on_queued``).  The ids of one event-loop iteration go out in one write: each write
   wakes the worker, and under load dozens of sessions store a message in the same
   iteration, after the server's buffered mail log is written (``flush_log``): the
   worker attempts a fresh message once told about it (``QueueRunner.announce``), so
   its ``delivered`` line cannot come before the ``accepted`` line.  A line lost with
   a dying worker or skipped under back-pressure (``NOTIFY_BUFFER_MAX``) delays the
   message by at most ``queue.runner.FRESH_HOLD`` (its scan finds it anyway).
   Among the ids, ``REOPEN_LINE`` (``reopen_log``): reopen the mail log, the server
   got SIGUSR1 or SIGHUP (a line, not a signal: a worker still starting up would die
   of a signal it does not handle yet);
3. end of file: the server is stopping.  The worker lets in-flight deliveries finish
   (``QueueRunner.stop``) and exits.  The worker ignores SIGINT and SIGTERM, so a Ctrl-C
   or a service manager's SIGTERM to the whole group still ends in this order.

If the worker exits while the server runs, it is logged and started again after a
back-off (``RESTART_DELAYS``).  If the server dies, even by SIGKILL, the kernel kills
the worker too (``PR_SET_PDEATHSIG``, set by the worker), as if delivery had run
in-process: acknowledged mail is in the spool and is delivered after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import sys
import time
from collections.abc import Callable

from mailwright.config import Config
from mailwright.spool.model import SpooledMessage

log = logging.getLogger(__name__)

# The config frame: an 8-byte big-endian length, then that many bytes of pickle.
CONFIG_HEADER = struct.Struct(">Q")
WORKER_MODULE = "mailwright.runtime.worker"
# The pipe line that makes the worker reopen its mail log (queue ids are [0-9A-Z]).
REOPEN_LINE = b"reopen"
# Queue-id lines waiting in the pipe's buffer beyond which new ones are skipped: the
# worker is behind anyway, and its next scan finds every message.
NOTIFY_BUFFER_MAX = 64 * 1024
# Seconds before each restart of a worker that keeps exiting; the last one repeats.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A worker that ran this long is healthy again: the next restart starts at the first delay.
HEALTHY_AFTER = 60.0
# After the pipe is closed: how long the worker may take to finish its deliveries
# (the runner's own STOP_GRACE is 30 s), then SIGKILL; undelivered mail stays queued.
STOP_TIMEOUT = 40.0


def config_frame(config: Config) -> bytes:
    data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    return CONFIG_HEADER.pack(len(data)) + data


class DeliveryWorker:
    """Runs and supervises one delivery worker process."""

    def __init__(
        self,
        config: Config,
        *,
        announce: Callable[[str], None] = print,
        command: list[str] | None = None,
        flush_log: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.announce = announce
        # Writes the server's buffered mail log: called before queue ids are sent.
        self.flush_log = flush_log
        self.command = command or [sys.executable, "-m", WORKER_MODULE]
        self.starts = 0  # processes started (restarts included), for tests and metrics
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsent: list[bytes] = []  # queue-id lines of this loop iteration

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the worker (raises OSError if it cannot be started at all)."""
        self._loop = asyncio.get_running_loop()
        await self._spawn()
        self._monitor = asyncio.create_task(self._supervise(), name="delivery-worker")

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            # The worker's diagnostics go where the server's go.
            stdout=None,
            stderr=None,
        )
        assert proc.stdin is not None
        proc.stdin.write(config_frame(self.config))
        self._proc = proc
        self.starts += 1
        log.info("delivery worker started, pid %d", proc.pid)

    def notify(self, message: SpooledMessage, body: bytes | None = None) -> None:
        """A message was stored: wake the worker (``SessionServices.on_queued``)."""
        self.notify_id(message.queue_id)

    def notify_id(self, queue_id: str) -> None:
        """A message was stored, by this process or a session process."""
        self._send(queue_id.encode("ascii") + b"\n")

    def wake(self) -> None:
        """Make the worker scan the queue (mail may be there that nobody told it of)."""
        self._send(b"\n")

    def _send(self, line: bytes) -> None:
        if self._stopping or self._loop is None:
            return
        if not self._unsent:
            self._loop.call_soon(self._send_unsent)
        self._unsent.append(line)

    def _send_unsent(self) -> None:
        lines, self._unsent = self._unsent, []
        proc = self._proc
        if proc is None or proc.stdin is None or self._stopping:
            return
        # The accepted lines before the worker may deliver (docstring); also when the
        # lines are skipped: the worker's scan finds the mail after FRESH_HOLD anyway.
        self.flush_log()
        transport = proc.stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > NOTIFY_BUFFER_MAX:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(b"".join(lines))

    def reopen_log(self) -> None:
        """Make the worker reopen its mail log.  Written at once, past the back-pressure
        limit: unlike a queue id, this line must not be skipped."""
        proc = self._proc
        if self._stopping or proc is None or proc.stdin is None:
            return
        self._send_unsent()  # the ids before it, as they were stored
        if not proc.stdin.transport.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.write(REOPEN_LINE + b"\n")

    async def _supervise(self) -> None:
        failures = 0
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            status = await proc.wait()
            if self._stopping:
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                failures = 0
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            log.error(
                "delivery worker pid %d exited with status %d; restarting in %g s",
                proc.pid,
                status,
                delay,
            )
            self.announce(
                f"mailwright: delivery worker exited (status {status}), restarting in {delay:g} s"
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn()
            except OSError as exc:
                log.error("cannot start the delivery worker: %s", exc)
                self._proc = proc  # wait() returns at once: the next delay follows

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close the pipe (the worker finishes its deliveries and exits); wait for it."""
        self._stopping = True
        proc = self._proc
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            log.error("delivery worker pid %d did not stop in %g s; killing it", proc.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
