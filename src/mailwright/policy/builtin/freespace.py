"""Free space on the spool file system, checked before a message is taken in.

Postfix's ``queue_minfree``: without it a full disk is noticed only when a write
fails, after the client has uploaded the whole body, and every client retries into
the same wall.  Here MAIL is refused while less than ``min_free`` plus the declared
``SIZE=`` (RFC 1870) is free, and DATA (and the first BDAT chunk, see
``net.inbound.handlers``) while less than ``min_free`` is: ``452 4.3.1`` (RFC 5321 §4.2.2
"insufficient system storage", RFC 3463 X.3.1 "mail system full"), a temporary
answer, so the client keeps the message and retries later.

``os.statvfs`` counts the blocks available to unprivileged users (``f_bavail``): the
server does not run as root, and the blocks reserved for root are not ours.  One
system call per MAIL and DATA, no cache: it is cheaper than the fsyncs that follow.
An ``OSError`` propagates: the pipeline fails closed with 451 4.3.0.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import TempFail, Verdict
from mailwright.smtp import MailFrom, codes


def free_bytes(path: Path) -> int:
    """Octets available to the server on the file system holding ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class FreeSpace:
    name = "free_space"

    def __init__(self, path: Path, min_free: int) -> None:
        self._path = path
        self._min_free = min_free

    def _check(self, needed: int, what: str) -> Verdict | None:
        free = free_bytes(self._path)
        if free >= needed:
            return None
        reason = f"{free} octets free on {self._path}, {what} needs {needed}"
        return TempFail(codes.R452_INSUFFICIENT_STORAGE, reason)

    def on_mail(self, ctx: SessionContext, mail: MailFrom) -> Verdict | None:
        declared = mail.params.size or 0
        return self._check(self._min_free + declared, f"MAIL with SIZE={declared}")

    def on_data(self, ctx: SessionContext, event: object) -> Verdict | None:
        return self._check(self._min_free, "a message body")
