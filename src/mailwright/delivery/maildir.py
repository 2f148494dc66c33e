"""Maildir delivery, as specified at https://cr.yp.to/proto/maildir.html.

A delivery creates a uniquely named file in ``tmp/``, writes and fsyncs it, hard-links
it into ``new/`` (falling back to ``rename`` on file systems without hard links),
removes the ``tmp/`` name and fsyncs ``new/``.  Only then does ``deliver`` return, so
the delivery agent reports success only for mail that survives a crash (DESIGN
principle 3).  The fsyncs go through ``mailwright.spool.atomic``, the one helper for
durable writes.

File names follow the modern form of the spec, as Dovecot writes them::

    <seconds>.M<usec>P<pid>Q<counter>R<random hex>.<hostname>,S=<size>

``Q`` counts deliveries in this process, ``R`` adds 64 random bits, so names stay
unique across threads, processes, restarts and clock steps.  In the host name "/" and
":" are replaced by ``\\057`` and ``\\072`` (the spec and Dovecot do so: ":" starts the
info part of a name in ``cur/``).  ``,S=<size>`` is Dovecot's size field, which lets it
skip a stat(); mutt and Python's ``mailbox`` ignore it.

Directories are created with mode 0o700 and messages 0o600: mail is private.  The
functions here block; the agent runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from mailwright.spool.atomic import DIR_MODE, FILE_MODE, ensure_dir, fsync_dir, write_durable

MAILDIR_SUBDIRS = ("tmp", "new", "cur")
RANDOM_BYTES = 8  # 64 bits in the R field
SIZE_FIELD = ",S="  # Dovecot: physical size of the file
# link(2) errors meaning "this file system has no hard links": fall back to rename(2).
_NO_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
)

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def maildir_path(mail_root: Path, domain: str, mailbox: str) -> Path:
    """The one place that maps a mailbox to its folder: ``<mail_root>/<domain>/<mailbox>``.

    ``mail_root`` is ``<data_dir>/mail``.  Both parts are checked so that no name can
    escape the mail root (``..``, a slash or a NUL byte), whatever the config allowed.
    """
    for part in (domain, mailbox):
        if part in ("", ".", "..") or "/" in part or "\0" in part or os.sep in part:
            raise ValueError(f"{part!r} cannot be used as a Maildir path component")
    return mail_root / domain / mailbox


def safe_hostname(hostname: str) -> str:
    """The host name as the Maildir spec wants it in a file name."""
    return hostname.replace("/", "\\057").replace(":", "\\072")


def unique_name(hostname: str, size: int, now: float | None = None) -> str:
    """A new ``<time>.M<usec>P<pid>Q<n>R<hex>.<host>,S=<size>`` file name."""
    now = time.time() if now is None else now
    seconds = int(now)
    usec = int((now - seconds) * 1_000_000)
    with _counter_lock:
        count = next(_counter)
    rand = secrets.token_hex(RANDOM_BYTES)
    return (
        f"{seconds}.M{usec}P{os.getpid()}Q{count}R{rand}.{safe_hostname(hostname)}"
        f"{SIZE_FIELD}{size}"
    )


class Maildir:
    """One Maildir folder (``root`` holds ``tmp``, ``new`` and ``cur``)."""

    def __init__(self, root: Path, hostname: str | None = None) -> None:
        self.root = Path(root)
        self.hostname = hostname or socket.gethostname()

    def ensure(self) -> None:
        """Create the folder and its ``cur``/``new``/``tmp`` (mode 0o700) if missing."""
        # ensure_dir fsyncs the parent of every folder it creates: a message made
        # durable in new/ is only safe if new/ itself is recorded in its parent.
        ensure_dir(self.root, DIR_MODE)
        for sub in MAILDIR_SUBDIRS:
            ensure_dir(self.root / sub, DIR_MODE)

    def deliver(self, data: bytes) -> str:
        """Store ``data`` durably in ``new/`` and return the file name.

        Raises OSError (ENOSPC, EDQUOT, EIO, EACCES...) on failure, after removing
        what it wrote: a failed delivery leaves nothing in ``tmp/`` and nothing in
        ``new/`` (the caller will retry, and a retry must not create a duplicate).
        """
        name = unique_name(self.hostname, len(data))
        tmp_path = self.root / "tmp" / name
        new_path = self.root / "new" / name
        # O_EXCL create, write, fsync; removes the partial file itself on failure.
        write_durable(tmp_path, data, FILE_MODE)
        linked = False
        try:
            try:
                os.link(tmp_path, new_path)
                linked = True
                os.unlink(tmp_path)
            except OSError as exc:
                if linked or exc.errno not in _NO_LINK_ERRNOS:
                    raise
                os.rename(tmp_path, new_path)
                linked = True
            fsync_dir(new_path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)
            if linked:
                # Not known to be durable, and the caller reports a temporary failure
                # and retries: remove it so the retry does not deliver a second copy.
                with contextlib.suppress(OSError):
                    new_path.unlink(missing_ok=True)
            raise
        return name
