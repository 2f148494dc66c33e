"""What the queue learnt is never forgotten, also across restarts (issue 10): a
recipient refused with 5xx is never tried again, one accepted with 250 is never
delivered again — even when our own store write failed in between.

Over every ``SpoolStore`` backend; a restart is a new store and a new runner over the
same place.  The clock is the test's; store failures are injected on the store object.
"""

from __future__ import annotations

import pytest

from helpers.spoolkit import (
    BUSY,
    CONFIG,
    UNKNOWN,
    Clock,
    FakeAgent,
    StoreFactory,
    envelope,
    put,
    run,
)
from mailwright.queue.runner import STORE_ERROR_PAUSE, QueueRunner
from mailwright.smtp import Reply
from mailwright.spool.model import RecipientStatus
from mailwright.spool.store import SpoolError, SpoolStore

SENDER = "alice@example.com"


def runner(store: SpoolStore, agent: FakeAgent, clock: Clock) -> QueueRunner:
    return QueueRunner(store, agent, CONFIG, clock=clock, jitter=lambda: 0.0)


def calls_for(agent: FakeAgent, queue_id: str) -> list[list[str]]:
    return [rcpts for message, _, rcpts in agent.calls if message.queue_id == queue_id]


@pytest.mark.parametrize("first_reply", [UNKNOWN, None], ids=["refused", "delivered"])
def test_finished_recipient_is_never_tried_again_after_a_restart(
    stores: StoreFactory, clock: Clock, first_reply: Reply | None
) -> None:
    """bob's outcome (550, or 250 when ``first_reply`` is None) is final; only the
    deferred carol is tried by the restarted runner."""
    replies = {"carol@example.net": BUSY}
    if first_reply is not None:
        replies["bob@example.net"] = first_reply
    agent = FakeAgent(replies)

    async def before() -> str:
        store = stores(clock)
        await store.open()
        message = await put(store, envelope("bob@example.net", "carol@example.net"))
        await runner(store, agent, clock).run_once()
        await store.close()
        return message.queue_id

    qid = run(before())

    async def after() -> None:
        store = stores(clock)
        await store.open()
        for _ in range(3):
            clock.advance(CONFIG.retry_max)
            await runner(store, agent, clock).run_once()
        assert (
            calls_for(agent, qid)
            == [["bob@example.net", "carol@example.net"]] + [["carol@example.net"]] * 3
        )
        history = await store.attempts(qid)
        bob = [a for a in history if a.position == 0]
        assert len(bob) == 1 and bob[0].reply.code == (550 if first_reply else 250)
        await store.close()

    run(after())


def test_failed_bounce_store_never_retries_the_refused_recipient(
    stores: StoreFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: when the bounce could not be stored, the 550 recipient was kept
    PENDING and delivered to again at the next attempt; now only its report is."""
    agent = FakeAgent({"bob@example.net": UNKNOWN})

    async def before() -> str:
        store = stores(clock)
        await store.open()
        message = await put(store, envelope("bob@example.net"))
        real_put = store.put

        async def failing_put(body, env, header_block=b""):  # type: ignore[no-untyped-def]
            if env.mail_from == "":
                raise SpoolError("disk full")
            return await real_put(body, env, header_block)

        monkeypatch.setattr(store, "put", failing_put)
        queue = runner(store, agent, clock)
        await queue.run_once()
        assert queue.bounces_sent == 0
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.recipients[0].status is RecipientStatus.PENDING
        await store.close()
        return message.queue_id

    qid = run(before())
    monkeypatch.undo()

    async def after() -> None:
        store = stores(clock)
        await store.open()
        queue = runner(store, agent, clock)
        clock.advance(CONFIG.retry_max)
        await queue.run_once()
        assert calls_for(agent, qid) == [["bob@example.net"]]  # not tried a second time
        assert queue.bounces_sent == 1
        assert agent.calls[-1][2] == [SENDER]  # the bounce, delivered
        assert await store.load(qid) is None
        await store.close()

    run(after())


def test_unrecorded_250_is_not_delivered_again(
    stores: StoreFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: if the store refused to record an attempt, the next one started
    from the stored copy and delivered to bob (250 the first time) again."""
    agent = FakeAgent({"carol@example.net": BUSY})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        message = await put(store, envelope("bob@example.net", "carol@example.net"))
        queue = runner(store, agent, clock)

        async def refuse(*_args: object, **_kw: object) -> None:
            raise SpoolError("database is locked")

        monkeypatch.setattr(store, "record_attempt", refuse)
        await queue.run_once()
        monkeypatch.undo()
        # After the pause, before carol's retry is due: only the state is recorded.
        clock.advance(STORE_ERROR_PAUSE)
        await queue.run_once()
        assert calls_for(agent, message.queue_id) == [["bob@example.net", "carol@example.net"]]
        loaded = await store.load(message.queue_id)
        assert loaded is not None
        assert [s.status for s in loaded.recipients] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.PENDING,
        ]
        assert [a.position for a in await store.attempts(message.queue_id)] == [0, 1]
        clock.advance(CONFIG.retry_initial)
        await queue.run_once()
        assert calls_for(agent, message.queue_id)[1:] == [["carol@example.net"]]
        await store.close()

    run(main())


def test_unrecorded_removal_is_not_delivered_again(
    stores: StoreFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every recipient got 250 but ``remove`` failed: the message is removed later,
    never delivered again."""
    agent = FakeAgent()

    async def main() -> None:
        store = stores(clock)
        await store.open()
        message = await put(store, envelope("bob@example.net"))
        queue = runner(store, agent, clock)

        async def refuse(*_args: object, **_kw: object) -> None:
            raise SpoolError("I/O error")

        monkeypatch.setattr(store, "remove", refuse)
        await queue.run_once()
        monkeypatch.undo()
        assert await store.load(message.queue_id) is not None
        clock.advance(STORE_ERROR_PAUSE)
        await queue.run_once()
        assert calls_for(agent, message.queue_id) == [["bob@example.net"]]
        assert await store.load(message.queue_id) is None
        await store.close()

    run(main())
