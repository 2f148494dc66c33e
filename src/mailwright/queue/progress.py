"""An attempt's early results: a remote 250 recorded as soon as it arrives.

The agent calls ``EarlyResults`` (its ``progress`` callback, ``queue.agent``) when a
part of the recipients has its answer while the rest is still in flight — the fast
MX said 250 while the slow one is still timing out.  Each *2xx* among them is
applied to the runner's copy of the message and recorded with
``SpoolStore.record_progress`` (state and history row, synced, lease kept) *before*
the callback returns, so the agent's next step — and a crash (kill -9, a power cut)
— can no longer undo it: after a restart that recipient is DELIVERED and not tried
again.  This is what Postfix does: its smtp(8) crosses each recipient off in the
queue file as soon as the remote's reply is a success (``smtp_rcpt_done`` ->
``deliver_completed``), leaving only one transaction's window open.  The
"delivered" event (the mail-log line) goes out then, once; the attempt's final
record (``apply_results(settled=...)``) neither counts nor logs nor records those
recipients again, and its reports (a success DSN) include them once.

**Only 2xx.**  A 5xx is left for the final record: a refused recipient that a crash
lets us try again costs one more refusal, never a duplicate in someone's mailbox;
recording it early would need its failure report stored at the same moment (one
bounce per destination instead of one per attempt), or a report lost in the crash.
A 4xx is not final at all.

**Never the last pending recipient.**  A progress record that would leave no
recipient pending is skipped: the final ``remove`` follows at once, and a stored
row with nothing pending would never be claimed again.

Recipients refused in an earlier attempt whose report is still to be stored
(``outcome.refused_before``) are FAILED in the runner's copy but stay PENDING with
their 5xx in what is recorded here: their report is stored by the final record
first (``notices``), as always.

If the store refuses (an I/O error, the lease taken by another runner), it is
logged and the attempt goes on: the final record stores those results, and until
then it is the old at-least-once window (a crash re-delivers them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mailwright.queue.agent import DeliveryResult
from mailwright.queue.events import EventCallback, emit
from mailwright.queue.outcome import Tried, history, result_for, settle_delivered
from mailwright.spool.model import RecipientState, RecipientStatus, SpooledMessage
from mailwright.spool.store import MessageGone, SpoolError, SpoolStore

log = logging.getLogger("mailwright.queue.runner")


def copy_message(message: SpooledMessage) -> SpooledMessage:
    """An independent copy: an attempt mutates the recipients' state."""
    return SpooledMessage(
        queue_id=message.queue_id,
        envelope=message.envelope,
        size=message.size,
        received_at=message.received_at,
        next_attempt=message.next_attempt,
        attempts=message.attempts,
        recipients=[
            RecipientState(s.recipient, s.status, s.attempts, s.last_reply, s.delay_warned)
            for s in message.recipients
        ],
    )


class EarlyResults:
    """The ``progress`` callback of one attempt (see the module docstring)."""

    def __init__(
        self,
        store: SpoolStore,
        owner: str,
        message: SpooledMessage,
        pending: list[RecipientState],
        refused: list[RecipientState],
        *,
        clock: Callable[[], float],
        on_event: EventCallback | None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._message = message
        self._pending = pending
        self._refused = {id(s) for s in refused}
        self._clock = clock
        self._on_event = on_event
        # Applied and recorded: by ``id()`` of the recipient's state in ``message``.
        self.settled: dict[int, DeliveryResult] = {}
        # Of those, the ones whose history rows the store took (the final record
        # writes the rows of the others).
        self.recorded: set[int] = set()
        # Two destinations may finish together: one record at a time, each built on
        # the one before (else the second would write the first's recipient back).
        self._lock = asyncio.Lock()

    async def __call__(self, results: dict[str, DeliveryResult]) -> None:
        async with self._lock:
            await self._record(results)

    async def _record(self, results: dict[str, DeliveryResult]) -> None:
        lowered = {address.lower(): r for address, r in results.items()}
        fresh: list[Tried] = []
        for state in self._pending:
            if id(state) in self.settled:
                continue  # reported before (a route repeats its destinations' results)
            result = result_for(state, results, lowered)
            if result is not None and result.ok:
                fresh.append((state, result))
        if not fresh:
            return
        message = self._message
        # What the store gets: our copy with the fresh 2xx applied and the refused
        # recipients still PENDING (their report is not stored yet).
        stored = copy_message(message)
        index = {id(s): i for i, s in enumerate(message.recipients)}
        early: list[Tried] = []
        for i, state in enumerate(message.recipients):
            if id(state) in self._refused:
                stored.recipients[i].status = RecipientStatus.PENDING
        for state, result in fresh:
            copy = stored.recipients[index[id(state)]]
            settle_delivered(copy, result)
            early.append((copy, result))
        if not stored.pending:
            return  # the final record removes the message right after (see above)
        # Logged and settled in the runner's copy first, as the runner logs before it
        # records (``apply_results``, then ``_record``): a kill in between leaves a
        # logged 250 that the retry delivers again (at least once), never a stored 250
        # without its mail-log line.  Settled even if the store refuses below: the 250
        # happened, and the final record stores the runner's copy.
        for state, result in fresh:
            settle_delivered(state, result)
            self.settled[id(state)] = result
            emit(self._on_event, "delivered", message, state.recipient.address, result)
        try:
            await self._store.record_progress(
                stored, history(stored, early, self._clock()), self._owner
            )
        except MessageGone:
            log.info("%s: deleted during its delivery attempt", message.queue_id)
            return
        except SpoolError as exc:
            # The final record stores these results; until then a crash delivers
            # them again (the at-least-once window this record exists to close).
            log.error("%s: cannot record early results: %s", message.queue_id, exc)
            return
        self.recorded.update(id(state) for state, _ in fresh)
