"""Waking the queue runner from another process: a FIFO beside the queue database.

``mailwright sendmail`` and ``mailwright queue retry|release|flush`` write to the spool
from a process of their own, so the server's ``QueueRunner.offer``/``announce`` cannot
reach the runner (it lives in the delivery worker, or in the server).  Without a
wake-up the runner's next scan finds the message anyway, but only after up to
``queue.runner.MAX_IDLE_SLEEP`` seconds.  So the runner listens on
``spool/wake``, a named pipe, as Postfix's ``postdrop`` pokes the ``pickup`` service
through its ``public/pickup`` FIFO:

* the runner (``FifoWakeup.start``) creates the FIFO if needed and opens it
  read-write (``O_RDWR``: a reader that is also a writer never sees end of file when
  a writer closes, so the event loop does not spin on a closed pipe);
* a writer (``notify``) opens it ``O_WRONLY | O_NONBLOCK`` — which fails at once
  with ``ENXIO`` when no runner has it open, so a stopped server costs nothing and
  never blocks the caller — and writes one line per queue id it stored (the runner
  ``announce``\\ s them: their ``accepted`` line is in the mail log) or one empty
  line (look at the queue).  Each write is one line, far below ``PIPE_BUF``, so
  lines from concurrent writers never interleave;
* a full pipe (``EAGAIN``) means wake-ups are already waiting: nothing is lost.

Notification is an optimisation only: the queue is the spool, and a lost poke costs
a delay, never a message.  The FIFO is made with mode 0600 for the user the runner
runs as (``[process] user``), so only that user and root can poke it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

log = logging.getLogger("mailwright.spool")

WAKE_FIFO = "wake"
# Bytes read per wake-up; more waiting simply makes the fd readable again.
READ_SIZE = 4096
# A line longer than this is no queue id: dropped (a scan finds every message anyway).
MAX_LINE = 64


class WakeupSource(Protocol):
    """Where a runner learns that another process stored or rescheduled mail."""

    def start(self, on_ids: Callable[[list[str]], None]) -> None:
        """Call ``on_ids(ids)`` from the running event loop per wake-up ([]: look)."""

    def stop(self) -> None: ...


class FifoWakeup:
    """The runner's end of ``spool/wake``.  See the module docstring."""

    def __init__(self, spool_root: Path | str) -> None:
        self.path = Path(spool_root) / WAKE_FIFO
        self._fd: int | None = None
        self._partial = b""
        self._on_ids: Callable[[list[str]], None] | None = None

    def start(self, on_ids: Callable[[list[str]], None]) -> None:
        """Listen; a failure is logged and the runner's scans do the work instead."""
        if self._fd is not None:
            return
        try:
            self._fd = self._open()
        except OSError as exc:
            log.warning("cannot listen on %s (queue scans still find new mail): %s", self.path, exc)
            return
        self._on_ids = on_ids
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _open(self) -> int:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISFIFO(mode):
            os.unlink(self.path)  # not ours to keep: something else took the name
            mode = None
        if mode is None:
            with contextlib.suppress(FileExistsError):  # another runner made it meanwhile
                os.mkfifo(self.path, 0o600)
        return os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s: read failed, no longer listening: %s", self.path, exc)
            self.stop()
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._partial = b""
        ids = [line.decode("ascii", "replace") for line in lines if 0 < len(line) <= MAX_LINE]
        if self._on_ids is not None:
            self._on_ids(ids)

    def stop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)


def notify(spool_root: Path | str, queue_ids: Sequence[str] = ()) -> bool:
    """Tell a running runner about ``queue_ids`` (none: just look at the queue).

    True if a runner listens (it was told, or wake-ups were already waiting); False if
    none does or we may not write to its FIFO — then its next scan finds the mail.
    Never blocks.
    """
    path = Path(spool_root) / WAKE_FIFO
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ENXIO: no reader; ENOENT: never started; EACCES
        if exc.errno not in (errno.ENXIO, errno.ENOENT, errno.EACCES, errno.EPERM):
            log.debug("%s: %s", path, exc)
        return False
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False  # never write into a regular file that took the name
        for line in [f"{qid}\n" for qid in queue_ids] or ["\n"]:
            try:
                os.write(fd, line.encode("ascii", "replace"))
            except BlockingIOError:
                return True  # the pipe is full of wake-ups the runner has not read yet
    except OSError as exc:
        log.debug("%s: %s", path, exc)
        return False
    finally:
        os.close(fd)
    return True
