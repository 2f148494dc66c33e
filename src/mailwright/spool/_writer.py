"""The embedded spool's ``MessageWriter``: the body in memory, or in ``tmp/`` once large.

The server calls ``write`` from the event loop with chunks of up to 64 KiB.

* While the body is at most ``INLINE_BODY_MAX`` bytes it only grows a ``bytearray``:
  no system call at all.  ``put`` then stores it *inline*, as a BLOB in the queue
  database, in the same transaction as the envelope (see ``embedded``).
* The first write that takes it past ``INLINE_BODY_MAX`` *spills* it: the writer asks
  the store to create ``tmp/<queue-id>`` (``O_EXCL``) on a file thread, so the event
  loop never waits for a file creation, and keeps appending to memory until the file
  exists; the next write moves the buffered bytes into the file, and later chunks go
  straight to it (buffered writes into the page cache; no fsync).  Only if the
  creation is slower than receiving ``SPILL_MEMORY_MAX`` bytes does a write wait for
  it, which bounds a session's memory.  The fsync happens once, at ``put``, in the
  commit (in parallel with the other spilled bodies of the batch).

``INLINE_BODY_MAX = 32 KiB``, because:

* most mail is small: notifications, transactional and personal mail without
  attachments are a few KiB to a few tens of KiB, and all of it then costs *no* file
  creation, file fsync, rename or directory fsync — the WAL fsync that commits the
  envelope makes the body durable too, shared by the whole batch;
* a session holds at most that much memory before it spills (32 MiB for 1,000
  sessions in DATA at once), and a commit batch of ``MAX_COMMIT_BATCH`` puts appends
  at most 16 MiB to the WAL;
* SQLite reads BLOBs of this size from the database at least as fast as from
  separate files ("Internal Versus External BLOBs", sqlite.org), and since they are
  written once and deleted whole, they do not fragment the database;
* bigger bodies would be written twice (WAL, then the checkpoint into the database),
  which starts to cost more than the file's own fsync saves.

States: OPEN -> QUEUED (``put`` called; the store owns the body from here) ->
COMMITTED or FAILED; OPEN -> ABORTED.  ``abort`` once ``put`` was called is a no-op,
so a session's clean-up path can never delete a message that was (or is being)
committed.  A file is only ever unlinked by the writer that created it: an ``O_EXCL``
failure (queue id collision) leaves the other writer's file alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future
from enum import Enum
from pathlib import Path
from typing import BinaryIO, NoReturn

from mailwright.fs.durable import fsync_file
from mailwright.spool._errors import spool_error
from mailwright.spool.store import SpoolError

# Bodies up to this size are kept in memory and stored in the queue database.
INLINE_BODY_MAX = 32 * 1024
# While the spill file is being created, at most this much is buffered before a
# write waits for the creation.
SPILL_MEMORY_MAX = 1024 * 1024
# Python-side buffer for writes to a spill file: a few 64 KiB chunks per write(2).
BODY_BUFFER_SIZE = 256 * 1024

# Starts creating a spill file; the future's result is the open descriptor.
FileCreator = Callable[[Path], "Future[int]"]


class WriterState(Enum):
    OPEN = "open"
    QUEUED = "queued"
    COMMITTED = "committed"
    FAILED = "failed"
    ABORTED = "aborted"


class BodyWriter:
    """A message body being received.  ``error`` set means it is unusable from the start."""

    def __init__(
        self,
        store: object,
        queue_id: str,
        tmp_dir: Path,
        create_file: FileCreator | None,
        error: SpoolError | None = None,
    ) -> None:
        self.store = store
        self.queue_id = queue_id
        self.size = 0
        self._tmp_dir = tmp_dir
        self._path: Path | None = None  # built on first use: most bodies never need it
        self.state = WriterState.OPEN if error is None else WriterState.FAILED
        self._error = error
        self._create = create_file
        self._mem: bytearray | None = bytearray() if error is None else None
        self._spill: Future[int] | None = None  # creation of the spill file, once started
        self._file: BinaryIO | None = None
        self._owns_file = False  # we created self.path: only then may we unlink it
        self._body: bytes | None = None  # the inline body, from claim() on

    @property
    def path(self) -> Path:
        """Where our body file is or would be: ``tmp/<id>``, then ``msg/<id>`` once stored."""
        if self._path is None:
            self._path = self._tmp_dir / self.queue_id
        return self._path

    @path.setter
    def path(self, value: Path) -> None:
        self._path = value

    # -- event loop side ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append body bytes.  Raises SpoolError on I/O failure (the body is then gone)."""
        if self.state is not WriterState.OPEN:
            raise self._error or SpoolError(f"{self.queue_id}: body is {self.state.value}")
        file = self._file
        if file is not None:
            try:
                file.write(data)
            except OSError as exc:
                self._fail(exc, "cannot write body")
            self.size += len(data)
            return
        mem = self._mem
        assert mem is not None
        mem += data
        self.size += len(data)
        if self._spill is not None:
            self._attach(block=len(mem) > SPILL_MEMORY_MAX)
        elif len(mem) > INLINE_BODY_MAX:
            self._start_spill()

    def abort(self) -> None:
        """Discard the body.  Idempotent; a no-op once ``put`` was called."""
        if self.state is WriterState.OPEN:
            self.state = WriterState.ABORTED
            self.discard()

    def claim(self) -> None:
        """Hand the body to the store for ``put`` (event loop side)."""
        if self.state is not WriterState.OPEN:
            raise self._error or SpoolError(f"{self.queue_id}: body is {self.state.value}")
        self.state = WriterState.QUEUED
        if self._spill is None:  # never spilled: the whole body is in memory
            assert self._mem is not None
            self._body = bytes(self._mem)
            self._mem = None

    @property
    def inline(self) -> bool:
        """True if the claimed body is stored in the database, not as a file."""
        return self._body is not None

    def body_bytes(self) -> bytes | None:
        """The stored body if it is held in memory (inline), else None (a file)."""
        return self._body

    def _start_spill(self) -> None:
        if self._create is None:
            raise SpoolError(f"{self.queue_id}: spool is closed")
        try:
            self._spill = self._create(self.path)
        except (OSError, RuntimeError) as exc:  # RuntimeError: the thread pool is shut down
            self._fail(exc, "cannot create temporary body")

    def _attach(self, *, block: bool) -> None:
        """Once the spill file exists, move the buffered bytes into it."""
        spill = self._spill
        assert spill is not None
        if not (block or spill.done()):
            return
        try:
            fd = spill.result()
        except Exception as exc:  # OSError; anything else must still become a SpoolError
            self._fail(exc, "cannot create temporary body")
        self._owns_file = True
        self._file = open(fd, "wb", buffering=BODY_BUFFER_SIZE)  # noqa: SIM115
        mem, self._mem = self._mem, None
        try:
            self._file.write(mem or b"")
        except OSError as exc:
            self._fail(exc, "cannot write body")

    # -- commit worker side --------------------------------------------------------------

    def store_file(self, target: Path) -> None:
        """Worker thread: write what is buffered, fsync, close, rename to ``target``.

        Raises ``OSError``/``SpoolError``; refuses to replace an existing ``target``
        (a queue id collision with a stored message).
        """
        spill = self._spill
        if spill is None:
            raise SpoolError(f"{self.queue_id}: body is not spilled")
        if self._file is None:
            fd = spill.result()  # waits for the creation; raises its OSError
            self._owns_file = True
            self._file = open(fd, "wb", buffering=BODY_BUFFER_SIZE)  # noqa: SIM115
        file, self._file = self._file, None
        try:
            if self._mem:
                file.write(self._mem)
                self._mem = None
            file.flush()
            fsync_file(file.fileno())
        finally:
            with contextlib.suppress(OSError):
                file.close()
        # O_EXCL made tmp/<id> ours; this makes sure msg/<id> is not someone else's.
        # Inline bodies never create files, so nothing can appear here in between.
        if os.path.lexists(target):
            raise SpoolError(f"{self.queue_id}: queue id collision, body {target} exists")
        os.rename(self.path, target)
        self.path = target

    def settle(self, ok: bool) -> None:
        """Event loop, after the commit: COMMITTED (the store owns the file now) or FAILED."""
        if ok:
            self.state = WriterState.COMMITTED
            self._owns_file = False  # a later discard() must never touch a stored body
            self._spill = None
        else:
            self.state = WriterState.FAILED

    def discard(self) -> None:
        """Drop the body: memory, and the file we created (wherever it is now).

        Errors are ignored: ``open`` removes leftovers.  A spill file still being
        created is closed and unlinked by the thread that creates it.
        """
        self._mem = None
        self._body = None
        file, self._file = self._file, None
        if file is not None:
            # Closing flushes the buffer, which may fail again (disk full): irrelevant.
            with contextlib.suppress(OSError):
                file.close()
        spill, self._spill = self._spill, None
        if spill is not None and not self._owns_file:
            path = self.path
            spill.add_done_callback(lambda done: _close_created(done, path))
        elif self._owns_file:
            self._owns_file = False
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _fail(self, exc: Exception, action: str) -> NoReturn:
        """Record the error, drop the body and raise the ``SpoolError``."""
        self._error = spool_error(f"{self.queue_id}: {action}", exc)
        self.state = WriterState.FAILED
        self.discard()
        raise self._error from exc

    def __repr__(self) -> str:
        form = "spilled" if self._spill is not None else "inline"
        return f"<BodyWriter {self.queue_id} {self.state.value} {form} {self.size} bytes>"


def _close_created(done: Future[int], path: Path) -> None:
    """Callback for an abandoned spill file: close and unlink it, if it was created."""
    if done.cancelled() or done.exception() is not None:
        return  # nothing was created (or it is another writer's: O_EXCL collision)
    with contextlib.suppress(OSError):
        os.close(done.result())
    with contextlib.suppress(OSError):
        os.unlink(path)
