"""The runner lock: one process at a time runs the queue runner over a spool.

Held by the process that runs the ``QueueRunner`` (the delivery worker, or the server
itself with ``delivery.worker = false``), and by the server while ``EmbeddedSpool.open``
removes the debris of interrupted writes.  Two runners on one spool would deliver
messages twice; a recovery running beside a live runner could delete the body of a
bounce that runner is storing.  The lock makes both impossible, also when a worker
outlives its server for a moment or two servers are pointed at one data folder.

Leases (``SpoolStore.claim``) already keep two runners from attempting one *queued*
message at once; the lock is still needed for what leases do not cover on one host:
the recovery in ``open`` deletes files no lease protects (a bounce's body being
stored by a live runner looks like debris), and the server hands fresh mail to its
runner without a lease (``QueueRunner.offer``, no store write before delivery), which
is only exclusive if no second runner serves the same spool.  A shared backend
(several nodes) has no local debris to remove and would lease fresh mail at ``put``.

``flock(2)`` on ``spool/runner.lock``: the kernel releases it when the holder dies, even
by SIGKILL, so a crash never leaves the spool locked.  The holder's pid is written into
the file only to name it in the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from mailwright.spool.store import SpoolError

LOCK_FILE = "runner.lock"
# How long to wait for a previous holder (a worker finishing its last deliveries).
LOCK_WAIT = 30.0
LOCK_POLL = 0.05  # seconds between attempts


class SpoolBusy(SpoolError):
    """Another process holds the runner lock."""


class RunnerLock:
    """``acquire`` blocks (call it off the event loop); ``release`` is idempotent."""

    def __init__(self, spool_root: Path) -> None:
        self.path = Path(spool_root) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = LOCK_WAIT) -> None:
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise SpoolBusy(
                        f"the spool {self.path.parent} is in use by another mailwright "
                        f"process{holder} (waited {timeout:g} s for {self.path.name})"
                    ) from None
                time.sleep(LOCK_POLL)
            except OSError as exc:
                os.close(fd)
                raise SpoolError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f" (pid {pid})"
    return ""
