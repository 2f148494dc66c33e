"""The queue runner: due times, bounded concurrent delivery, backoff, expiry, bounces.

Separate from storage (DESIGN "spool" seam): it only uses the ``SpoolStore`` protocol
and a ``DeliveryAgent``, so the same runner drives the embedded and a shared backend.

Loop: fetch ``due(now + MAX_IDLE_SLEEP)`` — one query gives both the messages due now
and the earliest next due time — and start one task per due message up to
``config.concurrency``; the rest of the fetch (up to ``FETCH_AHEAD`` times the
concurrency) waits in memory and a finishing task starts the next one directly, so a
backlog costs one query per ``FETCH_AHEAD * concurrency`` deliveries, not two per
delivery.  A store that offers ``due_with_bodies`` (the embedded one) returns the
inline bodies of the due messages in the same query, so such a backlog costs no
``read_body`` per message either.  Then sleep until the earliest future
``next_attempt`` (at most ``MAX_IDLE_SLEEP``, so a missed wake-up costs seconds, not
hours) or until ``kick()`` (a no-op while every slot is busy and more is due: a
finishing attempt continues with the backlog or wakes the loop itself).
At start-up the first fetch naturally returns everything left from before a restart:
every acknowledged, undelivered message is retried.

**Fresh mail** skips the queue scan: the server calls ``offer(message, body)`` right
after ``put`` returns, with the ``SpooledMessage`` it returned and
``writer.body_bytes()``.  If a delivery slot is free the attempt starts at once from
memory — no ``due``, ``load`` or ``read_body`` round trip (``body`` None: one
``read_body``); otherwise ``offer`` is a ``kick()`` and the message is found by the next
scan, in due order.  A message is never attempted twice at once: ``_inflight`` holds
the ids being attempted, fetched-but-waiting ones are in ``_ready``, and a scan ignores
every id whose attempt *finished while the scan's query ran* (its snapshot may predate
the attempt's ``update``/``remove``).  So ``offer`` racing a scan, in any order, ends in
one attempt — also with a store whose reads are not ordered after its commits.

One attempt, per message (RFC 5321 §4.5.4.1 retry strategy):

* ``agent.deliver`` for the pending recipients; an exception, a timeout or a missing
  result counts as a *temporary* failure (DESIGN principle 4);
* 2xx -> DELIVERED; 5xx -> FAILED; 4xx -> stays PENDING with ``attempts + 1``; the
  message's next attempt is ``min(retry_initial * 2**(attempts-1), retry_max)`` plus
  up to ``JITTER_FRACTION`` of random jitter, so a burst deferred together does not
  retry in lockstep against the same remote host;
* a temporary failure after ``max_queue_lifetime`` since arrival becomes FAILED with
  status 4.4.7 (RFC 3463 "delivery time expired"); the message always gets its
  attempt first, as in Postfix, so a long outage of *ours* does not bounce mail that
  could be delivered now;
* recipients that failed in this attempt are bounced *now*, in one RFC 3464 DSN (see
  ``dsn``), even if others are still deferred — the sender learns about a typo in
  minutes, not after days.  The DSN is queued in the same store
  (``MAIL FROM:<>``) and delivered like any message.  No DSN for a null sender (logged
  only), nor for NOTIFY=NEVER / NOTIFY without FAILURE;
* no recipient pending -> ``remove``; otherwise ``update``.

Delivery is **at-least-once**, the standard MTA trade-off: the queue entry changes only
after the agent returns, so a crash (or a failed store write) mid-attempt leaves the
message PENDING and it is delivered again later — possibly a duplicate, never a loss.
For the same reason the bounce is stored *before* the original is updated: if that
store fails, the failed recipients go back to PENDING and are retried, so no
non-delivery report is ever silently lost.

**Told before found.**  The server writes a message's ``accepted`` mail-log line after
the commit that makes it visible here, maybe in another process with its own log
buffer; the line is in the file before the server tells the runner (``offer``,
``announce``).  So that no ``delivered`` line can precede it, a runner built with
``fresh_hold`` (the server's and the worker's: ``FRESH_HOLD``) leaves a first-attempt
message that a scan finds before it was told about it alone until it is told, or
until ``fresh_hold`` seconds after its arrival — a session process that died between
its commit and its report never tells, and its mail must still go out.

``on_event(kind, message, address, result)`` reports each outcome ("delivered",
"deferred", "bounced", "expired") to the mail log; it is a plain callable so this module
does not depend on ``obs``.  Exceptions it raises are logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryAgent, DeliveryResult
from mailwright.queue.dsn import bounce_body_type, build_bounce, split_headers
from mailwright.queue.dsn import wants_failure_notice as _wants_failure_notice
from mailwright.queue.retry import JITTER_FRACTION, expired_reply, retry_delay
from mailwright.smtp import Reply
from mailwright.spool.model import (
    Envelope,
    Recipient,
    RecipientState,
    RecipientStatus,
    SpooledMessage,
)
from mailwright.spool.store import BodyPrefetchStore, SpoolError, SpoolStore

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

AGENT_FAILED = Reply.of(451, "4.3.0", "Temporary delivery failure, will retry")
NO_RESULT = Reply.of(451, "4.3.0", "Delivery agent gave no result, will retry")
BODY_UNREADABLE = Reply.of(451, "4.3.0", "Queued message unreadable, will retry")

EventCallback = Callable[[str, SpooledMessage, str, DeliveryResult], None]


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
        # Ids the server announced (offer/announce) -> when; in announcement order,
        # forgotten once attempted or ``fresh_hold`` old (the hold is over anyway).
        self._announced: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        # Fetched, due, not yet started (in due order, with the body if the scan had
        # it); started as slots free up.
        self._ready: OrderedDict[str, tuple[SpooledMessage, bytes | None]] = OrderedDict()
        # While a scan's query runs: ids whose attempt finished meanwhile (stale in it).
        self._finished: set[str] | None = None
        self._more_due = False  # the queue may hold due messages not fetched yet
        self._paused_until = 0.0
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        self.bounces_sent = 0

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
        self._start(_copy(message), body)

    async def run(self) -> None:
        """Deliver until ``stop()``: fill free slots, then sleep until due or kicked."""
        if self._running:
            raise RuntimeError("QueueRunner.run() is already running")
        # ``_stopping`` is not reset: a stop() that came before the task first ran
        # (a server stopped right after starting) must still end it.
        self._running = True
        self._stopped.clear()
        try:
            while not self._stopping:
                self._wake.clear()
                delay = await self._fill()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(delay, 0.0), MAX_IDLE_SLEEP)):
                        await self._wake.wait()
        finally:
            self._running = False
            self._stopped.set()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Take no new work; let in-flight attempts finish for ``grace`` s, cancel the rest.

        A cancelled attempt leaves its message PENDING: it is retried after restart.
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
            limit = self._config.concurrency * 4 + len(seen)
            batch = await self._store.due(self._clock(), limit)
            skip = seen | self._inflight
            fresh = [m for m in batch if m.queue_id not in skip]
            if not fresh:
                return len(seen)
            seen.update(m.queue_id for m in fresh)
            await asyncio.gather(*(guarded(m) for m in fresh))

    # -- the loop ---------------------------------------------------------------------

    async def _fill(self) -> float:
        """Start attempts for due messages; return seconds until something is due."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        concurrency = self._config.concurrency
        self._start_ready()
        if self._stopping or self._ready or len(self._tasks) >= concurrency:
            self._more_due = True  # a finishing task starts the backlog or wakes us
            return self._backlog_sleep()
        limit = concurrency * FETCH_AHEAD + len(self._inflight)
        self._forget_announcements(now)
        finished: set[str] = set()
        self._finished = finished
        try:
            found, batch = await self._scan(now, limit)
        except SpoolError as exc:
            log.error("queue scan failed, pausing %.0f s: %s", STORE_ERROR_PAUSE, exc)
            self._paused_until = self._clock() + STORE_ERROR_PAUSE
            return STORE_ERROR_PAUSE
        finally:
            self._finished = None
        upcoming: float | None = None
        held_until: float | None = None
        for message, body in batch:  # earliest due first
            qid = message.queue_id
            if message.next_attempt > now:
                upcoming = message.next_attempt
                break
            if self._unannounced(message, now):
                until = message.received_at + self._fresh_hold
                held_until = until if held_until is None else min(held_until, until)
                continue
            if qid not in self._inflight and qid not in finished and qid not in self._ready:
                self._ready[qid] = (message, body)
        self._more_due = found >= limit and upcoming is None
        self._start_ready()
        if self._ready:
            self._more_due = True
            return self._backlog_sleep()
        if held_until is not None:
            upcoming = held_until if upcoming is None else min(upcoming, held_until)
        if upcoming is None:
            return MAX_IDLE_SLEEP
        return upcoming - self._clock()

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

    async def _scan(
        self, now: float, limit: int
    ) -> tuple[int, list[tuple[SpooledMessage, bytes | None]]]:
        """``due(now + MAX_IDLE_SLEEP, limit)``: (rows found, [(message, body or None)]).

        A ``BodyPrefetchStore`` also returns the inline bodies (no ``read_body`` per
        delivery) and skips the rows being attempted, which are due now, so skipping
        them hides no upcoming due time."""
        horizon = now + MAX_IDLE_SLEEP
        if isinstance(self._store, BodyPrefetchStore):
            return await self._store.due_with_bodies(
                horizon, limit, now=now, skip=frozenset(self._inflight)
            )
        messages = await self._store.due(horizon, limit)
        return len(messages), [(message, None) for message in messages]

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

    async def _attempt(self, message: SpooledMessage, body: bytes | None = None) -> None:
        qid = message.queue_id
        pending = message.pending
        results: dict[str, DeliveryResult] = {}
        fallback = DeliveryResult(AGENT_FAILED)
        if pending:
            try:
                if body is None:
                    body = await self._store.read_body(qid)
            except SpoolError as exc:
                log.error("%s: %s", qid, exc)
                fallback = DeliveryResult(BODY_UNREADABLE, str(exc))
            else:
                results, fallback = await self._deliver(message, body, pending)
        newly_failed = self._apply(message, pending, results, fallback)
        if newly_failed and not await self._bounce(message, newly_failed, body):
            for state in newly_failed:  # retry later rather than lose the report
                state.status = RecipientStatus.PENDING
        try:
            if message.pending:
                await self._store.update(message)
            else:
                await self._store.remove(qid)
        except SpoolError as exc:
            log.error("%s: cannot record delivery state (will retry): %s", qid, exc)
            self._paused_until = self._clock() + STORE_ERROR_PAUSE

    async def _deliver(
        self, message: SpooledMessage, body: bytes, pending: list[RecipientState]
    ) -> tuple[dict[str, DeliveryResult], DeliveryResult]:
        """Run the agent; returns (results, result for recipients it did not report)."""
        try:
            async with asyncio.timeout(self._attempt_timeout):
                results = await self._agent.deliver(
                    message, body, [state.recipient for state in pending]
                )
        except TimeoutError:
            reason = f"delivery attempt timed out after {self._attempt_timeout:.0f} s"
            return {}, DeliveryResult(AGENT_FAILED, reason)
        except Exception as exc:
            log.warning("%s: delivery agent raised %r", message.queue_id, exc)
            return {}, DeliveryResult(AGENT_FAILED, f"agent error: {exc!r}")
        if not isinstance(results, dict):
            return {}, DeliveryResult(AGENT_FAILED, f"agent returned {type(results).__name__}")
        return results, DeliveryResult(NO_RESULT, "no result for this recipient")

    def _apply(
        self,
        message: SpooledMessage,
        pending: list[RecipientState],
        results: dict[str, DeliveryResult],
        fallback: DeliveryResult,
    ) -> list[RecipientState]:
        """Record the outcome in ``message``; return the recipients that failed now."""
        now = self._clock()
        expired = now >= message.received_at + self._config.max_queue_lifetime
        lowered = {address.lower(): r for address, r in results.items()}
        newly_failed: list[RecipientState] = []
        if pending:
            message.attempts += 1
        # Before the outcomes are reported: a "deferred" line names this next attempt
        # (it named the previous one, the arrival time on a first attempt).
        delay = retry_delay(max(message.attempts, 1), self._config)
        message.next_attempt = now + delay * (1.0 + JITTER_FRACTION * self._jitter())
        for state in pending:
            address = state.recipient.address
            result = results.get(address) or lowered.get(address.lower())
            if not isinstance(result, DeliveryResult):
                result = fallback
            state.attempts += 1
            state.last_reply = str(result.reply)
            if result.ok:
                state.status = RecipientStatus.DELIVERED
                self._emit("delivered", message, address, result)
            elif result.permanent:
                state.status = RecipientStatus.FAILED
                newly_failed.append(state)
                self._emit("bounced", message, address, result)
            elif expired:
                reply = expired_reply(result.reply, self._config.max_queue_lifetime)
                state.status = RecipientStatus.FAILED
                state.last_reply = str(reply)
                newly_failed.append(state)
                self._emit("expired", message, address, DeliveryResult(reply, result.reason))
            else:
                self._emit("deferred", message, address, result)
        return newly_failed

    async def _bounce(
        self, message: SpooledMessage, failed: list[RecipientState], body: bytes | None
    ) -> bool:
        """Queue a DSN for ``failed``; False only if it should have been sent but was not."""
        qid = message.queue_id
        sender = message.envelope.mail_from
        report = [s for s in failed if _wants_failure_notice(s.recipient)]
        if not report:
            return True
        if not sender:
            addresses = ", ".join(s.recipient.address for s in report)
            log.info("%s: null sender, no bounce for failed recipients: %s", qid, addresses)
            return True
        if body is None:
            with contextlib.suppress(SpoolError):
                body = await self._store.read_body(qid)
        data = build_bounce(
            message,
            report,
            split_headers(body or b""),
            self._reporting_mta,
            self._clock(),
            original=body,
        )
        envelope = Envelope(
            mail_from="",
            recipients=(Recipient(sender),),
            body_type=bounce_body_type(data),
            smtputf8=not sender.isascii(),
        )
        try:
            bounce = await self._store.put(data, envelope)
        except SpoolError as exc:
            log.error("%s: cannot queue bounce to <%s>, will retry: %s", qid, sender, exc)
            return False
        self.bounces_sent += 1
        log.info("%s: sender non-delivery notification: %s", qid, bounce.queue_id)
        self.offer(bounce, data)
        return True

    def _emit(
        self, kind: str, message: SpooledMessage, address: str, result: DeliveryResult
    ) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, message, address, result)
        except Exception:
            log.exception("on_event callback failed for %s %s", kind, message.queue_id)


def _copy(message: SpooledMessage) -> SpooledMessage:
    """An independent copy: an attempt mutates the recipients' state."""
    return SpooledMessage(
        queue_id=message.queue_id,
        envelope=message.envelope,
        size=message.size,
        received_at=message.received_at,
        next_attempt=message.next_attempt,
        attempts=message.attempts,
        recipients=[
            RecipientState(s.recipient, s.status, s.attempts, s.last_reply)
            for s in message.recipients
        ],
    )
