"""The embedded spool: body files plus a SQLite queue database, with group commit.

Layout under ``data_dir/spool/``::

    tmp/<queue-id>   body being received (DATA/BDAT); never trusted after a restart
    msg/<queue-id>   committed body, write-once, exactly as accepted
    queue.db         envelope + per-recipient state (see ``_db`` for the settings)

One flat ``msg/`` directory, not hashed subdirectories (Postfix's ``hash_queue_depth``):
ext4 (htree), XFS and btrfs index large directories, a queue is normally small, and
one directory means one directory fsync covers every rename of a commit batch —
sharding would cost one fsync per shard touched.

Durability order for ``put`` (DESIGN principle 3, the ``SpoolStore`` contract):
body fsync -> rename tmp->msg -> fsync msg/ and tmp/ -> INSERT rows -> COMMIT (WAL
fsync) -> return, so the server may answer 250.  A crash before the rename leaves a
tmp file; between rename and commit, a body without a row; both are removed by
``open``.  A row never exists without its durable body.

**Group commit** (DESIGN principle 7): ``put``/``update``/``remove`` only queue an
operation and await its future.  One committer task takes everything queued and runs
it in a single hop to the store's worker thread: all body fsyncs and renames, *one*
fsync per directory, *one* SQLite transaction and commit.  While that batch is on disk
the next one accumulates, so N concurrent sessions pay for about one disk round trip,
and a lone session pays no added latency (there is no timer).  ``commit_batches``
counts the batches for tests and metrics.

Threading: the SQLite connection is created, used and closed only by one dedicated
worker thread (a single-thread executor).  Every database call from async code hops
there, so the event loop never waits on an fsync and the connection needs no lock.
Reading bodies uses ``asyncio.to_thread`` so delivery reads do not queue behind commits.

Errors: every ``OSError``/``sqlite3.Error`` leaves as ``SpoolError`` naming the queue
id, the operation and the cause (e.g. "No space left on device"), never bare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mailwright.spool import _db
from mailwright.spool._errors import spool_error
from mailwright.spool._writer import BodyWriter, WriterState
from mailwright.spool.atomic import create_exclusive, ensure_dir, fsync_dir
from mailwright.spool.model import Envelope, RecipientState, SpooledMessage
from mailwright.spool.queueid import is_queue_id, new_queue_id
from mailwright.spool.store import MessageWriter, SpoolError

log = logging.getLogger("mailwright.spool")

SPOOL_DIR = "spool"
TMP_DIR = "tmp"
MSG_DIR = "msg"
DB_FILE = "queue.db"
# Upper bound on operations per transaction: bounds the latency of the first put in
# a huge burst and the size of one WAL commit.
MAX_COMMIT_BATCH = 512
ITERATE_PAGE = 256
_ID_ATTEMPTS = 8  # fresh ids tried if O_EXCL reports a collision

T = TypeVar("T")


@dataclass(slots=True)
class RecoveryReport:
    """What ``open`` cleaned up: debris of writes interrupted by a crash."""

    tmp_removed: list[str] = field(default_factory=list)  # bodies never committed
    orphans_removed: list[str] = field(default_factory=list)  # renamed, row not committed
    missing_bodies: list[str] = field(default_factory=list)  # rows dropped: body lost
    foreign_files: list[str] = field(default_factory=list)  # left alone in msg/


@dataclass(slots=True)
class _Put:
    writer: BodyWriter
    row: _db.MessageRow
    recipients: list[_db.RecipientRow]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Update:
    queue_id: str
    next_attempt: float
    attempts: int
    pending: int
    states: list[tuple[object, ...]]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Remove:
    queue_id: str
    future: asyncio.Future[None]


_Op = _Put | _Update | _Remove


class EmbeddedSpool:
    """``SpoolStore`` on local files and SQLite.  See the module docstring."""

    def __init__(self, data_dir: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(data_dir) / SPOOL_DIR
        self.tmp_dir = self.root / TMP_DIR
        self.msg_dir = self.root / MSG_DIR
        self.db_path = self.root / DB_FILE
        self.commit_batches = 0  # transactions committed by the group committer
        self.committed_ops = 0  # operations (put/update/remove) they carried
        self.recovery: RecoveryReport | None = None
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # only touched on the worker thread
        self._ops: list[_Op] = []
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._writers: weakref.WeakSet[BodyWriter] = weakref.WeakSet()  # not yet put
        self._open = False
        self._closing = False

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Create folders and schema; remove debris of interrupted writes (see module)."""
        if self._open:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailwright-spool")
        self._closing = False
        try:
            report = await self._on_worker(self._open_sync)
        except BaseException:
            await self._on_worker(self._close_sync)
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self.recovery = report
        if report.tmp_removed or report.orphans_removed:
            log.info(
                "spool recovery: removed %d uncommitted temporary bodies, %d orphan bodies",
                len(report.tmp_removed),
                len(report.orphans_removed),
            )
        for qid in report.missing_bodies:
            log.error("spool recovery: %s: body file missing, queue entry removed", qid)
        for name in report.foreign_files:
            log.warning("spool recovery: unexpected file %s in %s left alone", name, self.msg_dir)
        self._wakeup = asyncio.Event()
        self._committer = asyncio.create_task(self._run_committer(), name="spool-committer")
        self._open = True

    async def close(self) -> None:
        """Commit whatever is queued, stop the committer and close the database."""
        if not self._open:
            return
        self._closing = True
        for writer in list(self._writers):  # sessions still receiving: can never be put now
            writer.abort()
        self._wakeup.set()
        if self._committer is not None:
            await self._committer
            self._committer = None
        with contextlib.suppress(SpoolError):
            await self._on_worker(self._close_sync)
        assert self._executor is not None
        self._executor.shutdown(wait=True)
        self._executor = None
        self._open = False

    def _open_sync(self) -> RecoveryReport:
        try:
            for directory in (self.root, self.tmp_dir, self.msg_dir):
                ensure_dir(directory)
            self._conn = _db.connect(str(self.db_path))
            _db.create_schema(self._conn)
        except (OSError, sqlite3.Error, _db.SchemaError) as exc:
            raise spool_error(f"cannot open spool {self.root}", exc) from exc
        report = RecoveryReport()
        try:
            for entry in os.scandir(self.tmp_dir):
                os.unlink(entry.path)
                report.tmp_removed.append(entry.name)
            on_disk = set()
            for entry in os.scandir(self.msg_dir):
                if is_queue_id(entry.name) and entry.is_file(follow_symlinks=False):
                    on_disk.add(entry.name)
                else:
                    report.foreign_files.append(entry.name)
            in_db = _db.all_ids(self._conn)
            for qid in sorted(on_disk - in_db):
                os.unlink(self.msg_dir / qid)
                report.orphans_removed.append(qid)
            report.missing_bodies = sorted(in_db - on_disk)
            if report.missing_bodies:
                self._conn.execute("BEGIN IMMEDIATE")
                _db.delete_many(self._conn, report.missing_bodies)
                self._conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            raise spool_error(f"cannot recover spool {self.root}", exc) from exc
        return report

    def _close_sync(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise SpoolError("spool is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise SpoolError("spool is closed")

    # -- receiving ------------------------------------------------------------------

    def new_message(self) -> MessageWriter:
        """A writer for a temporary body under a fresh queue id.

        Never raises: if the temporary file cannot be created (disk full, closed
        store), the writer carries the ``SpoolError`` and raises it from ``write`` or
        ``put``, the two calls the server already guards with 451 4.3.0.
        """
        if not self._open or self._closing:
            return BodyWriter(
                self, new_queue_id(self._clock()), self.tmp_dir, None, SpoolError("spool is closed")
            )
        for _ in range(_ID_ATTEMPTS):
            qid = new_queue_id(self._clock())
            if (self.msg_dir / qid).exists():
                continue
            try:
                fd = create_exclusive(self.tmp_dir / qid)
            except FileExistsError:
                continue
            except OSError as exc:
                error = spool_error(f"{qid}: cannot create temporary body", exc)
                return BodyWriter(self, qid, self.tmp_dir, None, error)
            writer = BodyWriter(self, qid, self.tmp_dir, fd, None)
            self._writers.add(writer)
            return writer
        return BodyWriter(
            self, qid, self.tmp_dir, None, SpoolError("cannot allocate a unique queue id")
        )

    async def put(self, writer: MessageWriter, envelope: Envelope) -> SpooledMessage:
        """Make body and envelope durable, then return (group-committed)."""
        if not isinstance(writer, BodyWriter) or writer.store is not self:
            raise ValueError("writer was not created by this spool")
        if not envelope.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if not self._open or self._closing:
            writer.abort()
            raise SpoolError(f"{writer.queue_id}: spool is closed")
        writer.claim()  # raises the writer's SpoolError, or if aborted / put twice
        self._writers.discard(writer)
        now = self._clock()
        message = SpooledMessage(
            queue_id=writer.queue_id,
            envelope=envelope,
            size=writer.size,
            received_at=now,
            next_attempt=now,
            recipients=[RecipientState(r) for r in envelope.recipients],
        )
        future = asyncio.get_running_loop().create_future()
        await self._submit(
            _Put(writer, _db.message_row(message), _db.recipient_rows(message), future)
        )
        return message

    # -- queue state -------------------------------------------------------------------

    async def update(self, message: SpooledMessage) -> None:
        """Persist recipients' state, ``attempts`` and ``next_attempt`` (group-committed)."""
        self._check_open()
        future = asyncio.get_running_loop().create_future()
        await self._submit(
            _Update(
                message.queue_id,
                message.next_attempt,
                message.attempts,
                len(message.pending),
                _db.state_rows(message),
                future,
            )
        )

    async def remove(self, queue_id: str) -> None:
        """Delete the row (committed), then the body file.  Idempotent."""
        self._check_open()
        if not is_queue_id(queue_id):
            return
        future = asyncio.get_running_loop().create_future()
        await self._submit(_Remove(queue_id, future))

    async def load(self, queue_id: str) -> SpooledMessage | None:
        if not is_queue_id(queue_id):
            return None
        return await self._query(_db.load, queue_id)

    async def due(self, now: float, limit: int) -> list[SpooledMessage]:
        """Pending messages with ``next_attempt <= now``, earliest due first.

        "Oldest first" is taken as *earliest due time first*, ties broken by queue id
        (= arrival order): for fresh mail that is arrival order, and a message deferred
        long ago cannot be starved by a stream of new arrivals.  It is also exactly the
        order of the ``messages_due`` index, so no sort is needed.
        """
        if limit <= 0:
            return []
        return await self._query(_db.due, now, limit)

    async def iterate(self) -> AsyncIterator[SpooledMessage]:
        """Every committed message in queue-id (arrival) order, one page at a time."""
        after = ""
        while True:
            page = await self._query(_db.page, after, ITERATE_PAGE)
            for message in page:
                yield message
            if len(page) < ITERATE_PAGE:
                return
            after = page[-1].queue_id

    async def read_body(self, queue_id: str) -> bytes:
        if not is_queue_id(queue_id):
            raise SpoolError(f"{queue_id!r} is not a queue id")
        path = self.msg_dir / queue_id
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise spool_error(f"{queue_id}: cannot read body", exc) from exc

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()

        def run() -> T:
            if self._conn is None:
                raise SpoolError("spool is closed")
            try:
                return fn(self._conn, *args)
            except sqlite3.Error as exc:
                raise spool_error("queue database query failed", exc) from exc

        return await self._on_worker(run)

    # -- group commit ---------------------------------------------------------------

    async def _submit(self, op: _Op) -> None:
        self._ops.append(op)
        self._wakeup.set()
        await op.future

    async def _run_committer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._ops:
                taken = self._ops[:MAX_COMMIT_BATCH]
                del self._ops[:MAX_COMMIT_BATCH]
                batch = [op for op in taken if self._still_wanted(op)]
                if not batch:
                    continue
                try:
                    outcomes = await self._on_worker(self._commit_batch, batch)
                except Exception as exc:  # a bug, or the executor is gone: fail the batch
                    log.exception("spool commit failed unexpectedly")
                    outcomes = [spool_error("spool commit failed", exc)] * len(batch)
                for op, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(op, _Put):
                        failed = outcome is not None
                        op.writer.state = WriterState.FAILED if failed else WriterState.COMMITTED
                    if op.future.done():
                        continue
                    if outcome is None:
                        op.future.set_result(None)
                    else:  # one instance per waiter: tracebacks are per raise
                        err = SpoolError(*outcome.args)
                        err.__cause__ = outcome.__cause__
                        op.future.set_exception(err)
            if self._closing:
                return

    @staticmethod
    def _still_wanted(op: _Op) -> bool:
        """Drop puts whose caller was cancelled before commit: no 250 was sent."""
        if op.future.cancelled():
            if isinstance(op, _Put):
                op.writer.discard()
            return False
        return True

    def _commit_batch(self, batch: list[_Op]) -> list[SpoolError | None]:
        """Worker thread: make a whole batch durable with one fsync per dir and one commit."""
        outcomes: list[SpoolError | None] = [None] * len(batch)
        renamed: list[tuple[int, Path]] = []
        for i, op in enumerate(batch):
            if not isinstance(op, _Put):
                continue
            target = self.msg_dir / op.writer.queue_id
            try:
                op.writer.finish()  # flush + fsync + close
                os.rename(op.writer.path, target)
            except (OSError, SpoolError) as exc:
                outcomes[i] = (
                    exc
                    if isinstance(exc, SpoolError)
                    else spool_error(f"{op.writer.queue_id}: cannot store body", exc)
                )
                op.writer.discard()
                continue
            renamed.append((i, target))
        if renamed:
            try:
                fsync_dir(self.msg_dir)
                fsync_dir(self.tmp_dir)
            except OSError as exc:
                err = spool_error("cannot sync spool directory", exc)
                self._unlink_bodies(renamed, outcomes, err)
        live = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if not live:
            return outcomes
        removed: list[str] = []
        conn = self._conn
        try:
            if conn is None:
                raise sqlite3.OperationalError("database is closed")
            conn.execute("BEGIN IMMEDIATE")
            for i in live:
                op = batch[i]
                if isinstance(op, _Put):
                    try:
                        _db.insert(conn, op.row, op.recipients)
                    except sqlite3.IntegrityError as exc:  # statement rolled back only
                        outcomes[i] = spool_error(f"{op.writer.queue_id}: duplicate id", exc)
                elif isinstance(op, _Update):
                    if not _db.update(
                        conn, op.queue_id, op.next_attempt, op.attempts, op.pending, op.states
                    ):
                        outcomes[i] = SpoolError(f"{op.queue_id}: no such message")
                else:
                    _db.delete(conn, op.queue_id)
                    removed.append(op.queue_id)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK")
            err = spool_error("cannot commit to the queue database", exc)
            for i in live:
                outcomes[i] = err
            self._unlink_bodies(renamed, outcomes, err)
            return outcomes
        self.commit_batches += 1
        self.committed_ops += len(live)
        for qid in removed:  # row is gone for good; a body left over is removed by open()
            with contextlib.suppress(FileNotFoundError):
                try:
                    os.unlink(self.msg_dir / qid)
                except OSError as exc:
                    log.warning("%s: cannot remove body file: %s", qid, exc)
        return outcomes

    @staticmethod
    def _unlink_bodies(
        renamed: list[tuple[int, Path]], outcomes: list[SpoolError | None], err: SpoolError
    ) -> None:
        """Undo renames of a failed batch so no body without a committed row is left."""
        for i, path in renamed:
            outcomes[i] = err
            with contextlib.suppress(OSError):
                os.unlink(path)
        renamed.clear()
