"""Group delivery into Maildirs: many messages per thread hop, one fsync of ``new/``.

The Maildir steps block (create, write, fsync, link, unlink, fsync of ``new/``), so
they run off the event loop.  One ``asyncio.to_thread`` per message cost more CPU than
the steps themselves: a context copy, an executor hand-off, a thread wake-up and a
cross-thread callback per message, and up to ``delivery.concurrency`` threads fighting
over the interpreter lock around every system call.  ``MaildirBatcher`` does what the
spool's group commit does (DESIGN principle 7):

* ``deliver`` queues a job and awaits its future;
* at most ``LANES`` batches run at a time, each in *one* hop to a worker thread, which
  stages every job of the batch in turn (``Maildir.stage``: tmp/ file written and
  fsynced, linked into ``new/``) and then fsyncs each ``new/`` it touched *once*;
* while the lanes are busy, jobs accumulate into the next batch, so a burst costs a
  few hops and directory fsyncs per batch, not per message, and a lone message pays
  two fsyncs (its file, then ``new/``).

**Durability** (DESIGN principle 3): a job's future resolves with its file name only
after its own file was fsynced before the link (``stage``) *and* an fsync of its
``new/`` that started after the link returned — the batch's, in the same thread,
after every stage of the batch.  fsync of a directory makes every change to its
entries made before the call durable, so it covers every link of the batch.  If that
fsync fails, every message the batch linked into that ``new/`` is removed again and
fails with the error (temporary for the agent): a failed delivery leaves nothing in
``tmp/`` or ``new/``, so the retry does not produce a second copy.  A job that fails
to stage has already cleaned up after itself and fails alone.

**Slow disks.**  Staging a message includes its own fsync, so a lane that stages one
message after the other delivers at most one message per fsync: 125 a second with
8 ms flushes, a fraction of what the server accepts.  When even the fastest stage of
a batch takes longer than ``SLOW_STAGE``, the next batches stage their messages on
``STAGE_THREADS`` threads at once, so the fsyncs overlap (the spool does the same for
large bodies).  On a fast disk the batch stays in one thread: threads fighting over
the interpreter lock around every system call cost more CPU than they save.  The
directory fsync still follows every stage of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailwright.delivery.maildir import Maildir
from mailwright.fs.durable import fsync_dir

# Batches in flight at once.  A lane fsyncs its files one after the other, so one
# lane would cap throughput at 1 / fsync latency on a slow disk; two keep the disk
# busy while the other lane waits.  More cost CPU: threads contending for the
# interpreter lock around every system call (measured on a 2-core VM, 1 KB messages:
# 1 lane 0.75-0.84 ms of worker CPU per message, 2 lanes 0.90-0.95, the former one
# thread per message 1.5-1.8).
LANES = 2
# Jobs per batch: bounds the latency of the first message of a huge burst.
MAX_BATCH = 64
# Seconds for the fastest stage of a batch above which batches stage in parallel (a
# fast disk's file fsync takes well under a millisecond; a rotating or network
# disk's, several).
SLOW_STAGE = 0.002
# Threads that stage one batch in parallel on a slow disk (fsyncs in flight at once).
STAGE_THREADS = 16


@dataclass(slots=True)
class _Job:
    maildir: Maildir
    stage: Callable[[], str]  # blocking: Maildir.stage (plus the caller's retry policy)
    future: asyncio.Future[str]


class MaildirBatcher:
    """Runs ``Maildir.stage`` jobs in batches and syncs each ``new/`` once per batch."""

    def __init__(self, lanes: int = LANES, max_batch: int = MAX_BATCH) -> None:
        self.lanes = lanes
        self.max_batch = max_batch
        self.batches = 0  # thread hops made, for tests and metrics
        self.dir_syncs = 0  # fsyncs of new/ made
        self.parallel = False  # the last batch found stages slow: stage in parallel
        self._pending: list[_Job] = []
        self._running: set[asyncio.Task[None]] = set()
        # Made on the first slow batch; its idle threads end with the process.
        self._stage_pool: ThreadPoolExecutor | None = None

    async def deliver(self, maildir: Maildir, stage: Callable[[], str]) -> str:
        """Run ``stage`` (which links a fsynced file into ``maildir``'s ``new/`` and
        returns its name) in a batch; return the name once ``new/`` is synced.

        Raises what ``stage`` raised, or the ``OSError`` of the ``new/`` fsync.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(maildir, stage, future))
        if len(self._running) < self.lanes:
            # The lane's first step runs on the next loop iteration: every job queued
            # until then (other deliveries started in this one) joins its first batch.
            task = asyncio.create_task(self._lane(), name="maildir-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            batch = [job for job in batch if not job.future.cancelled()]
            if not batch:
                continue
            try:
                outcomes = await loop.run_in_executor(None, self._run, batch)
            except BaseException as exc:  # the executor is gone, or cancelled
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(
                            exc if isinstance(exc, Exception) else OSError("delivery cancelled")
                        )
                raise
            self.batches += 1
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # the attempt was cancelled (stop, timeout)
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _run(self, batch: list[_Job]) -> list[str | BaseException]:
        """Worker thread: stage every job, then one fsync per ``new/`` touched."""
        staged: dict[str, list[int]] = {}  # new/ -> indices of jobs linked into it
        timed: list[tuple[str | BaseException, float]] = []
        try:
            if self.parallel and len(batch) > 1:
                timed = self._stage_parallel(batch)
            else:
                for job in batch:  # filled one by one: an interruption unstages the rest
                    timed.append(_timed_stage(job))
            # The fastest stage of the batch: on a slow disk every stage waits for its
            # fsync, while a stage that only waited for the CPU (this process runs at
            # idle priority) is not a sign of a slow disk.
            self.parallel = min(seconds for _, seconds in timed) > SLOW_STAGE
            outcomes = [outcome for outcome, _ in timed]
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, str):
                    staged.setdefault(batch[i].maildir.new_dir, []).append(i)
            while staged:
                new_dir, indices = staged.popitem()
                try:
                    fsync_dir(new_dir)
                except OSError as exc:
                    self._unstage(batch, outcomes, indices)
                    for i in indices:
                        outcomes[i] = exc
                self.dir_syncs += 1
        except BaseException:
            # Not reported, so not known durable: leave nothing a retry would duplicate.
            done = [outcome for outcome, _ in timed]
            self._unstage(batch, done, [i for i, o in enumerate(done) if isinstance(o, str)])
            raise
        return outcomes

    def _stage_parallel(self, batch: list[_Job]) -> list[tuple[str | BaseException, float]]:
        """Every job's ``stage`` at once (a slow disk: the fsyncs overlap); returns when
        all are done, with each one's outcome, even if one raised BaseException."""
        if self._stage_pool is None:
            self._stage_pool = ThreadPoolExecutor(
                STAGE_THREADS, thread_name_prefix="mailwright-maildir"
            )
        futures = [self._stage_pool.submit(_timed_stage, job) for job in batch]
        timed: list[tuple[str | BaseException, float]] = []
        for future in futures:
            try:
                timed.append(future.result())
            except BaseException as exc:  # not from stage (it catches): keep the slot
                timed.append((exc, 0.0))
        return timed

    @staticmethod
    def _unstage(
        batch: list[_Job], outcomes: list[str | BaseException], indices: list[int]
    ) -> None:
        for i in indices:
            name = outcomes[i]
            if isinstance(name, str):
                with contextlib.suppress(OSError):
                    batch[i].maildir.unstage(name)


def _timed_stage(job: _Job) -> tuple[str | BaseException, float]:
    started = time.monotonic()
    try:
        outcome: str | BaseException = job.stage()
    except Exception as exc:  # stage removed what it wrote
        outcome = exc
    return outcome, time.monotonic() - started
