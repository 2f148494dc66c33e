"""The queue runner: due times, bounded concurrent delivery, backoff, expiry, bounces.

Separate from storage (DESIGN "spool" seam): it only uses the ``SpoolStore`` protocol
and a ``DeliveryAgent``, so the same runner drives the embedded and a shared backend.

Loop: ``claim`` the due messages (a lease of ``LEASE`` seconds for this runner's
``owner``: another runner on the same store, in this process, another one or on
another node, does not get them while it runs) and start one task per claimed
message up to ``config.concurrency``; the rest of the claim (up to ``FETCH_AHEAD``
times the concurrency) waits in memory and a finishing task starts the next one
directly, so a backlog costs one claim per ``FETCH_AHEAD * concurrency`` deliveries,
not two queries per delivery.  A store that reads bodies with the claim (the embedded
one: inline bodies) saves the ``read_body`` per message too.  Each attempt's
``record_attempt`` ends its lease; the loop renews the leases of what it still holds
every ``LEASE / LEASE_RENEWALS`` seconds, so a long attempt never loses its message,
and a runner that dies loses its leases after at most ``LEASE``.  When the claim was
not full, ``next_due`` says when to look again; sleep until then (at most
``MAX_IDLE_SLEEP``, so a missed wake-up costs seconds, not hours) or until ``kick()``
(a no-op while every slot is busy and more is due: a finishing attempt continues
with the backlog or wakes the loop itself).  At start-up the runner releases the
leases its ``owner`` held before a restart, so the first claim returns everything
left: every acknowledged, undelivered message is retried at once.

**Fresh mail** skips the queue scan: the server calls ``offer(message, body)`` right
after ``put`` returns, with the ``SpooledMessage`` it returned and
``writer.body_bytes()``.  If a delivery slot is free the attempt starts at once from
memory — no ``due``, ``load`` or ``read_body`` round trip (``body`` None: one
``read_body``); otherwise ``offer`` is a ``kick()`` and the message is found by the next
scan, in due order.  A message is never attempted twice at once: ``_inflight`` holds
the ids being attempted, claimed-but-waiting ones are in ``_ready`` (or ``_held``), and
a scan ignores every id whose attempt *finished while the claim ran*.  So ``offer``
racing a scan, in any order, ends in one attempt.  An offered message is not leased
(that would cost a store write per message before its delivery): it is exclusive
because one runner serves the store that the server which offers it writes to —
``spool.runnerlock`` on one host; a shared backend's server would have to ``put`` its
fresh mail leased to its own runner.  If a scan claims a message that is being
attempted from an offer, the attempt's ``record_attempt`` ends that lease.

One attempt, per message (RFC 5321 §4.5.4.1 retry strategy): ``agent.deliver`` for
the pending recipients (an exception, a timeout or a missing result counts as a
*temporary* failure, DESIGN principle 4); the results applied to the message with
backoff, jitter and expiry (``outcome``); recipients that failed now bounced *now*,
in one RFC 3464 DSN queued in the same store (``notices``), even if others are still
deferred — the sender learns about a typo in minutes, not after days — and the
success and delay reports the attempt calls for (NOTIFY, ``delay_warning_time``);
then no recipient pending -> ``remove``, otherwise ``record_attempt``: the
recipients' state, one history row per recipient tried (time, structured reply,
remote host), the end of the lease.

Delivery is **at-least-once**, the standard MTA trade-off: a crash mid-attempt leaves
the message PENDING and it is delivered again later — possibly a duplicate, never a
loss.  The window is one transaction, not one attempt: an agent reports each part
that finishes early (a destination, a route) through ``progress``, and its 250s are
recorded before the agent goes on (``progress.EarlyResults``), so a recipient whose
MX took the message is not delivered again because another MX was slow.
For the same reason every report (``notices``) is stored *before* the original is
updated: if a bounce cannot be stored, the failed recipients stay PENDING with their
5xx reply, and the next attempt reports them without trying them again
(``outcome.refused_before``), so no non-delivery report is ever silently lost and no
refused recipient retried.  If the store refuses to *record* an attempt, the runner
keeps the outcome (``_unrecorded``) and the next attempt starts from it: a recipient
that got 250 is not delivered twice because of our own failed write.

**Told before found.**  The server writes a message's ``accepted`` mail-log line after
the commit that makes it visible here, maybe in another process with its own log
buffer; the line is in the file before the server tells the runner (``offer``,
``announce``).  So that no ``delivered`` line can precede it, a runner built with
``fresh_hold`` (the server's and the worker's: ``FRESH_HOLD``) keeps a first-attempt
message that a scan claims before it was told about it in ``_held`` (leased, not
started) until it is told, or until ``fresh_hold`` seconds after its arrival — a
session process that died between its commit and its report never tells, and its
mail must still go out.

``on_event`` reports each recipient's outcome (``events``).  ``wakeup`` (the spool's
``spool/wake`` FIFO) lets other processes — ``mailwright sendmail``, ``queue flush`` —
announce what they stored and wake the loop while ``run()`` runs.  A message deleted by
the operator while offered in flight (``MessageGone``) is dropped without a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

from mailwright.config import DeliveryConfig
from mailwright.queue.agent import ClosableAgent, DeliveryAgent, DeliveryResult
from mailwright.queue.dsn import ReportKind
from mailwright.queue.events import EventCallback
from mailwright.queue.notices import Notices
from mailwright.queue.outcome import apply_results, history, refused_before
from mailwright.queue.progress import EarlyResults, copy_message
from mailwright.smtp import codes
from mailwright.spool.model import (
    Attempt,
    Claimed,
    RecipientState,
    SpooledMessage,
)
from mailwright.spool.store import MessageGone, SpoolError, SpoolStore
from mailwright.spool.wakeup import WakeupSource

log = logging.getLogger("mailwright.queue.runner")

# Longest sleep between queue scans, even when nothing seems due.
MAX_IDLE_SLEEP = 30.0
# A scan fetches up to this many times ``concurrency`` due messages: the ones that do
# not fit into free slots wait in memory, so a backlog is not re-queried per delivery.
FETCH_AHEAD = 4
# After a store error, wait this long before touching the queue again.
STORE_ERROR_PAUSE = 5.0
# Graceful stop: how long in-flight deliveries may finish before being cancelled.
STOP_GRACE = 30.0
# An attempt that takes longer than this is abandoned as a temporary failure.  Agents
# have their own per-command timeouts (RFC 5321 §4.5.3.2); this is the backstop.
ATTEMPT_TIMEOUT = 30 * 60.0

# How long a fresh message a scan found is left for the server to announce it (see
# "Told before found" above): well above the server's report and flush delays (ms),
# short enough that mail of a session process that died in between is not held long.
FRESH_HOLD = 2.0

# A claimed message is this runner's for LEASE seconds unless renewed: the longest a
# message waits after its runner died (Postfix's qmgr has no peer to wait for; this
# is the price of letting several runners share a queue).  Renewed LEASE_RENEWALS
# times per lease, so a renewal delayed by a busy loop or a slow store never lets a
# live attempt's lease run out.
LEASE = 300.0
LEASE_RENEWALS = 5
# Who holds a lease: stable across restarts of this node, so a restarted runner takes
# its own leases back at once (``release(owner)``) instead of waiting out LEASE.
DEFAULT_OWNER = socket.gethostname() or "localhost"


class QueueRunner:
    """Delivers queued mail; ``run()`` until ``stop()``.  See the module docstring."""

    def __init__(
        self,
        store: SpoolStore,
        agent: DeliveryAgent,
        config: DeliveryConfig,
        *,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] = time.time,
        reporting_mta: str = "localhost",
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        jitter: Callable[[], float] = random.random,
        fresh_hold: float = 0.0,
        owner: str = DEFAULT_OWNER,
        lease: float = LEASE,
        wakeup: WakeupSource | None = None,
        postmaster: str | None = None,
    ) -> None:
        self._store = store
        self._agent = agent
        self._config = config
        self._on_event = on_event
        self._clock = clock
        self._reporting_mta = reporting_mta
        self._attempt_timeout = attempt_timeout
        self._jitter = jitter
        self._fresh_hold = fresh_hold
        self._owner = owner
        self._lease = lease
        self._wakeup = wakeup
        self._renew_at = 0.0  # when the held leases are renewed next
        # Ids the server announced (offer/announce) -> when; in announcement order,
        # forgotten once attempted or ``fresh_hold`` old (the hold is over anyway).
        self._announced: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        # Fetched, due, not yet started (in due order, with the body if the scan had
        # it); started as slots free up.
        self._ready: OrderedDict[str, tuple[SpooledMessage, bytes | None]] = OrderedDict()
        # Claimed first attempts the server has not announced yet ("Told before found").
        self._held: dict[str, tuple[SpooledMessage, bytes | None]] = {}
        # While a scan's query runs: ids whose attempt finished meanwhile (stale in it).
        self._finished: set[str] | None = None
        self._more_due = False  # the queue may hold due messages not fetched yet
        self._paused_until = 0.0
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        # Double bounces go to ``postmaster`` (``notices.postmaster_address``).
        postmaster = postmaster or f"postmaster@{reporting_mta}"
        self._notices = Notices(store, config, reporting_mta, postmaster)
        # Attempt outcomes the store refused to record, by queue id (``_record``); an
        # entry lives until the message's next attempt, after the store-error pause.
        self._unrecorded: dict[str, tuple[SpooledMessage, list[Attempt]]] = {}
        self.bounces_sent = 0  # failure reports queued (double bounces included)
        self.notices_sent = 0  # delay and success reports queued
        self.scans = 0  # finished looks at the queue (``_fill``): a metric; tests count it

    # -- control -----------------------------------------------------------------------

    def kick(self) -> None:
        """Look at the queue now (call from the event loop thread).

        Skipped while every slot is busy and more is due: the next finishing attempt
        continues anyway (``_start``), and the delivery worker kicks once per message.
        """
        if self._more_due and len(self._tasks) >= self._config.concurrency:
            return
        self._wake.set()

    def announce(self, queue_id: str) -> None:
        """The server stored ``queue_id`` and its ``accepted`` line is in the mail log:
        it may be attempted now (see "Told before found"); look at the queue."""
        if self._fresh_hold > 0:
            self._announced.pop(queue_id, None)  # keep the dict in announcement order
            self._announced[queue_id] = self._clock()
        held = self._held.pop(queue_id, None)
        if held is not None:
            self._ready[queue_id] = held
            self._start_ready()
        self.kick()

    def offer(self, message: SpooledMessage, body: bytes | None = None) -> None:
        """A message was just stored: deliver it now if a slot is free, else ``kick()``.

        Call from the event loop thread right after ``put`` returned ``message``;
        ``body`` is ``writer.body_bytes()`` (None: read it from the store).  The runner
        works on its own copy of ``message``.  Never starts a second attempt of a
        message already being attempted or waiting in the fetched backlog.
        """
        qid = message.queue_id
        if qid in self._inflight:
            return
        now = self._clock()
        if (
            not self._running
            or self._stopping
            or len(self._tasks) >= self._config.concurrency
            or now < self._paused_until
            or message.next_attempt > now
            or not message.pending
        ):
            if qid not in self._ready:
                self.announce(qid)  # a scan finds it: it may be attempted then
                self._wake.set()
            return
        self._ready.pop(qid, None)
        self._held.pop(qid, None)
        self._start(copy_message(message), body)

    async def run(self) -> None:
        """Deliver until ``stop()``: fill free slots, then sleep until due or kicked."""
        if self._running:
            raise RuntimeError("QueueRunner.run() is already running")
        # ``_stopping`` is not reset: a stop() that came before the task first ran
        # (a server stopped right after starting) must still end it.
        self._running = True
        self._stopped.clear()
        if self._wakeup is not None:
            self._wakeup.start(self._woken)
        try:
            await self._release(None)  # what this owner held before a restart
            while not self._stopping:
                self._wake.clear()
                delay = await self._fill()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(delay, 0.0), MAX_IDLE_SLEEP)):
                        await self._wake.wait()
        finally:
            if self._wakeup is not None:
                self._wakeup.stop()
            held = [*self._ready, *self._held]  # claimed, never started: give them back
            self._ready.clear()
            self._held.clear()
            if held:
                await self._release(held)
            self._running = False
            self._stopped.set()

    def _woken(self, queue_ids: list[str]) -> None:
        """Another process stored ``queue_ids`` and logged them (none: look anyway)."""
        for qid in queue_ids:
            self.announce(qid)
        self.kick()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Take no new work; let in-flight attempts finish for ``grace`` s, cancel the rest.

        A cancelled attempt leaves its message PENDING: it is retried after restart.
        Then the agent is closed (``ClosableAgent``): the relay's idle sessions get
        their QUIT (RFC 5321 §4.1.1.10) now, not a reset when the process exits.
        """
        self._stopping = True
        self._wake.set()
        tasks = set(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._running:
            await self._stopped.wait()
        if isinstance(self._agent, ClosableAgent):
            try:
                await self._agent.close()
            except Exception as exc:  # stopping goes on: the process is ending anyway
                log.warning("closing the delivery agent failed: %r", exc)

    async def run_once(self) -> int:
        """Attempt every message due now once (``queue flush``, tests); return the count.

        Messages queued during the run (bounces) are included if they are due.
        """
        semaphore = asyncio.Semaphore(self._config.concurrency)
        seen: set[str] = set()

        async def guarded(message: SpooledMessage) -> None:
            async with semaphore:
                await self._process(message)

        while True:
            limit = self._config.concurrency * FETCH_AHEAD
            batch = await self._store.claim(self._clock(), limit, self._lease, self._owner)
            skip = seen | self._inflight
            fresh = [c.message for c in batch if c.message.queue_id not in skip]
            skipped = [c.message.queue_id for c in batch if c.message.queue_id in skip]
            if skipped:
                await self._release(skipped)
            if not fresh:
                return len(seen)
            seen.update(m.queue_id for m in fresh)
            await asyncio.gather(*(guarded(m) for m in fresh))

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting message that is due but not started has waited
        (0.0 when none waits): the delivery worker's backlog signal
        (``runtime.priority``).

        The fetched backlog (``_ready``, and ``_held`` first attempts, which are due and
        wait only for their announcement) holds the queue's earliest due messages,
        since a claim returns them earliest due first; so its oldest is the oldest of
        the whole queue.  Between the last fetched message's start and the next
        claim's return it is empty although the store may hold more: the caller
        smooths that gap over (``runtime.priority.BACKLOG_CALM_FOR``)."""
        due = [m.next_attempt for m, _ in self._ready.values()]
        due.extend(m.next_attempt for m, _ in self._held.values())
        if not due:
            return 0.0
        return max(self._clock() - min(due), 0.0)

    # -- the loop ---------------------------------------------------------------------

    async def _fill(self) -> float:
        """Start attempts for due messages; return seconds until something is due."""
        try:
            return await self._scan()
        finally:
            self.scans += 1  # counted when the look at the queue is over

    async def _scan(self) -> float:
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        concurrency = self._config.concurrency
        self._forget_announcements(now)
        self._unhold(now)
        try:
            await self._renew(now)
        except SpoolError as exc:
            return self._store_failed("lease renewal", exc)
        self._start_ready()
        if self._stopping or self._ready or len(self._tasks) >= concurrency:
            self._more_due = True  # a finishing task starts the backlog or wakes us
            return self._backlog_sleep()
        # Offered messages in flight hold no lease, so a claim may return them (and
        # they are skipped): room for them, as many useful ones as a full claim.
        limit = concurrency * FETCH_AHEAD + len(self._inflight)
        finished: set[str] = set()
        self._finished = finished
        try:
            batch = await self._store.claim(now, limit, self._lease, self._owner)
            upcoming = None if len(batch) >= limit else await self._store.next_due(now)
        except SpoolError as exc:
            return self._store_failed("queue scan", exc)
        finally:
            self._finished = None
        self._take(batch, now, finished)
        self._more_due = len(batch) >= limit
        self._start_ready()
        if self._ready:
            self._more_due = True
            return self._backlog_sleep()
        if upcoming is not None and upcoming <= now:
            upcoming = None  # only messages being attempted (offered) or leased elsewhere
        for message, _ in self._held.values():
            until = message.received_at + self._fresh_hold
            upcoming = until if upcoming is None else min(upcoming, until)
        if upcoming is None:
            return MAX_IDLE_SLEEP
        return upcoming - self._clock()

    def _take(self, batch: list[Claimed], now: float, finished: set[str]) -> None:
        """Sort a claim into ready and held messages (earliest due first)."""
        for claimed in batch:
            message, qid = claimed.message, claimed.message.queue_id
            if qid in self._inflight or qid in finished or qid in self._ready:
                continue  # its attempt's record_attempt ends the lease (or already did)
            if self._unannounced(message, now):
                self._held[qid] = (message, claimed.body)
            else:
                self._held.pop(qid, None)
                self._ready[qid] = (message, claimed.body)

    def _unhold(self, now: float) -> None:
        """Held messages whose hold is over are ready (announced or not)."""
        for qid, (message, body) in list(self._held.items()):
            if now - message.received_at >= self._fresh_hold:
                del self._held[qid]
                self._ready[qid] = (message, body)

    async def _renew(self, now: float) -> None:
        """Renew the leases this runner holds, every ``LEASE / LEASE_RENEWALS`` s."""
        if now < self._renew_at:
            return
        self._renew_at = now + self._lease / LEASE_RENEWALS
        held = [*self._inflight, *self._ready, *self._held]
        if not held:
            return
        renewed = set(await self._store.renew(held, self._owner, now + self._lease))
        for qid in held:
            if qid in renewed or qid in self._inflight:
                continue  # an offered message in flight holds no lease: nothing lost
            # The lease ran out and someone else may have it: not ours to start.
            log.warning("%s: lease lost before the attempt started", qid)
            self._ready.pop(qid, None)
            self._held.pop(qid, None)

    async def _release(self, queue_ids: list[str] | None) -> None:
        """Give leases back (best effort: they expire anyway)."""
        try:
            await self._store.release(self._owner, queue_ids)
        except SpoolError as exc:
            log.warning("cannot release queue leases (they expire by themselves): %s", exc)

    def _store_failed(self, what: str, exc: SpoolError) -> float:
        log.error("%s failed, pausing %.0f s: %s", what, STORE_ERROR_PAUSE, exc)
        self._paused_until = self._clock() + STORE_ERROR_PAUSE
        return STORE_ERROR_PAUSE

    def _unannounced(self, message: SpooledMessage, now: float) -> bool:
        """A first attempt the server has not announced yet, within ``fresh_hold``."""
        return (
            message.attempts == 0
            and now - message.received_at < self._fresh_hold
            and message.queue_id not in self._announced
        )

    def _forget_announcements(self, now: float) -> None:
        """Drop announcements older than ``fresh_hold``: their messages are no longer
        held, announced or not (oldest first: the dict is in announcement order)."""
        announced = self._announced
        while announced:
            qid, when = next(iter(announced.items()))
            if now - when < self._fresh_hold:
                return
            del announced[qid]

    def _backlog_sleep(self) -> float:
        """Sleep while every slot is busy: a finishing task wakes us, or the pause ends
        (an attempt may pause the runner while the scan's query runs)."""
        pause = self._paused_until - self._clock()
        return pause if pause > 0 else MAX_IDLE_SLEEP

    def _start_ready(self) -> None:
        """Start fetched messages while slots are free."""
        if self._stopping or self._clock() < self._paused_until:
            return
        while self._ready and len(self._tasks) < self._config.concurrency:
            _, (message, body) = self._ready.popitem(last=False)
            self._start(message, body)

    def _start(self, message: SpooledMessage, body: bytes | None = None) -> None:
        qid = message.queue_id
        self._inflight.add(qid)
        self._announced.pop(qid, None)
        task = asyncio.create_task(self._process(message, body), name=f"deliver-{qid}")
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._inflight.discard(qid)
            if self._finished is not None:
                self._finished.add(qid)
            if self._ready:
                self._start_ready()
            elif self._more_due:
                self._wake.set()

        task.add_done_callback(done)

    # -- one attempt ------------------------------------------------------------------

    async def _process(self, message: SpooledMessage, body: bytes | None = None) -> None:
        try:
            await self._attempt(message, body)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one message kill the runner; it stays PENDING
            log.exception("%s: unexpected error during delivery", message.queue_id)
            self._paused_until = self._clock() + STORE_ERROR_PAUSE
            await self._release([message.queue_id])  # retried after the pause, not LEASE

    async def _attempt(self, message: SpooledMessage, body: bytes | None = None) -> None:
        qid = message.queue_id
        rows: list[Attempt] = []
        unrecorded = self._unrecorded.pop(qid, None)
        if unrecorded is not None:  # our state is newer than the store's: go on from it
            message, rows = unrecorded
            if message.pending and message.next_attempt > self._clock():
                await self._record(message, rows)  # attempted again when it is due
                return
        # Refused (5xx) before, but its failure report could not be stored then: never
        # tried again, only reported (``notices``).
        refused = refused_before(message)
        pending = message.pending
        results: dict[str, DeliveryResult] = {}
        fallback = DeliveryResult(codes.R451_AGENT_FAILED)
        # With one recipient there is no "early": its answer ends the attempt.
        early = None
        if len(pending) > 1:
            early = EarlyResults(
                self._store,
                self._owner,
                message,
                pending,
                refused,
                clock=self._clock,
                on_event=self._on_event,
            )
        if pending:
            try:
                if body is None:
                    body = await self._store.read_body(qid)
            except SpoolError as exc:
                log.error("%s: %s", qid, exc)
                fallback = DeliveryResult(codes.R451_BODY_UNREADABLE, str(exc))
            else:
                results, fallback = await self._deliver(message, body, pending, early)
        settled = early.settled if early is not None else {}
        recorded = early.recorded if early is not None else set()
        tried = apply_results(
            message,
            pending,
            results,
            fallback,
            now=self._clock(),
            config=self._config,
            jitter=self._jitter,
            on_event=self._on_event,
            settled=settled,
        )
        # Reports (``notices``) are stored before the state is recorded: none is lost.
        now = self._clock()
        for kind, report in await self._notices.after_attempt(message, tried, body, now, refused):
            if kind in (ReportKind.FAILURE, ReportKind.POSTMASTER):
                self.bounces_sent += 1
            else:
                self.notices_sent += 1
            self.offer(*report)
        late = [t for t in tried if id(t[0]) not in recorded]  # recorded: in the history
        await self._record(message, rows + history(message, late, self._clock()))

    async def _record(self, message: SpooledMessage, rows: list[Attempt]) -> None:
        """Persist the attempt (``record_attempt``, or ``remove`` when nothing is pending).

        If the store refuses, the outcome is kept in ``_unrecorded`` and the message's
        next attempt starts from it, not from the older stored copy: a recipient that
        got 250 is never delivered again, nor a refused one retried, because of our own
        failed write.  (A crash before the write is at-least-once delivery, see above.)
        """
        qid = message.queue_id
        try:
            if message.pending:
                await self._store.record_attempt(message, rows, self._owner)
            else:
                await self._store.remove(qid)
        except MessageGone:  # `queue delete` took it while it was offered in flight
            log.info("%s: deleted during its delivery attempt; nothing to record", qid)
        except SpoolError as exc:
            log.error("%s: cannot record delivery state (will retry): %s", qid, exc)
            self._unrecorded[qid] = (message, rows)
            self._paused_until = self._clock() + STORE_ERROR_PAUSE
            await self._release([qid])

    async def _deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        pending: list[RecipientState],
        progress: EarlyResults | None,
    ) -> tuple[dict[str, DeliveryResult], DeliveryResult]:
        """Run the agent; returns (results, result for recipients it did not report)."""
        try:
            async with asyncio.timeout(self._attempt_timeout):
                results = await self._agent.deliver(
                    message, body, [state.recipient for state in pending], progress
                )
        except TimeoutError:
            reason = f"delivery attempt timed out after {self._attempt_timeout:.0f} s"
            return {}, DeliveryResult(codes.R451_AGENT_FAILED, reason)
        except Exception as exc:
            log.warning("%s: delivery agent raised %r", message.queue_id, exc)
            return {}, DeliveryResult(codes.R451_AGENT_FAILED, f"agent error: {exc!r}")
        if not isinstance(results, dict):
            return {}, DeliveryResult(
                codes.R451_AGENT_FAILED, f"agent returned {type(results).__name__}"
            )
        return results, DeliveryResult(codes.R451_NO_RESULT, "no result for this recipient")
