"""The group committer's worker-thread half: one batch of operations, one transaction.

``BatchCommitter.commit`` runs on the store's database writer thread (the only thread
that uses the writer connection).  For a batch it does, in this order:

1. **Spilled bodies, in parallel.**  Each body file is handed to the fsync pool, which
   writes what is still buffered, fsyncs the file, checks that ``msg/<id>`` is free
   and renames ``tmp/<id>`` there.  N bodies cost about one fsync of wall time, not N.
2. **Meanwhile, the rows.**  ``BEGIN IMMEDIATE``; the envelope and recipient rows of
   every put, the BLOB of every inline body, every update and delete.  Nothing is
   visible or durable before the ``COMMIT``.
3. **Wait for the bodies.**  A put whose body failed (EIO, disk full, collision) has
   its rows deleted again, inside the transaction: it fails alone.
4. **One fsync of ``msg/``** if any body was renamed: the new directory entries are
   durable.  ``tmp/`` is never fsynced: ``open`` empties it after a restart anyway,
   so whether a rename's *old* entry survives a crash does not matter.
5. **COMMIT**: one WAL fsync (``synchronous=FULL``) makes every inline body, row and
   update of the batch durable at once.  Only now do the puts' futures resolve.

A row therefore never becomes durable before its body.  If the commit fails, it is
rolled back and every body file of the batch is unlinked: nothing is left behind.

Removed messages' body *files* are not unlinked here: the committer unlinks them on a
file thread after the batch's futures are resolved, off the critical path of the next
batch.  A crash in between leaves a body without a row, which ``open`` removes.  Inline
bodies go with their row, in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailwright.fs.durable import fsync_dir
from mailwright.spool import _db, _schema
from mailwright.spool._errors import spool_error
from mailwright.spool._writer import BodyWriter
from mailwright.spool.store import MessageBusy, MessageGone, SpoolError

log = logging.getLogger("mailwright.spool")


@dataclass(slots=True)
class Put:
    writer: BodyWriter
    row: _db.MessageRow
    recipients: list[_db.RecipientRow]
    future: asyncio.Future[None]


@dataclass(slots=True)
class Update:
    queue_id: str
    next_attempt: float
    attempts: int
    pending: int
    states: list[tuple[object, ...]]
    future: asyncio.Future[None]
    history: list[tuple[object, ...]] = field(default_factory=list)  # attempt rows
    release_owner: str | None = None  # end this owner's lease (``record_attempt``)
    # ``record_progress``: refused if another owner holds a live lease at ``now``;
    # the batch is committed FULL (a recorded 250 must survive a power cut).
    progress_owner: str | None = None
    now: float = 0.0


@dataclass(slots=True)
class Claim:
    now: float
    limit: int
    until: float
    owner: str
    future: asyncio.Future[None]
    ids: list[str] = field(default_factory=list)  # set by the commit: leased, in due order


@dataclass(slots=True)
class Lease:
    """Renew (``until`` set) or release (``until`` None) ``owner``'s leases."""

    queue_ids: list[str] | None  # None: every lease ``owner`` holds
    owner: str
    until: float | None
    future: asyncio.Future[None]
    changed: list[str] = field(default_factory=list)  # set by the commit


@dataclass(slots=True)
class Remove:
    queue_id: str
    future: asyncio.Future[None]


AdminAction = Literal["hold", "unhold", "retry", "delete"]


@dataclass(slots=True)
class Admin:
    """An operator's write (``SpoolStore.hold``/``unhold``/``retry``/``delete``).

    A batch holding one is committed FULL: what the operator was told is done stays
    done after a power cut (a hold that came undone would let the mail go out)."""

    action: AdminAction
    queue_ids: list[str] | None  # None: every message (``retry`` only)
    now: float
    future: asyncio.Future[None]
    changed: list[str] = field(default_factory=list)  # set by the commit: ids affected


Op = Put | Update | Remove | Claim | Lease | Admin


@dataclass(slots=True)
class BatchResult:
    outcomes: list[SpoolError | None]  # per op: None = done and durable
    unlink: list[Path] = field(default_factory=list)  # body files of removed messages
    committed: bool = False  # a transaction was committed
    full_sync: bool = True  # ... with synchronous=FULL


class BatchCommitter:
    """Owns the writer connection's transactions.  Worker-thread only."""

    def __init__(
        self, conn: sqlite3.Connection, msg_dir: Path, fsync_pool: ThreadPoolExecutor
    ) -> None:
        self.conn = conn
        self.msg_dir = msg_dir
        self._fsync_pool = fsync_pool
        self._full_sync = True  # what _schema.connect set

    def commit(self, batch: list[Op]) -> BatchResult:
        result = BatchResult([None] * len(batch))
        outcomes = result.outcomes
        bodies: dict[int, Future[None]] = {}
        conn = self.conn
        inserted: set[int] = set()
        try:
            try:
                for i, op in enumerate(batch):
                    if isinstance(op, Put) and not op.writer.inline:
                        target = self.msg_dir / op.writer.queue_id
                        bodies[i] = self._fsync_pool.submit(op.writer.store_file, target)
                self._choose_sync(batch)
                _schema.begin_immediate(conn)
                for i, op in enumerate(batch):
                    self._apply(i, op, result, inserted)
            finally:  # the pool threads use the writers: never return before they are done
                wait_all(bodies.values())
            stored = self._collect_bodies(batch, bodies, outcomes, inserted)
            if stored:
                try:
                    fsync_dir(self.msg_dir)
                except OSError as exc:
                    err = spool_error("cannot sync spool directory", exc)
                    for i in stored:
                        outcomes[i] = err
                        self._undo_insert(i, batch, inserted)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            err = spool_error("cannot commit to the queue database", exc)
            for i in range(len(batch)):
                if outcomes[i] is None:
                    outcomes[i] = err
            result.unlink.clear()
        else:
            result.committed = True
            result.full_sync = self._full_sync
        for i, op in enumerate(batch):  # a failed put leaves no file, in tmp/ or msg/
            if isinstance(op, Put) and outcomes[i] is not None:
                op.writer.discard()
        return result

    def _choose_sync(self, batch: list[Op]) -> None:
        """FULL unless the batch stores nothing new and removes no body file.

        See ``embedded`` ("Durability of updates") for why NORMAL is safe then.
        """
        full = True
        if not any(
            isinstance(op, Put | Admin) or (isinstance(op, Update) and op.progress_owner)
            for op in batch
        ):
            removed = [op.queue_id for op in batch if isinstance(op, Remove)]
            full = bool(removed) and len(_db.inline_among(self.conn, removed)) < len(set(removed))
        if full != self._full_sync:
            _schema.set_synchronous(self.conn, full)
            self._full_sync = full

    def _apply(self, i: int, op: Op, result: BatchResult, inserted: set[int]) -> None:
        conn = self.conn
        if isinstance(op, Put):
            writer = op.writer
            body = writer.body_bytes()
            try:
                _db.insert(conn, op.row, op.recipients)
            except sqlite3.IntegrityError as exc:  # statement rolled back only
                result.outcomes[i] = spool_error(f"{writer.queue_id}: duplicate id", exc)
                return
            inserted.add(i)
            if body is not None:
                _db.insert_body(conn, writer.queue_id, body)
        elif isinstance(op, Update):
            if op.progress_owner is not None:
                holder = _db.lease_holder(conn, op.queue_id, op.now)
                if holder is None:
                    result.outcomes[i] = MessageGone(f"{op.queue_id}: no such message")
                    return
                if holder not in ("", op.progress_owner):
                    result.outcomes[i] = MessageBusy(f"{op.queue_id}: leased to {holder}")
                    return
            found = _db.update(
                conn, op.queue_id, op.next_attempt, op.attempts, op.pending, op.states
            )
            if not found:
                result.outcomes[i] = MessageGone(f"{op.queue_id}: no such message")
                return
            if op.history:
                _db.insert_attempts(conn, op.history)
            if op.release_owner is not None:
                _db.set_lease(conn, [op.queue_id], op.release_owner, None)
        elif isinstance(op, Claim):
            op.ids = _db.claim(conn, op.now, op.limit, op.until, op.owner)
        elif isinstance(op, Lease):
            op.changed = _db.set_lease(conn, op.queue_ids, op.owner, op.until)
        elif isinstance(op, Admin):
            self._administer(i, op, result)
        else:
            had_inline_body = _db.delete_body(conn, op.queue_id)
            _db.delete(conn, op.queue_id)
            if not had_inline_body:
                result.unlink.append(self.msg_dir / op.queue_id)

    def _administer(self, i: int, op: Admin, result: BatchResult) -> None:
        conn = self.conn
        if op.action == "retry":
            op.changed = _db.retry(conn, op.now, op.queue_ids)
            return
        for qid in op.queue_ids or ():
            if op.action == "delete":
                outcome = _db.delete_unleased(conn, qid, op.now)
                if outcome == "busy":
                    result.outcomes[i] = MessageBusy(f"{qid}: being delivered right now")
                    continue
                if outcome == "missing":
                    continue
                if outcome == "file":
                    result.unlink.append(self.msg_dir / qid)
            elif not _db.set_hold(conn, qid, op.now if op.action == "hold" else None):
                continue
            op.changed.append(qid)

    def _collect_bodies(
        self,
        batch: list[Op],
        bodies: dict[int, Future[None]],
        outcomes: list[SpoolError | None],
        inserted: set[int],
    ) -> list[int]:
        """Outcomes of the body files; undo the rows of failed ones.  Returns the stored."""
        stored = []
        for i, done in bodies.items():
            exc = done.exception()
            if exc is None:
                stored.append(i)
                continue
            qid = batch[i].writer.queue_id  # type: ignore[union-attr]
            if outcomes[i] is None:
                outcomes[i] = (
                    exc
                    if isinstance(exc, SpoolError)
                    else spool_error(f"{qid}: cannot store body", exc)
                )
            self._undo_insert(i, batch, inserted)
        return [i for i in stored if outcomes[i] is None]

    def _undo_insert(self, i: int, batch: list[Op], inserted: set[int]) -> None:
        if i in inserted:
            inserted.discard(i)
            _db.delete(self.conn, batch[i].writer.queue_id)  # type: ignore[union-attr]
