"""The embedded spool: a SQLite queue database plus body files for large bodies.

(Over the ~500-line guideline on purpose: about 90 lines are this docstring, the
durability argument the rest of the module relies on, and the code is one class, the
``SpoolStore`` implementation, whose methods hop to the threads that own the
connections.  What has a seam of its own is already apart: ``_schema`` (settings,
tables, migrations), ``_db`` (queries), ``_writer`` (bodies as they arrive),
``_commit`` (one batch's transaction), ``_recovery`` (debris after a crash) and
``_errors``.)

Layout under ``data_dir/spool/``::

    queue.db         envelope + per-recipient state, and the bodies of small messages
                     (see ``_schema`` for the schema and settings)
    tmp/<queue-id>   a large body being received (DATA/BDAT); never trusted after a restart
    msg/<queue-id>   a committed large body, write-once, exactly as accepted
    wake             the FIFO on which the queue runner hears other processes
                     (``spool.wakeup``: ``mailwright sendmail``, ``queue flush``)

**Two body forms.**  A body of at most ``INLINE_BODY_MAX`` bytes (32 KiB, justified in
``_writer``) is kept in memory while it arrives and stored *inline*, as a BLOB in the
``bodies`` table, in the same transaction as its envelope: one WAL fsync makes body and
envelope durable together, for a whole batch of sessions.  A larger body *spills* to
``tmp/<queue-id>`` while it arrives (the file is created on a file thread, not on the
event loop) and is fsynced and renamed into ``msg/`` at commit.  ``read_body`` serves
both; ``load``, ``due`` and ``iterate`` do not care.

One flat ``msg/`` directory, not hashed subdirectories (Postfix's ``hash_queue_depth``):
ext4 (htree), XFS and btrfs index large directories, a queue is normally small, and
one directory means one directory fsync covers every rename of a commit batch —
sharding would cost one fsync per shard touched.

**Durability order for ``put``** (DESIGN principle 3, the ``SpoolStore`` contract):
spilled bodies fsynced in parallel -> renamed tmp->msg -> one fsync of msg/ -> rows and
inline bodies INSERTed -> COMMIT (WAL fsync, ``synchronous=FULL``) -> return, so the
server may answer 250.  (The INSERTs run while the bodies are being fsynced; they are
invisible until the COMMIT.  ``_commit`` has the details.)  A crash before the rename
leaves a tmp file; between rename and commit, a body file without a row; both are
removed by ``open`` (``_recovery``).  A row never exists without its durable body.
``tmp/`` is never fsynced: ``open`` empties it, so a rename's old entry reappearing
after a crash is harmless.

**Group commit** (DESIGN principle 7): ``put``/``update``/``remove`` only queue an
operation and await its future.  One committer task takes everything queued and runs
it in a single hop to the database writer thread: parallel fsyncs of the spilled
bodies, *one* fsync of msg/ (only if a body file was stored), *one* SQLite transaction
and commit.  While that batch is on disk the next one accumulates, so N concurrent
sessions pay for about one disk round trip, and a lone session pays no added latency
(there is no timer).  Body files of removed messages are unlinked on a file thread
*after* the batch's futures are resolved, so the next batch does not wait for them.
``commit_batches`` counts the batches for tests and metrics.

**Durability of updates.**  A batch that stores no message and removes no body file
(only delivery-state updates and removals of inline messages) commits with
``synchronous=NORMAL``: the WAL is written but not fsynced.  This cannot lose an
acknowledged message:

* such a batch only records progress on messages that are already durable; if a power
  cut drops it, those messages revert to their previous, still pending state and are
  delivered again — a duplicate, which the at-least-once contract (see ``queue.runner``)
  already allows; a lost removal of an inline message takes its body row back with it,
  so the message is whole again;
* SQLite's WAL is a log: frames are appended in order and recovery stops at the first
  invalid frame (the checksums are cumulative), so a later transaction is never kept
  without an earlier one.  The next FULL commit — any ``put`` — fsyncs the log up to
  its own frames, which makes every earlier NORMAL commit durable too; and in NORMAL
  mode SQLite still fsyncs the WAL before each checkpoint;
* a removal whose body is a *file* is committed FULL, because the file is unlinked
  right after; otherwise a dropped removal could bring back a row without its body.

**Threads.**  The writer connection is created, used and closed only by one database
writer thread (a single-thread executor): every commit hops there, so the event loop
never waits on an fsync and the connection needs no lock.  ``load``, ``due``,
``iterate`` and ``read_body`` run on a second, read-only connection with its own
thread: in WAL mode they read the last committed state without waiting for the
commit in progress, so the queue runner's scans never delay a batch of 250s (and
each multi-statement read runs in one read transaction, so it sees one snapshot).
Spilled bodies are fsynced on a pool of ``FSYNC_THREADS``; spill files are created and
removed bodies unlinked on ``FILE_THREADS``.

**Queue ids** are only minted, never checked, in ``new_message``, which makes no
system call.  A collision (two ids in the same millisecond with the same 35 random
bits) is still detected, never an overwrite: ``O_EXCL`` on ``tmp/``, an existence
check before the rename into ``msg/`` (inline bodies never create files there), and
the database's primary key; the ``put`` fails with ``SpoolError`` (the client gets
451 and retries).

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
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mailwright.fs.durable import create_exclusive, ensure_dir
from mailwright.spool import _db, _schema
from mailwright.spool._commit import (
    Admin,
    AdminAction,
    BatchCommitter,
    Claim,
    Lease,
    Op,
    Put,
    Remove,
    Update,
)
from mailwright.spool._errors import spool_error
from mailwright.spool._recovery import RecoveryReport, log_report, recover
from mailwright.spool._writer import INLINE_BODY_MAX, BodyWriter
from mailwright.spool.model import (
    Attempt,
    Claimed,
    Envelope,
    QueueEntry,
    RecipientState,
    SpooledMessage,
)
from mailwright.spool.queueid import is_queue_id, new_queue_id
from mailwright.spool.store import MessageWriter, SpoolError

__all__ = ["INLINE_BODY_MAX", "EmbeddedSpool", "RecoveryReport"]

log = logging.getLogger("mailwright.spool")

SPOOL_DIR = "spool"
TMP_DIR = "tmp"
MSG_DIR = "msg"
DB_FILE = "queue.db"
# Upper bound on operations per transaction: bounds the latency of the first put in
# a huge burst and the size of one WAL commit.
MAX_COMMIT_BATCH = 512
ITERATE_PAGE = 256
# Spilled bodies of one batch are fsynced this many at a time.  Concurrent fsyncs on
# one file system share journal commits (ext4/XFS) and fill an SSD's queue; 32 covers
# a batch from 32 sessions in one round without many idle threads.
FSYNC_THREADS = 32
# Spill-file creation and unlinking of removed bodies (metadata-only, short).
FILE_THREADS = 2

T = TypeVar("T")


class EmbeddedSpool:
    """``SpoolStore`` on SQLite and local files.  See the module docstring."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        recover: bool = True,
    ) -> None:
        self.root = Path(data_dir) / SPOOL_DIR
        # False in a second process on the same spool (the delivery worker): only the
        # server, before it accepts mail, may treat tmp/ and row-less bodies as debris.
        self._recover = recover
        self.tmp_dir = self.root / TMP_DIR
        self.msg_dir = self.root / MSG_DIR
        self.db_path = self.root / DB_FILE
        self.commit_batches = 0  # transactions committed by the group committer
        self.committed_ops = 0  # operations (put/update/remove) they carried
        self.recovery: RecoveryReport | None = None
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None  # the database writer thread
        self._reader: ThreadPoolExecutor | None = None  # the database reader thread
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._file_pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # writer thread only
        self._rconn: sqlite3.Connection | None = None  # reader thread only
        self._committer_half: BatchCommitter | None = None
        self._ops: list[Op] = []
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
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailwright-spool-r")
        self._fsync_pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="mailwright-fsync")
        self._file_pool = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="mailwright-file")
        self._closing = False
        try:
            report = await self._on_worker(self._open_sync)
            await self._on_reader(self._open_reader)
        except BaseException:
            await self._on_worker(self._close_sync)
            await self._shutdown_threads()
            raise
        self.recovery = report
        log_report(report, self.msg_dir)
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
            await self._on_reader(self._close_reader)
        with contextlib.suppress(SpoolError):
            await self._on_worker(self._close_sync)
        await self._shutdown_threads()
        self._open = False

    async def _shutdown_threads(self) -> None:
        pools = [self._reader, self._executor, self._fsync_pool, self._file_pool]
        self._reader = self._executor = self._fsync_pool = self._file_pool = None

        def shutdown() -> None:  # waits for pending unlinks; not on the event loop
            for pool in pools:
                if pool is not None:
                    pool.shutdown(wait=True)

        await asyncio.to_thread(shutdown)

    def _open_sync(self) -> RecoveryReport:
        assert self._fsync_pool is not None
        try:
            for directory in (self.root, self.tmp_dir, self.msg_dir):
                ensure_dir(directory)
            self._conn = _schema.connect(str(self.db_path))
            _schema.create_schema(self._conn)
        except (OSError, sqlite3.Error, _schema.SchemaError) as exc:
            raise spool_error(f"cannot open spool {self.root}", exc) from exc
        self._committer_half = BatchCommitter(self._conn, self.msg_dir, self._fsync_pool)
        if not self._recover:
            return RecoveryReport()
        try:
            return recover(self._conn, self.tmp_dir, self.msg_dir)
        except (OSError, sqlite3.Error) as exc:
            raise spool_error(f"cannot recover spool {self.root}", exc) from exc

    def _open_reader(self) -> None:
        try:
            self._rconn = _schema.connect_reader(str(self.db_path))
        except sqlite3.Error as exc:
            raise spool_error(f"cannot open spool {self.root}", exc) from exc

    def _close_reader(self) -> None:
        if self._rconn is not None:
            try:
                self._rconn.close()
            finally:
                self._rconn = None

    def _close_sync(self) -> None:
        self._committer_half = None
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

    async def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise SpoolError("spool is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, fn, *args)

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise SpoolError("spool is closed")

    # -- receiving ------------------------------------------------------------------

    def new_message(self) -> MessageWriter:
        """A writer for a new body under a fresh queue id.  No system call.

        Never raises: if the store is closed the writer carries the ``SpoolError``
        and raises it from ``write`` or ``put``, the two calls the server already
        guards with 451 4.3.0.  A spill file that cannot be created fails the same way.
        """
        qid = new_queue_id(self._clock())
        if not self._open or self._closing:
            return BodyWriter(self, qid, self.tmp_dir, None, SpoolError("spool is closed"))
        writer = BodyWriter(self, qid, self.tmp_dir, self._create_spill_file)
        self._writers.add(writer)
        return writer

    def _create_spill_file(self, path: Path) -> Future[int]:
        if self._file_pool is None or self._closing:
            raise RuntimeError("spool is closed")
        return self._file_pool.submit(create_exclusive, path)

    async def put(
        self, body: MessageWriter | bytes, envelope: Envelope, header_block: bytes = b""
    ) -> SpooledMessage:
        """Make body and envelope durable, then return (group-committed).

        ``body`` is a writer from ``new_message`` or the whole body as bytes (written
        through a writer of our own, so it takes the same inline/spill path).
        Afterwards ``writer.body_bytes()`` returns the stored body if it was inline
        (None if it was spilled to a file): the server can hand it to the queue
        runner (``QueueRunner.offer``) without reading it back.
        """
        if not envelope.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if isinstance(body, bytes):
            writer: MessageWriter = self.new_message()
            try:
                writer.write(body)
            except SpoolError:
                writer.abort()
                raise
        else:
            writer = body
        if not isinstance(writer, BodyWriter) or writer.store is not self:
            raise ValueError("writer was not created by this spool")
        if not self._open or self._closing:
            writer.abort()
            raise SpoolError(f"{writer.queue_id}: spool is closed")
        writer.claim()  # raises the writer's SpoolError, or if aborted / put twice
        self._writers.discard(writer)
        now = self._clock()
        message = SpooledMessage(
            queue_id=writer.queue_id,
            envelope=envelope,
            size=len(header_block) + writer.size,
            received_at=now,
            next_attempt=now,
            recipients=[RecipientState(r) for r in envelope.recipients],
            header_block=header_block,
        )
        future = asyncio.get_running_loop().create_future()
        await self._submit(
            Put(writer, _db.message_row(message), _db.recipient_rows(message), future)
        )
        return message

    # -- queue state -------------------------------------------------------------------

    async def update(self, message: SpooledMessage) -> None:
        """Persist recipients' state, ``attempts`` and ``next_attempt`` (group-committed)."""
        await self.record_attempt(message, ())

    async def record_attempt(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str | None = None
    ) -> None:
        """``update`` plus the history rows and the end of ``owner``'s lease, in the same
        group-committed transaction (NORMAL sync: see "Durability of updates")."""
        await self._record(message, attempts, release_owner=owner)

    async def record_progress(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str
    ) -> None:
        """``update`` plus the history rows, ``owner``'s lease kept; refused under
        another owner's live lease.  Its batch commits FULL, unlike ``record_attempt``:
        the 250s it records are what a power cut must not undo (one fsync per early
        report, only for messages with several destinations)."""
        await self._record(message, attempts, progress_owner=owner, now=self._clock())

    async def _record(
        self,
        message: SpooledMessage,
        attempts: Sequence[Attempt],
        *,
        release_owner: str | None = None,
        progress_owner: str | None = None,
        now: float = 0.0,
    ) -> None:
        """Submit the recipients' state and ``attempts`` as one ``Update`` (see there)."""
        self._check_open()
        future = asyncio.get_running_loop().create_future()
        await self._submit(
            Update(
                message.queue_id,
                message.next_attempt,
                message.attempts,
                len(message.pending),
                _db.state_rows(message),
                future,
                _db.attempt_rows(message.queue_id, attempts),
                release_owner=release_owner,
                progress_owner=progress_owner,
                now=now,
            )
        )

    async def attempts(self, queue_id: str) -> list[Attempt]:
        if not is_queue_id(queue_id):
            return []
        return await self._query(_db.attempts, queue_id)

    # -- leases --------------------------------------------------------------------------

    async def claim(self, now: float, limit: int, lease: float, owner: str) -> list[Claimed]:
        """Lease due messages to ``owner`` (see ``SpoolStore``), with inline bodies.

        The lease is taken in a group-committed write transaction — ``BEGIN IMMEDIATE``
        holds SQLite's write lock, so two claimers, in one process or several, never
        get the same message — and committed NORMAL like an update (a lease lost in a
        power cut only lets the message be claimed again).  The messages and their
        inline bodies are then read on the reader connection, off the writer thread.
        """
        self._check_open()
        if limit <= 0:
            return []
        until = now + lease
        op = Claim(now, limit, until, owner, asyncio.get_running_loop().create_future())
        await self._submit(op)
        if not op.ids:
            return []
        found = await self._query(_db.with_bodies, op.ids)
        return [Claimed(message, body, until) for message, body in found]

    async def renew(self, queue_ids: Sequence[str], owner: str, until: float) -> list[str]:
        self._check_open()
        if not queue_ids:
            return []
        return await self._lease(list(queue_ids), owner, until)

    async def release(self, owner: str, queue_ids: Sequence[str] | None = None) -> None:
        self._check_open()
        if queue_ids is None or queue_ids:
            await self._lease(None if queue_ids is None else list(queue_ids), owner, None)

    async def _lease(
        self, queue_ids: list[str] | None, owner: str, until: float | None
    ) -> list[str]:
        op = Lease(queue_ids, owner, until, asyncio.get_running_loop().create_future())
        await self._submit(op)
        return op.changed

    async def next_due(self, now: float) -> float | None:
        return await self._query(_db.next_due, now)

    async def remove(self, queue_id: str) -> None:
        """Delete the row and inline body (committed), then any body file.  Idempotent."""
        self._check_open()
        if not is_queue_id(queue_id):
            return
        future = asyncio.get_running_loop().create_future()
        await self._submit(Remove(queue_id, future))

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

    # -- administration (``SpoolStore``: "Administration") --------------------------------

    async def scan(self) -> AsyncIterator[QueueEntry]:
        """Every message with its hold and lease, in queue-id (arrival) order, paged."""
        after = ""
        while True:
            page = await self._query(_db.entry_page, after, ITERATE_PAGE)
            for item in page:
                yield item
            if len(page) < ITERATE_PAGE:
                return
            after = page[-1].message.queue_id

    async def entry(self, queue_id: str) -> QueueEntry | None:
        if not is_queue_id(queue_id):
            return None
        return await self._query(_db.entry, queue_id)

    async def hold(self, queue_id: str, now: float) -> bool:
        return bool(await self._administer("hold", [queue_id], now))

    async def unhold(self, queue_id: str) -> bool:
        return bool(await self._administer("unhold", [queue_id], 0.0))

    async def retry(self, now: float, queue_ids: Sequence[str] | None = None) -> list[str]:
        return await self._administer("retry", None if queue_ids is None else list(queue_ids), now)

    async def delete(self, queue_id: str, now: float) -> bool:
        """Like ``remove`` (committed FULL, then any body file unlinked) unless leased."""
        return bool(await self._administer("delete", [queue_id], now))

    async def _administer(
        self, action: AdminAction, queue_ids: list[str] | None, now: float
    ) -> list[str]:
        self._check_open()
        if queue_ids is not None:
            queue_ids = [q for q in queue_ids if is_queue_id(q)]
            if not queue_ids:
                return []
        op = Admin(action, queue_ids, now, asyncio.get_running_loop().create_future())
        await self._submit(op)
        return op.changed

    async def read_body(self, queue_id: str) -> bytes:
        """The message as accepted: its header block, then the inline BLOB or else
        the file in ``msg/``."""
        if not is_queue_id(queue_id):
            raise SpoolError(f"{queue_id!r} is not a queue id")
        self._check_open()
        path = self.msg_dir / queue_id

        def run() -> bytes:
            conn = self._rconn
            if conn is None:
                raise SpoolError("spool is closed")
            try:
                block = _db.header_block(conn, queue_id)
                data = _db.inline_body(conn, queue_id)
            except sqlite3.Error as exc:
                raise spool_error(f"{queue_id}: cannot read body", exc) from exc
            if data is not None:
                return block + data
            try:
                return block + path.read_bytes()
            except OSError as exc:
                raise spool_error(f"{queue_id}: cannot read body", exc) from exc

        return await self._on_reader(run)

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the reader connection, in one read transaction."""
        self._check_open()

        def run() -> T:
            conn = self._rconn
            if conn is None:
                raise SpoolError("spool is closed")
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn, *args)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise spool_error("queue database query failed", exc) from exc

        return await self._on_reader(run)

    # -- group commit ---------------------------------------------------------------

    async def _submit(self, op: Op) -> None:
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
                if batch:
                    await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[Op]) -> None:
        try:
            result = await self._on_worker(self._commit_batch, batch)
        except Exception as exc:  # a bug, or the executor is gone: fail the batch
            log.exception("spool commit failed unexpectedly")
            err = spool_error("spool commit failed", exc)
            outcomes: list[SpoolError | None] = [err] * len(batch)
            for op in batch:  # open() removes any body file this leaves behind
                if isinstance(op, Put):
                    op.writer.discard()
            unlink: list[Path] = []
        else:
            outcomes, unlink = result.outcomes, result.unlink
        for op, outcome in zip(batch, outcomes, strict=True):
            if isinstance(op, Put):
                op.writer.settle(outcome is None)
            if op.future.done():
                continue
            if outcome is None:
                op.future.set_result(None)
            else:  # one instance per waiter: tracebacks are per raise
                err = type(outcome)(*outcome.args)  # MessageBusy stays MessageBusy
                err.__cause__ = outcome.__cause__
                op.future.set_exception(err)
        if unlink and self._file_pool is not None:
            self._file_pool.submit(_unlink_bodies, unlink)

    def _commit_batch(self, batch: list[Op]) -> Any:
        """Writer thread: the whole batch in one transaction (see ``_commit``)."""
        half = self._committer_half
        if half is None:
            raise SpoolError("spool is closed")
        result = half.commit(batch)
        if result.committed:
            self.commit_batches += 1
            self.committed_ops += sum(1 for outcome in result.outcomes if outcome is None)
        return result

    @staticmethod
    def _still_wanted(op: Op) -> bool:
        """Drop puts whose caller was cancelled before commit: no 250 was sent."""
        if op.future.cancelled():
            if isinstance(op, Put):
                op.writer.discard()
            return False
        return True


def _unlink_bodies(paths: list[Path]) -> None:
    """File thread: remove body files whose rows are gone for good."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # left for open() to remove
            log.warning("%s: cannot remove body file: %s", path.name, exc)
