"""The server's side of the delivery worker: start it, tell it about new mail, stop it.

With ``delivery.worker`` on (the default) the queue runner lives in a second process,
``runtime.worker``, as Postfix keeps its queue manager and delivery agents apart
from smtpd.  Receiving and delivering then never compete for one interpreter lock, and
the worker runs at a lower CPU priority (``delivery.worker_idle``, else
``worker_nice``; ``runtime.worker`` sets it): under a burst the server acknowledges
mail first and the backlog is delivered as soon as CPU is free.
Both processes share the spool; SQLite in WAL mode is made for that.

The worker is a ``runtime.children.Child`` on a pipe (``Channel.PIPE``): its standard
input carries, in order,

1. the pickled ``Config`` (``control.config_frame``);
2. ``control.Queued`` for each message stored (``notify``, the server's
   ``on_queued``).  The ids of one event-loop iteration go out in one write: each write
   wakes the worker, and under load dozens of sessions store a message in the same
   iteration, after the server's buffered mail log is written (``flush_log``): the
   worker attempts a fresh message once told about it (``QueueRunner.announce``), so
   its ``delivered`` line cannot come before the ``accepted`` line.  A line lost with
   a dying worker or skipped under back-pressure (``NOTIFY_BUFFER_MAX``) delays the
   message by at most ``queue.runner.FRESH_HOLD`` (its scan finds it anyway).
   ``control.Wake`` makes it scan the queue; ``control.ReopenLog`` (``reopen_log``)
   reopens its mail log, the server got SIGUSR1 or SIGHUP;
3. ``control.Stop`` and end of file: the server is stopping.  The worker lets in-flight
   deliveries finish (``QueueRunner.stop``) and exits.  The worker ignores SIGINT and
   SIGTERM, so a Ctrl-C or a service manager's SIGTERM to the whole group still ends
   in this order.

If the worker exits while the server runs, it is logged and started again after a
back-off (``children.RESTART_DELAYS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mailwright.config import Config
from mailwright.runtime import control
from mailwright.runtime.children import Channel, Child, ChildKind
from mailwright.spool.model import SpooledMessage

log = logging.getLogger(__name__)

WORKER = ChildKind("delivery worker", "mailwright.runtime.worker", Channel.PIPE)
# Queue-id lines waiting in the pipe's buffer beyond which new ones are skipped: the
# worker is behind anyway, and its next scan finds every message.
NOTIFY_BUFFER_MAX = 64 * 1024
# After Stop: how long the worker may take to finish its deliveries (the runner's own
# STOP_GRACE is 30 s), then SIGKILL; undelivered mail stays queued.
STOP_TIMEOUT = 40.0


class DeliveryWorker:
    """Runs one delivery worker process and feeds it."""

    def __init__(
        self,
        config: Config,
        *,
        announce: Callable[[str], None] = print,
        command: list[str] | None = None,
        flush_log: Callable[[], None] = lambda: None,
    ) -> None:
        self.child = Child(WORKER, config, announce=announce, command=command)
        # Writes the server's buffered mail log: called before queue ids are sent.
        self.flush_log = flush_log
        self._unsent: list[control.Message] = []  # messages of this loop iteration
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def starts(self) -> int:
        return self.child.starts

    @property
    def command(self) -> list[str]:
        return self.child.command

    async def start(self) -> None:
        """Start the worker (raises OSError if it cannot be started at all)."""
        self._loop = asyncio.get_running_loop()
        await self.child.start()

    def notify(self, message: SpooledMessage, body: bytes | None = None) -> None:
        """A message was stored: wake the worker (``SessionServices.on_queued``)."""
        self._send(control.Queued(message.queue_id))

    def notify_id(self, queue_id: str) -> None:
        """A message was stored, by this process or a session process."""
        self._send(control.Queued(queue_id))

    def wake(self) -> None:
        """Make the worker scan the queue (mail may be there that nobody told it of)."""
        self._send(control.Wake())

    def _send(self, message: control.Message) -> None:
        if self.child.stopping or self._loop is None:
            return
        if not self._unsent:
            self._loop.call_soon(self._send_unsent)
        self._unsent.append(message)

    def _send_unsent(self) -> None:
        messages, self._unsent = self._unsent, []
        stdin = self.child.stdin
        if stdin is None or self.child.stopping:
            return
        # The accepted lines before the worker may deliver (docstring); also when the
        # lines are skipped: the worker's scan finds the mail after FRESH_HOLD anyway.
        self.flush_log()
        transport = stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > NOTIFY_BUFFER_MAX:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            stdin.write(control.encode_stream(messages))

    def reopen_log(self) -> None:
        """Make the worker reopen its mail log.  Written at once, past the back-pressure
        limit: unlike a queue id, this line must not be skipped."""
        stdin = self.child.stdin
        if self.child.stopping or stdin is None:
            return
        self._send_unsent()  # the ids before it, as they were stored
        if not stdin.transport.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                stdin.write(control.encode_stream([control.ReopenLog()]))

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the worker (it finishes its deliveries and exits); wait for it."""
        await self.child.stop(timeout)
