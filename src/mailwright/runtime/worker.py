"""The delivery worker process: the queue runner, apart from the server that receives.

Started by ``mailwright.runtime.children.DeliveryWorker`` as ``python -m mailwright.runtime.worker
<server pid>``; its standard input is the pipe described there (the pickled config,
then one queue id per line, then end of file).  In order, the worker:

1. asks the kernel to kill it when the server dies (``PR_SET_PDEATHSIG``, Linux), and
   exits at once if the server is already gone;
2. reads the config, lowers its CPU priority (``delivery.worker_idle``: SCHED_IDLE, so
   it only uses CPU time that receiving leaves free; else nice ``worker_nice``); if a
   sandbox refuses that, it says so in one line and delivers at normal priority;
3. takes the spool's runner lock (``spool.runnerlock``): a worker of a previous server
   that is still finishing, or another server on the same data folder, would otherwise
   deliver the same messages;
4. opens the spool *without* recovery (the server recovered it before starting us and
   is writing to it now), builds the runner with ``compose.build_queue_runner`` — the same
   code as the in-process runner — and runs it, announcing every queue id read
   (``QueueRunner.announce``: the server's ``accepted`` line for it is in the mail
   log), waking it for an empty line, and reopening the mail log for ``reopen``;
5. at end of file lets in-flight deliveries finish (``QueueRunner.stop``), closes the
   spool and the mail log, and exits 0.

SIGINT and SIGTERM are ignored: the server decides when delivery stops (see
``runtime.children``).  SIGUSR1 and SIGHUP reopen the mail log (``obs.maillog``), as the
server's do: ``systemctl kill -s USR1`` signals every process of the unit.

Exit status 1 with a one-line message on standard error when the pipe is broken or
the spool cannot be opened; the server restarts the worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import sys
from collections.abc import Callable

from mailwright.config import Config
from mailwright.runtime.children import CONFIG_HEADER, REOPEN_LINE

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STDIN_FD = 0
# Signals that make a process reopen its mail log (SIGHUP: the server also reloads
# its certificates); ignored until the log exists, so an early one does not kill us.
REOPEN_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
# A partial line longer than this is no queue id: it is dropped (the runner's scans
# find every message anyway).
MAX_PIPE_LINE = 256


class WorkerError(Exception):
    """The worker cannot run; the message is printed as one line."""


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the server dies, like an in-process runner would."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the server died before prctl took effect
        raise SystemExit(0)


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd`` with os.read: a buffered reader could take bytes of
    the queue-id lines that follow, which the event loop reads from the same fd."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise WorkerError("the server closed the pipe before sending the configuration")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_config(fd: int = STDIN_FD) -> Config:
    (length,) = CONFIG_HEADER.unpack(read_exactly(fd, CONFIG_HEADER.size))
    config = pickle.loads(read_exactly(fd, length))
    if not isinstance(config, Config):
        raise WorkerError(f"expected a Config on the pipe, got {type(config).__name__}")
    return config


class _Wakeups(asyncio.Protocol):
    """Reads the pipe's lines: a queue id is announced to the runner, an empty line
    wakes it, ``REOPEN_LINE`` reopens the mail log; end of file stops it."""

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
        self._partial = b""  # a line cut by the pipe's read size

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_PIPE_LINE:
            self._partial = b""
        for line in lines:
            if line == REOPEN_LINE:
                self._reopen()
            elif line:
                self._announce(line.decode("ascii", "replace"))
        self._kick()  # sets an event: one queue scan however many lines arrived

    def eof_received(self) -> bool:
        self._eof.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof.set()


async def run_worker(config: Config) -> None:
    # Imported here: the composition root pulls in the whole server, which the
    # checks before the event loop do not need.
    from mailwright.obs.debuglog import setup_debug_log
    from mailwright.obs.maillog import MailLog
    from mailwright.runtime.compose import build_directory, build_queue_runner, flush_periodically
    from mailwright.spool.embedded import EmbeddedSpool
    from mailwright.spool.runnerlock import RunnerLock
    from mailwright.spool.store import SpoolError

    setup_debug_log(config.log)
    spool = EmbeddedSpool(config.data_dir, recover=False)
    lock = RunnerLock(spool.root)
    try:
        await asyncio.to_thread(lock.acquire)
        await spool.open()
    except SpoolError as exc:
        lock.release()
        raise WorkerError(str(exc)) from exc
    maillog = MailLog.from_config(config.log, config.data_dir)
    runner, _agent = build_queue_runner(config, spool, maillog, build_directory(config))
    loop = asyncio.get_running_loop()
    for sig in REOPEN_SIGNALS:
        loop.add_signal_handler(sig, maillog.reopen)
    flusher = None
    if maillog.buffered:
        flusher = loop.create_task(flush_periodically(maillog, config.log.flush_interval))
    try:
        # No agent.ensure_all() here: the server created every Maildir before it
        # started the worker (a problem is a start-up error there), and a worker that
        # is restarted after a Maildir broke must not exit on it, over and over,
        # delivering nothing: each delivery creates its Maildir lazily, and a broken
        # one defers that mailbox only.
        eof = asyncio.Event()
        # Kept referenced for the whole run: uvloop does not hold on to the file object,
        # and a collected file object would close fd 0 under the transport.
        pipe = open(STDIN_FD, "rb", buffering=0, closefd=False)  # noqa: SIM115
        wakeups = _Wakeups(runner.announce, runner.kick, maillog.reopen, eof)
        transport, _ = await loop.connect_read_pipe(lambda: wakeups, pipe)
        runner_task = loop.create_task(runner.run(), name="queue-runner")
        await eof.wait()
        transport.close()
        await runner.stop()
        await asyncio.gather(runner_task, return_exceptions=True)
        pipe.close()
    finally:
        for sig in REOPEN_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        if flusher is not None:
            flusher.cancel()
        await spool.close()
        maillog.close()
        lock.release()


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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for sig in (signal.SIGINT, signal.SIGTERM, *REOPEN_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    try:
        if len(args) != 1 or not args[0].isdigit():
            raise WorkerError("usage: python -m mailwright.runtime.worker <server pid>")
        die_with_parent(int(args[0]))
        config = read_config()
        refused = lower_priority(config)
        if refused is not None:
            print(f"mailwright: delivery worker: {refused}", file=sys.stderr, flush=True)
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
            asyncio.run(run_worker(config))
        else:
            uvloop.run(run_worker(config))
    except (WorkerError, OSError, pickle.UnpicklingError, EOFError) as exc:
        print(f"mailwright: delivery worker: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
