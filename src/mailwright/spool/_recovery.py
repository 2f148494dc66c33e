"""Start-up recovery of the embedded spool: remove the debris of interrupted writes.

Run once by ``EmbeddedSpool.open`` in the server, before it accepts mail (a second
process on the same spool, the delivery worker, never runs it: only the server may
treat ``tmp/`` and row-less bodies as debris).  What a crash can leave behind follows
from the durability order of ``put`` (see ``embedded``): a crash before the rename
leaves a file in ``tmp/`` — never committed, so never acknowledged; a crash between the
rename and the commit leaves a body file in ``msg/`` without its row.  Both are removed.
A row whose body file is gone (a damaged file system, an operator's ``rm``) cannot be
delivered and is dropped, loudly.  Files that are not queue ids are left alone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.spool import _db
from mailwright.spool.queueid import is_queue_id

log = logging.getLogger("mailwright.spool")


@dataclass(slots=True)
class RecoveryReport:
    """What ``open`` cleaned up: debris of writes interrupted by a crash."""

    tmp_removed: list[str] = field(default_factory=list)  # bodies never committed
    orphans_removed: list[str] = field(default_factory=list)  # body file without a row
    missing_bodies: list[str] = field(default_factory=list)  # rows dropped: body lost
    foreign_files: list[str] = field(default_factory=list)  # left alone in msg/


def recover(conn: sqlite3.Connection, tmp_dir: Path, msg_dir: Path) -> RecoveryReport:
    """Writer thread: clean ``tmp_dir`` and match ``msg_dir`` against the rows.

    Raises ``OSError`` or ``sqlite3.Error``; the caller names the spool.
    """
    report = RecoveryReport()
    for entry in os.scandir(tmp_dir):
        os.unlink(entry.path)
        report.tmp_removed.append(entry.name)
    on_disk = set()
    for entry in os.scandir(msg_dir):
        if is_queue_id(entry.name) and entry.is_file(follow_symlinks=False):
            on_disk.add(entry.name)
        else:
            report.foreign_files.append(entry.name)
    # A message has exactly one body: its ``bodies`` row or its file.
    file_backed = _db.file_backed_ids(conn)
    for qid in sorted(on_disk - file_backed):
        os.unlink(msg_dir / qid)
        report.orphans_removed.append(qid)
    report.missing_bodies = sorted(file_backed - on_disk)
    if report.missing_bodies:
        conn.execute("BEGIN IMMEDIATE")
        _db.delete_many(conn, report.missing_bodies)
        conn.execute("COMMIT")
    return report


def log_report(report: RecoveryReport, msg_dir: Path) -> None:
    """One line for what was cleaned up; one per lost body and per foreign file."""
    if report.tmp_removed or report.orphans_removed:
        log.info(
            "spool recovery: removed %d uncommitted temporary bodies, %d orphan bodies",
            len(report.tmp_removed),
            len(report.orphans_removed),
        )
    for qid in report.missing_bodies:
        log.error("spool recovery: %s: body file missing, queue entry removed", qid)
    for name in report.foreign_files:
        log.warning("spool recovery: unexpected file %s in %s left alone", name, msg_dir)
