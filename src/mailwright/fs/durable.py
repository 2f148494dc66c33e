"""Durable file writes: the one helper every durable write goes through (DESIGN principle 3).

"Durable" means the data survives a power cut once the call returns.  On POSIX that
takes three steps, and skipping any of them loses mail on some file system:

1. ``fsync`` the file, so its *contents* reach the disk (a rename alone may be
   journaled before the data blocks: the classic ext4 zero-length-file problem);
2. ``rename`` it into place, which is atomic: readers see the old name or the new one,
   never a half-written file;
3. ``fsync`` the *directory*, so the new directory entry itself is on disk
   (fsync(2): "calling fsync() on the file does not necessarily ensure that the entry
   in the directory containing the file has also reached disk").

The spool (bodies: tmp/ -> msg/) and Maildir delivery (tmp/ -> new/, as Maildir
specifies) both use these primitives.  They are deliberately plain synchronous
functions raising ``OSError``: callers on the event loop run them through
``asyncio.to_thread`` and translate errors into their own vocabulary (``SpoolError``,
a temporary ``DeliveryResult``).

On macOS ``fsync`` only hands data to the drive, whose cache may still lose it;
``F_FULLFSYNC`` is the documented way to get a real flush there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

# New spool/mailbox files are private: mail is personal data.
FILE_MODE = 0o600
DIR_MODE = 0o700
# Temporary names for write_atomic: hidden, unique, recognisable as debris.
TMP_SUFFIX = ".tmp"
_TMP_RANDOM_BYTES = 6

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_USE_FULLFSYNC = sys.platform == "darwin"


def fsync_file(fd: int) -> None:
    """Flush one open file's data and metadata to stable storage."""
    if _USE_FULLFSYNC:  # pragma: no cover - macOS only
        import fcntl

        try:
            # Typeshed declares F_FULLFSYNC for darwin only; mypy checks as Linux.
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined]
            return
        except OSError:
            pass  # not supported by this file system: fall back to fsync
    os.fsync(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory entries of ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        fsync_file(fd)
    finally:
        os.close(fd)


def create_exclusive(path: str | os.PathLike[str], mode: int = FILE_MODE) -> int:
    """Create ``path`` for writing, failing with ``FileExistsError`` if it exists.

    ``O_EXCL`` makes name collisions (two writers picking the same unique name) an
    error instead of a silent overwrite.
    """
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_durable(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int = FILE_MODE,
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Create a *new* file with ``data`` and fsync it; the directory is not fsynced.

    Use this for the first half of a tmp -> final move (then link or rename it and
    ``fsync_dir`` the final directory, as Maildir delivery does).  On
    failure the partial file is removed and the ``OSError`` re-raised.  ``owner``
    (uid, gid) hands the file over before anyone can see it under its final name;
    ``mode`` is then set exactly, whatever the umask.
    """
    fd = create_exclusive(path, mode)
    try:
        write_all(fd, data)
        if owner is not None:
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)  # after fchown, which may clear set-id bits
        fsync_file(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int = FILE_MODE,
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably (owned by ``owner``, see
    ``write_durable``).

    A temporary file in the same directory (rename is only atomic within one file
    system) is written, fsynced, renamed over ``path``, and the directory fsynced.
    After a crash ``path`` holds either the old or the new content, never a mix.
    Raises ``OSError``; the temporary file is removed on failure.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(_TMP_RANDOM_BYTES)}{TMP_SUFFIX}")
    write_durable(tmp, data, mode, owner=owner)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def ensure_dir(path: str | os.PathLike[str], mode: int = DIR_MODE) -> bool:
    """Create ``path`` (and parents) if missing; return True if anything was created.

    A newly created directory is itself a directory entry in its parent, so the parent
    is fsynced: otherwise files made durable inside it could vanish with it.
    """
    target = Path(path)
    if target.is_dir():
        return False
    missing = [target]
    while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
        missing.append(missing[-1].parent)
    target.mkdir(mode=mode, parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)
    return True
