"""Opening the server's spool from a command (``queue``, ``sendmail``) beside a running
server: as the server's user, without recovery.

* **As the server's user.**  Run as root with ``[process] user``/``group`` set, the
  command switches to that account before it touches the spool, so every file it
  creates (a body in ``msg/``, SQLite's ``-wal``/``-shm``, the mail log) belongs to the
  user the server and its worker run as — a root-owned body would be unreadable to
  the worker, a root-owned ``-wal`` would stop the server from opening its queue.
* **Without recovery** (``EmbeddedSpool(recover=False)``): the recovery at open treats
  ``tmp/`` and bodies without a row as debris, which they are not while a server is
  receiving.  SQLite's WAL mode and locking make the concurrent access safe (see
  ``spool._db``): the command reads the last committed state and its writes queue
  behind the server's commits for at most the database's busy timeout.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailwright.config import Config
from mailwright.runtime.privileges import PrivilegeError, account_ids
from mailwright.spool.embedded import DB_FILE, SPOOL_DIR, EmbeddedSpool


class AccessError(Exception):
    """The command cannot act as the server's user; the message is one line."""


def become_mail_user(config: Config) -> None:
    """Switch to ``[process] user``/``group`` when running as root (see module doc)."""
    if os.geteuid() != 0:
        return
    try:
        ids = account_ids(config.process)
    except PrivilegeError as exc:
        raise AccessError(f"process: {exc}") from exc
    if ids is None:
        return
    uid, gid = ids
    try:
        os.setgroups([gid])
        os.setgid(gid)
        if config.process.user is not None:
            os.setuid(uid)
    except OSError as exc:
        raise AccessError(f"cannot switch to the server's user: {exc.strerror or exc}") from exc


def spool_exists(config: Config) -> bool:
    """A server (or ``sendmail``) has created the queue database in ``data_dir``."""
    return (Path(config.data_dir) / SPOOL_DIR / DB_FILE).exists()


def spool_of(config: Config) -> EmbeddedSpool:
    """The server's spool, to ``open()``; never recovered from here."""
    return EmbeddedSpool(config.data_dir, recover=False)
