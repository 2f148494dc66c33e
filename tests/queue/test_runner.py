"""QueueRunner against every real ``SpoolStore`` backend (embedded, memory) and a
scripted fake delivery agent: the runner uses only the protocol, so it runs unchanged."""

from __future__ import annotations

import asyncio
import email
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.spoolkit import (
    BODY,
    BUSY,
    CONFIG,
    UNKNOWN,
    Clock,
    Event,
    FakeAgent,
    StoreFactory,
    envelope,
    listing,
    put,
    run,
)
from mailwright.config import DeliveryConfig
from mailwright.queue.retry import JITTER_FRACTION, retry_delay
from mailwright.queue.runner import FRESH_HOLD, QueueRunner
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import (
    Envelope,
    Recipient,
    RecipientStatus,
    RemoteReply,
    SpooledMessage,
)
from mailwright.spool.store import SpoolError


class Harness:
    def __init__(self, stores: StoreFactory, clock: Clock, agent: FakeAgent, **kw: object) -> None:
        self.store = stores(clock)
        self.events: list[Event] = []
        self.runner = QueueRunner(
            self.store,
            agent,
            kw.pop("config", CONFIG),  # type: ignore[arg-type]
            on_event=lambda kind, m, a, r: self.events.append((kind, m.queue_id, a, str(r.reply))),
            clock=clock,
            reporting_mta="mx.example.com",
            **kw,  # type: ignore[arg-type]
        )

    async def all(self) -> list[SpooledMessage]:
        return [m async for m in self.store.iterate()]

    async def bounces(self) -> list[SpooledMessage]:
        return [m for m in await self.all() if m.envelope.mail_from == ""]


def test_retry_delay_doubles_and_caps() -> None:
    assert [retry_delay(n, CONFIG) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert retry_delay(7, CONFIG) == 3600 and retry_delay(10_000, CONFIG) == 3600


def test_success_removes_message(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent()

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        message = await put(h.store, envelope("bob@example.net", "carol@example.net"))
        assert await h.runner.run_once() == 1
        assert await h.all() == []
        if isinstance(h.store, EmbeddedSpool):
            assert listing(h.store.msg_dir) == []
        assert agent.calls[0][1] == BODY
        assert agent.calls[0][2] == ["bob@example.net", "carol@example.net"]
        assert [e[0] for e in h.events] == ["delivered", "delivered"]
        assert h.events[0][1] == message.queue_id
        await h.store.close()

    run(main())


def test_temporary_failure_is_deferred_with_backoff(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent({"bob@example.net": BUSY})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        message = await put(h.store)
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None
        state = loaded.recipients[0]
        assert state.status is RecipientStatus.PENDING
        assert state.attempts == 1 and loaded.attempts == 1
        assert state.last_reply == RemoteReply(451, "4.2.0", "Mailbox busy")
        assert clock.now + 60 <= loaded.next_attempt <= clock.now + 60 * (1 + JITTER_FRACTION)
        assert h.events == [("deferred", message.queue_id, "bob@example.net", str(BUSY))]

        assert await h.runner.run_once() == 0  # not due yet
        clock.advance(70)
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None and loaded.attempts == 2
        assert clock.now + 120 <= loaded.next_attempt <= clock.now + 120 * (1 + JITTER_FRACTION)
        await h.store.close()

    run(main())


def test_permanent_failure_produces_bounce(stores: StoreFactory, clock: Clock) -> None:
    # The bounce goes to alice; defer her so the bounce stays in the store to inspect.
    agent = FakeAgent({"bad@example.net": UNKNOWN, "alice@example.com": BUSY})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        original = await put(h.store, envelope("bob@example.net", "bad@example.net"))
        await h.runner.run_once()
        assert await h.store.load(original.queue_id) is None  # nothing pending: removed
        (bounce,) = await h.bounces()
        assert bounce.envelope.mail_from == ""
        assert [r.address for r in bounce.envelope.recipients] == ["alice@example.com"]
        # The bounce was itself attempted (and deferred) like any message.
        assert agent.calls[-1][0].queue_id == bounce.queue_id

        parsed = email.message_from_bytes(await h.store.read_body(bounce.queue_id))
        assert parsed.get_content_type() == "multipart/report"
        parts = parsed.get_payload()
        assert isinstance(parts, list)
        blocks = parts[1].get_payload()
        assert isinstance(blocks, list) and len(blocks) == 2  # only bad@ is reported
        assert blocks[1]["Final-Recipient"] == "rfc822; bad@example.net"
        assert blocks[1]["Action"] == "failed"
        assert blocks[1]["Status"] == "5.1.1"
        # The agent's own refusal, no remote host: an X- diagnostic (RFC 3464 §2.3.6).
        assert blocks[1]["Diagnostic-Code"] == "X-mailwright; User unknown"
        assert blocks[1]["Remote-MTA"] is None
        kinds = [(e[0], e[2]) for e in h.events]
        assert ("bounced", "bad@example.net") in kinds
        assert ("delivered", "bob@example.net") in kinds
        assert h.runner.bounces_sent == 1
        await h.store.close()

    run(main())


def test_agent_exception_is_temporary(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent()
    agent.error = ConnectionResetError("peer went away")

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        message = await put(h.store, envelope("bob@example.net", "carol@example.net"))
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None
        assert [r.status for r in loaded.recipients] == [RecipientStatus.PENDING] * 2
        assert all(
            r.last_reply and str(r.last_reply).startswith("451 4.3.0") for r in loaded.recipients
        )
        assert await h.bounces() == []
        await h.store.close()

    run(main())


def test_agent_timeout_is_temporary(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent(delay=5)

    async def main() -> None:
        h = Harness(stores, clock, agent, attempt_timeout=0.05)
        await h.store.open()
        message = await put(h.store)
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None and loaded.pending[0].attempts == 1
        await h.store.close()

    run(main())


def test_partial_results(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent(
        {"busy@example.net": BUSY, "bad@example.net": UNKNOWN, "alice@example.com": BUSY}
    )
    agent.skip = {"lost@example.net"}

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        rcpts = ("ok@example.net", "busy@example.net", "bad@example.net", "lost@example.net")
        message = await put(h.store, envelope(*rcpts))
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None
        assert [r.status for r in loaded.recipients] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.PENDING,
            RecipientStatus.FAILED,
            RecipientStatus.PENDING,  # no result reported: temporary
        ]
        assert loaded.recipients[3].last_reply is not None
        assert loaded.recipients[3].last_reply.code == 451
        assert len(await h.bounces()) == 1  # bad@ bounced now, not after the others finish

        # Next attempt: only the pending recipients are offered again.
        clock.advance(100)
        agent.replies.clear()
        agent.skip.clear()
        await h.runner.run_once()
        retried = [c[2] for c in agent.calls[1:] if c[0].queue_id == message.queue_id]
        assert retried == [["busy@example.net", "lost@example.net"]]
        assert await h.store.load(message.queue_id) is None
        await h.store.close()

    run(main())


def test_expiry_fails_pending_and_bounces(stores: StoreFactory, clock: Clock) -> None:
    agent = FakeAgent({"bob@example.net": BUSY, "alice@example.com": BUSY})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        message = await put(h.store)
        await h.runner.run_once()
        clock.advance(CONFIG.max_queue_lifetime + 1)
        await h.runner.run_once()
        assert await h.store.load(message.queue_id) is None
        (bounce,) = await h.bounces()
        body = email.message_from_bytes(await h.store.read_body(bounce.queue_id))
        parts = body.get_payload()
        assert isinstance(parts, list)
        blocks = parts[1].get_payload()
        assert isinstance(blocks, list)
        assert blocks[1]["Status"] == "4.4.7" and blocks[1]["Action"] == "failed"
        assert "Mailbox busy" in blocks[1]["Diagnostic-Code"]
        assert [e[0] for e in h.events if e[1] == message.queue_id] == ["deferred", "expired"]
        await h.store.close()

    run(main())


def test_null_sender_is_never_bounced(stores: StoreFactory, clock: Clock) -> None:
    """Nothing goes back to <>: the postmaster gets the one notice (test_notices)."""
    agent = FakeAgent({"bob@example.net": UNKNOWN})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        await put(h.store, envelope("bob@example.net", mail_from=""))
        await h.runner.run_once()
        assert await h.all() == []
        assert [c[2] for c in agent.calls] == [["bob@example.net"], ["postmaster@mx.example.com"]]
        assert h.runner.bounces_sent == 1
        await h.store.close()

    run(main())


@pytest.mark.parametrize(
    ("notify", "bounced"),
    [(("NEVER",), False), (("SUCCESS", "DELAY"), False), (("FAILURE",), True)],
)
def test_notify_is_respected(
    stores: StoreFactory, clock: Clock, notify: tuple[str, ...], bounced: bool
) -> None:
    agent = FakeAgent({"bob@example.net": UNKNOWN, "alice@example.com": BUSY})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        env = Envelope("alice@example.com", (Recipient("bob@example.net", notify),))
        await put(h.store, env)
        await h.runner.run_once()
        assert len(await h.bounces()) == int(bounced)
        assert len(await h.all()) == int(bounced)  # the original is gone either way
        await h.store.close()

    run(main())


def test_failed_bounce_store_keeps_recipient_pending(
    stores: StoreFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = FakeAgent({"bob@example.net": UNKNOWN})

    async def main() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        message = await put(h.store)
        real_put = h.store.put

        async def failing_put(body, env):  # type: ignore[no-untyped-def]
            if env.mail_from == "":  # the bounce (its body is bytes: nothing to abort)
                raise SpoolError("disk full")
            return await real_put(body, env)

        monkeypatch.setattr(h.store, "put", failing_put)
        await h.runner.run_once()
        loaded = await h.store.load(message.queue_id)
        assert loaded is not None and loaded.recipients[0].status is RecipientStatus.PENDING
        if isinstance(h.store, EmbeddedSpool):
            assert listing(h.store.tmp_dir) == []
        monkeypatch.undo()
        clock.advance(100)
        await h.runner.run_once()
        assert await h.store.load(message.queue_id) is None
        assert h.runner.bounces_sent == 1
        await h.store.close()

    run(main())


def test_recovery_after_restart(stores: StoreFactory, clock: Clock) -> None:
    async def before_crash() -> list[str]:
        store = stores(clock)
        await store.open()
        ids = [(await put(store)).queue_id for _ in range(3)]
        await store.close()
        return ids

    ids = run(before_crash())
    agent = FakeAgent()

    async def after_restart() -> None:
        h = Harness(stores, clock, agent)
        await h.store.open()
        assert await h.runner.run_once() == 3
        assert sorted(c[0].queue_id for c in agent.calls) == sorted(ids)
        assert await h.all() == []
        await h.store.close()

    run(after_restart())


def test_stop_before_the_run_task_started_still_ends_it(stores: StoreFactory) -> None:
    """A server stopped right after start: stop() runs before run() was first
    scheduled.  run() must then return at once instead of idling forever."""

    async def main() -> None:
        store = stores()
        runner = QueueRunner(store, FakeAgent(), DeliveryConfig())
        await store.open()
        task = asyncio.create_task(runner.run())
        await runner.stop()  # the task has not run a single step yet
        await asyncio.wait_for(task, timeout=1)
        await store.close()

    run(main())


def test_run_kick_concurrency_and_stop(stores: StoreFactory) -> None:
    agent = FakeAgent(delay=0.05)
    config = DeliveryConfig(retry_initial=60, concurrency=3)

    async def main() -> None:
        store = stores()
        runner = QueueRunner(store, agent, config)
        await store.open()
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.1)  # the runner found nothing and sleeps (up to 30 s)
        assert agent.calls == []

        started = time.monotonic()
        await put(store)
        runner.kick()
        await asyncio.wait_for(agent.called.wait(), timeout=2)
        assert time.monotonic() - started < 2

        for _ in range(10):
            await put(store)
        runner.kick()
        deadline = time.monotonic() + 5
        while [m async for m in store.iterate()] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [m async for m in store.iterate()] == []
        assert len(agent.calls) == 11
        assert agent.max_active <= 3

        await runner.stop()
        await asyncio.wait_for(task, timeout=1)
        await store.close()

    run(main())


def test_stop_waits_for_inflight_then_cancels(stores: StoreFactory) -> None:
    async def main() -> None:
        store = stores()
        await store.open()
        slow = FakeAgent(delay=0.2)
        runner = QueueRunner(store, slow, CONFIG)
        await put(store)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(slow.called.wait(), timeout=2)
        await runner.stop(grace=5)  # finishes the attempt
        assert task.done()
        assert [m async for m in store.iterate()] == []

        hung = FakeAgent(delay=60)
        runner = QueueRunner(store, hung, CONFIG)
        message = await put(store)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(hung.called.wait(), timeout=2)
        await runner.stop(grace=0.05)  # gives up: the message stays queued
        assert task.done()
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.recipients[0].status is RecipientStatus.PENDING
        assert loaded.attempts == 0
        await store.close()

    run(main())


def test_event_callback_errors_do_not_stop_delivery(stores: StoreFactory, clock: Clock) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("mail log is broken")

    async def main() -> None:
        store = stores(clock)
        await store.open()
        runner = QueueRunner(store, FakeAgent(), CONFIG, on_event=broken, clock=clock)
        await put(store)
        await runner.run_once()
        assert [m async for m in store.iterate()] == []
        await store.close()

    run(main())


def test_deferred_event_carries_the_next_attempt_the_spool_records(
    stores: StoreFactory, clock: Clock
) -> None:
    """Regression (issue 8.9): the mail log's ``next=`` was the arrival time, because
    the event was reported before the next attempt was computed."""
    seen: list[float] = []

    async def main() -> None:
        store = stores(clock)
        await store.open()
        agent = FakeAgent({"bob@example.net": BUSY})

        def on_event(kind: str, message: SpooledMessage, *_: object) -> None:
            seen.append(message.next_attempt)

        runner = QueueRunner(store, agent, CONFIG, clock=clock, on_event=on_event)
        message = await put(store)
        await runner.run_once()
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.attempts == 1
        assert seen == [loaded.next_attempt]
        assert loaded.next_attempt >= message.received_at + 60
        await store.close()

    run(main())


class ScanSignallingSpool(EmbeddedSpool):
    """The embedded spool, telling the test when a queue scan has returned."""

    scanned: asyncio.Event

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().claim(*args, **kwargs)
        self.scanned.set()
        return result


async def wait_for_calls(agent: FakeAgent, count: int) -> None:
    deadline = time.monotonic() + 2
    while len(agent.calls) < count:
        assert time.monotonic() < deadline, f"{len(agent.calls)} of {count} attempts"
        await asyncio.sleep(0.01)


def test_fresh_message_found_by_a_scan_waits_until_announced(tmp_path: Path, clock: Clock) -> None:
    """A scan may find a message right after its commit, before the server logged
    ``accepted``: it is attempted once announced, or once ``fresh_hold`` has passed."""

    async def main() -> None:
        store = ScanSignallingSpool(tmp_path, clock=clock)
        store.scanned = asyncio.Event()
        await store.open()
        agent = FakeAgent()
        runner = QueueRunner(store, agent, CONFIG, clock=clock, fresh_hold=FRESH_HOLD)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(store.scanned.wait(), 2)  # the first scan: nothing yet
        held = await put(store)
        told = await put(store)
        runner.announce(told.queue_id)  # one scan finds both; only one was announced
        await wait_for_calls(agent, 1)
        assert [call[0].queue_id for call in agent.calls] == [told.queue_id]

        runner.announce(held.queue_id)
        await wait_for_calls(agent, 2)
        assert agent.calls[1][0].queue_id == held.queue_id

        # Never announced (its session process died before reporting it): attempted
        # once the hold is over.
        orphan = await put(store)
        store.scanned.clear()
        runner.kick()
        await asyncio.wait_for(store.scanned.wait(), 2)
        clock.advance(FRESH_HOLD)
        runner.kick()
        await wait_for_calls(agent, 3)
        assert agent.calls[2][0].queue_id == orphan.queue_id
        await runner.stop()
        await asyncio.wait_for(task, 2)
        await store.close()

    run(main())


def test_oldest_wait_is_the_age_of_the_oldest_due_message_not_started(
    stores: StoreFactory, clock: Clock
) -> None:
    """The delivery worker's backlog signal (``runtime.priority``): messages fetched
    but waiting for a slot count from their due time; the one being attempted and an
    empty backlog do not."""
    hung = FakeAgent(delay=60)
    config = DeliveryConfig(retry_initial=60, concurrency=1)

    async def main() -> None:
        store = stores(clock)
        await store.open()
        runner = QueueRunner(store, hung, config, clock=clock)
        assert runner.oldest_wait() == 0.0
        await put(store)
        clock.advance(1.0)
        await put(store)
        await put(store)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(hung.called.wait(), timeout=2)
        # The first message is in the one slot; the other two wait since 1 s later.
        assert runner.oldest_wait() == 0.0
        clock.advance(3.0)
        assert runner.oldest_wait() == 3.0
        await runner.stop(grace=0.05)
        await asyncio.wait_for(task, timeout=1)
        assert runner.oldest_wait() == 0.0  # given back at stop: nothing waits here
        await store.close()

    run(main())
