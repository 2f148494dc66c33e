"""The delivery worker process: the queue runner, apart from the server that receives.

Started by ``runtime.workerlink.DeliveryWorker`` (through ``runtime.children``) as
``python -m mailwright.runtime.worker <server pid>``; its standard input is the pipe
described there (the pickled config, then ``runtime.control`` messages, one per line,
then end of file).  In order, the worker (``compose.run_child``, then ``run_worker``):

1. asks the kernel to kill it when the server dies (``PR_SET_PDEATHSIG``, Linux), and
   exits at once if the server is already gone;
2. reads the config, lowers its CPU priority (``delivery.worker_idle``: SCHED_IDLE, so
   it only uses CPU time that receiving leaves free; else nice ``worker_nice``); if a
   sandbox refuses that, it says so in one line and delivers at normal priority.  At
   SCHED_IDLE it takes the normal share back while mail waits (``runtime.priority``);
3. takes the spool's runner lock (``spool.runnerlock``): a worker of a previous server
   that is still finishing, or another server on the same data folder, would otherwise
   deliver the same messages;
4. opens the spool *without* recovery (the server recovered it before starting us and
   is writing to it now), builds the runner with ``compose.build_queue_runner`` — the same
   code as the in-process runner — and runs it, announcing every queue id read
   (``QueueRunner.announce``: the server's ``accepted`` line for it is in the mail
   log), waking it for ``Wake``, and reopening the mail log for ``ReopenLog``;
5. at ``Stop`` or end of file lets in-flight deliveries finish (``QueueRunner.stop``), closes the
   spool and the mail log, and exits 0.

SIGINT and SIGTERM are ignored: the server decides when delivery stops (see
``runtime.workerlink``).  SIGUSR1 and SIGHUP reopen the mail log (``obs.maillog``), as the
server's do: ``systemctl kill -s USR1`` signals every process of the unit.

Exit status 1 with a one-line message on standard error when the pipe is broken or
the spool cannot be opened; the server restarts the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from mailwright.config import Config
from mailwright.runtime import control, priority
from mailwright.runtime.compose import (
    ChildError,
    Foundation,
    build_directory,
    build_queue_runner,
    run_child,
)
from mailwright.spool.store import SpoolError

log = logging.getLogger(__name__)

USAGE = "python -m mailwright.runtime.worker <server pid>"


class WorkerError(ChildError):
    """The worker cannot run; the message is printed as one line."""


class _Wakeups(asyncio.Protocol):
    """Reads the pipe's messages (``control.TO_WORKER``): a queue id is announced to the
    runner, ``Wake`` wakes it, ``ReopenLog`` reopens the mail log; ``Stop`` or end of
    file stops it."""

    def __init__(
        self,
        announce: Callable[[str], None],
        kick: Callable[[], None],
        reopen: Callable[[], None],
        eof: asyncio.Event,
    ) -> None:
        self._announce = announce
        self._kick = kick
        self._reopen = reopen
        self._eof = eof
        self._decoder = control.StreamDecoder(control.TO_WORKER)

    def data_received(self, data: bytes) -> None:
        messages, problems = self._decoder.feed(data)
        for problem in problems:
            log.warning("control pipe: %s", problem)
        for message in messages:
            match message:
                case control.Queued(queue_id):
                    self._announce(queue_id)
                case control.ReopenLog():
                    self._reopen()
                case control.Stop():
                    self._eof.set()
        self._kick()  # sets an event: one queue scan however many lines arrived

    def eof_received(self) -> bool:
        self._eof.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof.set()


async def run_worker(config: Config) -> None:
    base = Foundation(config, recover=False, runner_lock=True)
    try:
        maillog = await base.open()
    except SpoolError as exc:
        await base.close()
        raise WorkerError(str(exc)) from exc
    try:
        runner, _agent = build_queue_runner(config, base.spool, maillog, build_directory(config))
        base.reopen_on_signals()
        base.start_flusher()
        loop = asyncio.get_running_loop()
        # No agent.ensure_all() here: the server created every Maildir before it
        # started the worker (a problem is a start-up error there), and a worker that
        # is restarted after a Maildir broke must not exit on it, over and over,
        # delivering nothing: each delivery creates its Maildir lazily, and a broken
        # one defers that mailbox only.
        eof = asyncio.Event()
        # Kept referenced for the whole run: uvloop does not hold on to the file object,
        # and a collected file object would close fd 0 under the transport.
        pipe = open(control.STDIN_FD, "rb", buffering=0, closefd=False)  # noqa: SIM115
        wakeups = _Wakeups(runner.announce, runner.kick, maillog.reopen, eof)
        transport, _ = await loop.connect_read_pipe(lambda: wakeups, pipe)
        runner_task = loop.create_task(runner.run(), name="queue-runner")
        boost_task = None
        if priority.running_idle():
            governor = priority.WorkerPriority(runner.oldest_wait)
            boost_task = loop.create_task(governor.run(), name="worker-priority")
        await eof.wait()
        transport.close()
        if boost_task is not None:  # the priority stays as it is for the last deliveries
            boost_task.cancel()
        await runner.stop()
        await asyncio.gather(runner_task, *filter(None, [boost_task]), return_exceptions=True)
        pipe.close()
    finally:
        await base.close()


def lower_priority(config: Config) -> str | None:
    """``delivery.worker_idle`` / ``worker_nice``, before any thread exists: Linux
    applies both per thread, and threads inherit them from the thread that made them.

    A refusal is not fatal: a sandbox (a systemd unit's ``SystemCallFilter=`` with
    ``SystemCallErrorNumber=EPERM``, a container's seccomp profile) may refuse
    ``sched_setscheduler`` or ``setpriority`` with EPERM or ENOSYS, and delivering at
    normal priority beats not delivering.  Returns the one line saying what was
    refused and what the worker does instead, or None when all went as configured."""
    idle_refused = ""
    if config.delivery.worker_idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return None
        except OSError as exc:  # not permitted: fall back to nice
            idle_refused = f"SCHED_IDLE: {_reason(exc)}"
    nice = config.delivery.worker_nice
    try:
        os.nice(nice)
    except OSError as exc:
        refused = "; ".join(filter(None, [idle_refused, f"nice {nice}: {_reason(exc)}"]))
        return f"cannot lower its CPU priority ({refused}); delivering at normal priority"
    if idle_refused:
        return f"cannot run at idle CPU priority ({idle_refused}); running at nice {nice}"
    return None


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _start(config: Config, numbers: list[int]) -> Coroutine[Any, Any, None]:
    refused = lower_priority(config)
    if refused is not None:
        print(f"mailwright: delivery worker: {refused}", file=sys.stderr, flush=True)
    return run_worker(config)


def main(argv: list[str] | None = None) -> None:
    run_child("delivery worker", sys.argv[1:] if argv is None else argv, USAGE, 1, _start)


if __name__ == "__main__":
    main()
