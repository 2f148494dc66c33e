"""A remote 250 is recorded as soon as it arrives (issue 10): the runner stores the
2xx an agent reports through ``progress`` while the rest of the attempt still runs,
and the final record applies, logs and reports them once.

Over every ``SpoolStore`` backend.  The agent is scripted: two parts (two routes, two
destinations) run through ``gather_parts`` as the router and the relay run theirs;
the slow part is held on an ``asyncio.Event`` until the test has looked at the store
through a second store object over the same place (another SQLite connection for
the embedded backend).
"""

from __future__ import annotations

import asyncio
import email

import pytest

from helpers.spoolkit import BUSY, CONFIG, OK, Clock, StoreFactory, put, run
from mailwright.queue.agent import DeliveryResult, Progress, gather_parts
from mailwright.queue.runner import QueueRunner
from mailwright.smtp import Reply
from mailwright.spool.model import (
    Envelope,
    Recipient,
    RecipientStatus,
    SpooledMessage,
)
from mailwright.spool.store import SpoolError, SpoolStore

FAST = "a@fast.test"
SLOW = "b@slow.test"
FAST_MX = "mx.fast.test[192.0.2.1]:25"
SLOW_MX = "mx.slow.test[192.0.2.2]:25"
REFUSED = Reply.of(550, "5.1.1", "User unknown")

Event = tuple[str, str, int]


class TwoParts:
    """The fast recipients answer 250 at once; the slow ones answer ``slow_reply`` when
    ``release`` is set.  ``recorded`` is set once the runner's ``progress`` returned."""

    def __init__(self, slow_reply: Reply = BUSY) -> None:
        self.slow_reply = slow_reply
        self.release = asyncio.Event()
        self.recorded = asyncio.Event()
        self.calls: list[list[str]] = []

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        self.calls.append([r.address for r in recipients])

        async def fast() -> dict[str, DeliveryResult]:
            return {
                r.address: DeliveryResult(OK, remote_host=FAST_MX)
                for r in recipients
                if r.address.endswith("@fast.test")
            }

        async def slow() -> dict[str, DeliveryResult]:
            await self.release.wait()
            return {
                r.address: DeliveryResult(self.slow_reply, remote_host=SLOW_MX)
                for r in recipients
                if r.address.endswith("@slow.test")
            }

        async def reported(results: dict[str, DeliveryResult]) -> None:
            assert progress is not None
            await progress(results)
            self.recorded.set()

        parts = [fast(), slow()]
        return await gather_parts(parts, reported if progress is not None else None)


def two_destinations() -> Envelope:
    return Envelope(
        mail_from="alice@example.com",
        recipients=(Recipient(FAST, ("SUCCESS",)), Recipient(SLOW, ("SUCCESS", "FAILURE"))),
    )


def make_runner(
    store: SpoolStore, agent: TwoParts, clock: Clock, events: list[Event]
) -> QueueRunner:
    def on_event(kind: str, message: SpooledMessage, address: str, result: DeliveryResult) -> None:
        if message.envelope.mail_from:  # the original's outcomes, not its reports'
            events.append((kind, address, result.reply.code))

    return QueueRunner(store, agent, CONFIG, clock=clock, jitter=lambda: 0.0, on_event=on_event)


async def reports(store: SpoolStore) -> list[email.message.Message]:
    """The DSNs queued so far (null-sender messages), parsed."""
    found = []
    async for message in store.iterate():
        if not message.envelope.mail_from:
            found.append(email.message_from_bytes(await store.read_body(message.queue_id)))
    return found


def reported_recipients(report: email.message.Message) -> list[str]:
    """The Final-Recipient of every per-recipient part of a DSN (RFC 3464 §2.3.2)."""
    text = report.as_string()
    return [
        line.split(";", 1)[1].strip()
        for line in text.splitlines()
        if line.lower().startswith("final-recipient:")
    ]


@pytest.mark.parametrize("slow_reply", [BUSY, REFUSED], ids=["deferred", "refused"])
def test_early_250_is_stored_while_the_slow_destination_is_in_flight(
    stores: StoreFactory, clock: Clock, slow_reply: Reply
) -> None:
    """While b's answer is held, a second store sees a DELIVERED with its history row
    and b PENDING; the "delivered" event came once.  After b answers: every recipient
    has exactly one event and one history row, the message one attempt, a its one
    success DSN (and b, when refused, its one failure DSN)."""
    agent = TwoParts(slow_reply)
    events: list[Event] = []

    async def main() -> None:
        store = stores(clock)
        await store.open()
        message = await put(store, two_destinations())
        qid = message.queue_id
        runner = make_runner(store, agent, clock, events)
        attempt = asyncio.create_task(runner.run_once())
        await asyncio.wait_for(agent.recorded.wait(), 10)

        other = stores(clock)
        await other.open()
        seen = await other.load(qid)
        assert seen is not None
        assert [s.status for s in seen.recipients] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.PENDING,
        ]
        assert seen.recipients[0].last_reply is not None
        assert seen.recipients[0].last_reply.code == 250
        (row,) = await other.attempts(qid)
        assert (row.position, row.status, row.remote_host) == (
            0,
            RecipientStatus.DELIVERED,
            FAST_MX,
        )
        await other.close()
        assert events == [("delivered", FAST, 250)]
        assert not attempt.done()

        agent.release.set()
        assert await asyncio.wait_for(attempt, 10) >= 1
        slow_kind = "deferred" if slow_reply is BUSY else "bounced"
        assert events == [("delivered", FAST, 250), (slow_kind, SLOW, slow_reply.code)]
        dsns = await reports(store)
        kinds = sorted(str(r.get_content_type()) for r in dsns)
        assert kinds == ["multipart/report"] * (1 if slow_reply is BUSY else 2)
        by_recipient = sorted(rc for r in dsns for rc in reported_recipients(r))
        assert by_recipient == sorted([FAST] + ([SLOW] if slow_reply is REFUSED else []))
        if slow_reply is BUSY:
            loaded = await store.load(qid)
            assert loaded is not None and loaded.attempts == 1
            assert [s.attempts for s in loaded.recipients] == [1, 1]
            history = await store.attempts(qid)
            assert sorted(a.position for a in history) == [0, 1]
            # The next attempt is for b alone; a's success is not reported again.
            clock.advance(CONFIG.retry_max)
            agent.slow_reply = OK
            await runner.run_once()
            originals = [c for c in agent.calls if "alice@example.com" not in c]  # not DSNs
            assert originals == [[FAST, SLOW], [SLOW]]
            assert events[-1] == ("delivered", SLOW, 250)
            assert [e for e in events if e[1] == FAST] == [("delivered", FAST, 250)]
            later = sorted(rc for r in await reports(store) for rc in reported_recipients(r))
            assert later == [FAST, SLOW]  # b's own success DSN; a's still once
        else:
            assert await store.load(qid) is None  # nothing pending: removed
        await store.close()

    run(main())


def test_early_record_refused_by_the_store_is_recorded_at_the_end(
    stores: StoreFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that refuses the early record: logged, the attempt goes on, and the
    final record stores a's 250 — once, with one event and one history row."""
    agent = TwoParts(BUSY)
    events: list[Event] = []

    async def main() -> None:
        store = stores(clock)
        await store.open()

        async def refuse(*args: object) -> None:
            raise SpoolError("disk full")

        monkeypatch.setattr(store, "record_progress", refuse)
        message = await put(store, two_destinations())
        runner = make_runner(store, agent, clock, events)
        attempt = asyncio.create_task(runner.run_once())
        await asyncio.wait_for(agent.recorded.wait(), 10)
        loaded = await store.load(message.queue_id)
        assert loaded is not None and len(loaded.pending) == 2  # not recorded yet
        # Logged at once (the 250 happened; the runner logs before it records too),
        # and the final record stores it.
        assert events == [("delivered", FAST, 250)]
        agent.release.set()
        await asyncio.wait_for(attempt, 10)
        assert events == [("delivered", FAST, 250), ("deferred", SLOW, 451)]
        loaded = await store.load(message.queue_id)
        assert loaded is not None
        assert [s.status for s in loaded.recipients] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.PENDING,
        ]
        assert sorted(a.position for a in await store.attempts(message.queue_id)) == [0, 1]
        await store.close()

    run(main())
