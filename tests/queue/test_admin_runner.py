"""The queue runner beside the operator's commands: a message deleted mid-attempt, and
wake-ups from another process through ``spool/wake`` (``spool.wakeup``).

The clock is a settable ``Clock`` that the tests never advance: a runner that paused
after a store error, or held an unannounced fresh message, would then never deliver
again, so "delivered" proves neither happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers.spoolkit import BUSY, CONFIG, Clock, FakeAgent, StoreFactory, envelope, put, run
from mailwright.queue.runner import FRESH_HOLD, QueueRunner
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.wakeup import WAKE_FIFO, FifoWakeup, notify

WAIT = 5.0  # seconds; far below the runner's MAX_IDLE_SLEEP of 30


async def delivered(agent: FakeAgent, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(agent.calls) < count or agent.active:
            await asyncio.sleep(0.01)


def test_message_deleted_during_an_offered_attempt_is_dropped_without_a_pause(
    stores: StoreFactory, clock: Clock
) -> None:
    """``queue delete`` of fresh mail the runner attempts without a lease: its
    ``record_attempt`` meets ``MessageGone``; the runner drops it and keeps going
    (before, it paused STORE_ERROR_PAUSE like after a broken store)."""
    agent = FakeAgent({"bob@example.net": BUSY}, delay=0.2)  # deferred: record_attempt

    async def main() -> None:
        store = stores(clock)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG, clock=clock)
        task = asyncio.create_task(runner.run())
        # The runner's first scan must be over before the message is stored: a scan
        # after the put would claim it with a lease, and delete rightly refuses that.
        async with asyncio.timeout(WAIT):
            while runner.scans == 0:
                await asyncio.sleep(0.001)
        first = await put(store)
        runner.offer(first)
        async with asyncio.timeout(WAIT):
            await agent.called.wait()
        assert await store.delete(first.queue_id, clock.now)  # no lease: allowed
        await delivered(agent, 1)
        second = await put(store, envelope("carol@example.net"))
        runner.offer(second)  # a paused runner would only queue it (the clock stands)
        await delivered(agent, 2)
        assert agent.calls[1][0].queue_id == second.queue_id
        await runner.stop()
        await task
        assert [m.queue_id async for m in store.iterate()] == []
        await store.close()

    run(main())


def test_fifo_wakeup_announces_mail_stored_by_another_process(tmp_path: Path) -> None:
    """Another store object over the same spool (another process) stores a message and
    pokes ``spool/wake`` with its id: the idle runner attempts it at once, announced
    (a fresh message a scan finds unannounced would be held FRESH_HOLD seconds, and
    this clock never gets there)."""
    clock = Clock()
    agent = FakeAgent()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        other = EmbeddedSpool(tmp_path, clock=clock, recover=False)
        await other.open()
        wakeup = FifoWakeup(store.root)
        runner = QueueRunner(
            store, agent, CONFIG, clock=clock, fresh_hold=FRESH_HOLD, wakeup=wakeup
        )
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(WAIT):
            while not (store.root / WAKE_FIFO).exists():
                await asyncio.sleep(0.01)
        for count in (1, 2):
            message = await put(other)
            assert notify(other.root, [message.queue_id])
            await delivered(agent, count)
            assert agent.calls[-1][0].queue_id == message.queue_id
        assert notify(other.root)  # an empty wake-up: just look
        await runner.stop()
        await task
        assert not notify(other.root)  # nobody listens any more: False, never blocks
        await other.close()
        await store.close()

    run(main())


def test_notify_without_a_runner_or_into_a_regular_file(tmp_path: Path) -> None:
    assert not notify(tmp_path)  # no FIFO at all
    (tmp_path / WAKE_FIFO).write_bytes(b"")
    assert not notify(tmp_path, ["1M7Z0P99ME5E24SA"])  # a regular file is never written
    assert (tmp_path / WAKE_FIFO).read_bytes() == b""

    async def main() -> None:
        lines: list[list[str]] = []
        wakeup = FifoWakeup(tmp_path)
        wakeup.start(lines.append)  # replaces the stray file with a FIFO
        assert notify(tmp_path, ["1M7Z0P99ME5E24SA", "1M7Z0P99ME5E24SB"])
        async with asyncio.timeout(WAIT):  # one read or two: the ids in order
            while sum(len(ids) for ids in lines) < 2:
                await asyncio.sleep(0.01)
        assert [qid for ids in lines for qid in ids] == ["1M7Z0P99ME5E24SA", "1M7Z0P99ME5E24SB"]
        wakeup.stop()
        assert not notify(tmp_path)

    run(main())
