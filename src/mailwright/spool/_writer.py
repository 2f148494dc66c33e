"""The embedded spool's ``MessageWriter``: a temporary body file in ``spool/tmp``.

The server calls ``write`` from the event loop with chunks of up to 64 KiB.  Those are
plain buffered writes into the page cache (fast, no fsync); the fsync happens once, in
the committer's worker thread, when the message is ``put``.

States: OPEN -> QUEUED (``put`` called; the store owns the file from here) ->
COMMITTED or FAILED; OPEN -> ABORTED.  ``abort`` once ``put`` was called is a no-op,
so a session's clean-up path can never delete a message that was (or is being)
committed.
"""

from __future__ import annotations

import contextlib
import os
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from mailwright.spool._errors import spool_error
from mailwright.spool.atomic import fsync_file
from mailwright.spool.store import SpoolError

# Python-side buffer for body writes: a few 64 KiB chunks per write(2).
BODY_BUFFER_SIZE = 256 * 1024


class WriterState(Enum):
    OPEN = "open"
    QUEUED = "queued"
    COMMITTED = "committed"
    FAILED = "failed"
    ABORTED = "aborted"


class BodyWriter:
    """A temporary body.  ``error`` set means creation failed; it is raised on use."""

    def __init__(
        self,
        store: object,
        queue_id: str,
        tmp_dir: Path,
        fd: int | None,
        error: SpoolError | None,
    ) -> None:
        self.store = store
        self.queue_id = queue_id
        self.size = 0
        self.path = tmp_dir / queue_id
        self.state = WriterState.OPEN if error is None else WriterState.FAILED
        self._error = error
        self._file: BinaryIO | None = None
        if fd is not None:
            self._file = open(fd, "wb", buffering=BODY_BUFFER_SIZE)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        """Append body bytes.  Raises SpoolError on I/O failure (the body is then gone)."""
        if self.state is not WriterState.OPEN or self._file is None:
            raise self._error or SpoolError(f"{self.queue_id}: body is {self.state.value}")
        try:
            self._file.write(data)
        except OSError as exc:
            self._fail(exc, "cannot write body")
            raise self._error from exc  # type: ignore[misc]
        self.size += len(data)

    def abort(self) -> None:
        """Discard the temporary body.  Idempotent; a no-op once ``put`` was called."""
        if self.state is WriterState.OPEN:
            self.state = WriterState.ABORTED
            self.discard()

    def claim(self) -> None:
        """Hand the body to the store for ``put`` (event loop side)."""
        if self.state is not WriterState.OPEN:
            raise self._error or SpoolError(f"{self.queue_id}: body is {self.state.value}")
        self.state = WriterState.QUEUED

    def finish(self) -> None:
        """Worker thread: flush, fsync and close the file.  Raises OSError."""
        if self._file is None:
            raise SpoolError(f"{self.queue_id}: body file is not open")
        file, self._file = self._file, None
        try:
            file.flush()
            fsync_file(file.fileno())
        finally:
            with contextlib.suppress(OSError):
                file.close()

    def discard(self) -> None:
        """Close and unlink the temporary file, ignoring errors (open() cleans up)."""
        file, self._file = self._file, None
        if file is not None:
            # Closing flushes the buffer, which may fail again (disk full): irrelevant.
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _fail(self, exc: OSError, action: str) -> None:
        self._error = spool_error(f"{self.queue_id}: {action}", exc)
        self.state = WriterState.FAILED
        self.discard()

    def __repr__(self) -> str:
        return f"<BodyWriter {self.queue_id} {self.state.value} {self.size} bytes>"
