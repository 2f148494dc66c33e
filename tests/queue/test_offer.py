"""QueueRunner.offer: fresh mail delivered from memory, never twice, and few queue scans."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from helpers.spoolkit import BIG, BODY, BUSY, CONFIG, FakeAgent, envelope, put, run
from mailwright.config import DeliveryConfig
from mailwright.queue.runner import QueueRunner
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import Claimed, SpooledMessage
from mailwright.spool.store import SpoolStore


def spy(store: EmbeddedSpool, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the store's read calls (the DB round trips ``offer`` is meant to avoid)."""
    calls: Counter[str] = Counter()
    for name in ("due", "claim", "next_due", "load", "read_body"):
        real = getattr(store, name)

        def counted(*args: object, _real=real, _name=name, **kwargs: object):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    return calls


async def stored(store: EmbeddedSpool, body: bytes = BODY) -> tuple[SpooledMessage, bytes | None]:
    writer = store.new_message()
    writer.write(body)
    message = await store.put(writer, envelope())
    return message, writer.body_bytes()


async def idle(runner: QueueRunner, timeout: float = 5) -> None:
    """Wait (bounded) until no attempt is running."""
    deadline = time.monotonic() + timeout
    while runner._tasks and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not runner._tasks


async def rows(store: SpoolStore) -> int:
    """Messages still queued, through the store's API."""
    return len([m async for m in store.iterate()])


@pytest.mark.parametrize("body", [BODY, BIG], ids=["inline", "spilled"])
def test_offer_delivers_without_queue_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    agent = FakeAgent()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.05)  # the start-up scan found nothing; the runner sleeps
        calls = spy(store, monkeypatch)
        message, data = await stored(store, body)
        runner.offer(message, data)
        await asyncio.wait_for(agent.called.wait(), 2)
        await idle(runner)
        assert agent.calls[0][0].queue_id == message.queue_id
        assert agent.calls[0][1] == body
        assert await rows(store) == 0  # delivered and removed
        # Inline: no read at all.  Spilled: the body file, but never a queue scan.
        assert calls == (Counter() if body is BODY else Counter(read_body=1))
        # The runner worked on a copy: the caller's object is untouched.
        assert message.recipients[0].attempts == 0
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_offer_when_all_slots_are_busy_just_kicks(tmp_path: Path) -> None:
    agent = FakeAgent(delay=0.1)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        runner = QueueRunner(store, agent, DeliveryConfig(concurrency=2))
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.05)
        offered = [await stored(store) for _ in range(6)]
        for message, data in offered:
            runner.offer(message, data)
        assert len(runner._tasks) == 2
        deadline = time.monotonic() + 5
        while await rows(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await rows(store) == 0
        delivered = Counter(call[0].queue_id for call in agent.calls)
        assert delivered == Counter({m.queue_id: 1 for m, _ in offered})
        assert agent.max_active <= 2
        await runner.stop()
        await task
        await store.close()

    run(main())


class PlainStore:
    """A store whose claims carry no bodies: the runner's ``read_body`` path."""

    def __init__(self, store: EmbeddedSpool) -> None:
        self._store = store

    async def claim(self, *args: Any) -> list[Claimed]:
        return [replace(c, body=None) for c in await self._store.claim(*args)]

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


@pytest.mark.parametrize("bodies", [True, False], ids=["with-bodies", "read-body"])
def test_offer_racing_a_scan_that_saw_the_message_delivers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bodies: bool
) -> None:
    """The scan claimed the message before the offered attempt's record: it must not
    retry it.

    The agent defers (451), so the message stays queued; a second attempt from the
    stale claim would be visible as a second agent call.  Both claim forms: with the
    bodies (the embedded store's inline ones) and without.
    """
    agent = FakeAgent({"bob@example.net": BUSY})

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        view = store if bodies else PlainStore(store)
        runner = QueueRunner(view, agent, CONFIG)  # type: ignore[arg-type]
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.05)
        message, data = await stored(store)

        real_scan = store.claim
        entered, gate = asyncio.Event(), asyncio.Event()

        async def slow_scan(*args: object, **kwargs: object) -> object:
            result = await real_scan(*args, **kwargs)  # snapshot: the message is due
            entered.set()
            await gate.wait()  # ... delivered to the runner only later
            return result

        monkeypatch.setattr(store, "claim", slow_scan)
        runner.kick()
        await asyncio.wait_for(entered.wait(), 2)
        runner.offer(message, data)  # starts at once, defers, updates
        await asyncio.wait_for(agent.called.wait(), 2)
        await idle(runner)
        gate.set()
        await asyncio.sleep(0.2)  # the scan resumes with its stale row
        await idle(runner)
        assert [c[0].queue_id for c in agent.calls] == [message.queue_id]
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.attempts == 1
        # The attempt's record ended the scan's lease: once due again, it is claimable.
        assert len(await store.claim(loaded.next_attempt, 10, 60, "other")) == 1
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_offer_after_the_scan_started_it_is_ignored(tmp_path: Path) -> None:
    agent = FakeAgent(delay=0.2)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.05)
        message, data = await stored(store)
        runner.kick()  # the scan finds and starts it
        await asyncio.wait_for(agent.called.wait(), 2)
        runner.offer(message, data)  # late: already in flight
        await idle(runner)
        assert len(agent.calls) == 1
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_offer_of_a_fetched_waiting_message_does_not_duplicate_it(tmp_path: Path) -> None:
    """With one slot, a scan fetches two messages; the second waits in memory.  Offering
    it then (slot still busy) must neither start it nor queue it twice."""
    agent = FakeAgent(delay=0.1)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        first = await put(store)
        second, data = await stored(store)
        runner = QueueRunner(store, agent, DeliveryConfig(concurrency=1))
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(agent.called.wait(), 2)
        assert list(runner._ready) == [second.queue_id]
        runner.offer(second, data)
        assert len(runner._tasks) == 1
        deadline = time.monotonic() + 5
        while await rows(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [c[0].queue_id for c in agent.calls] == [first.queue_id, second.queue_id]
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_offer_without_a_running_runner_only_kicks(tmp_path: Path) -> None:
    agent = FakeAgent()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG)
        message, data = await stored(store)
        runner.offer(message, data)
        await asyncio.sleep(0.05)
        assert agent.calls == []
        assert await runner.run_once() == 1
        assert len(agent.calls) == 1
        await store.close()

    run(main())


def test_backlog_is_fetched_in_few_scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 queued messages, 4 slots: a scan fetches 4x the slots, so ~3 scans, not ~80."""
    agent = FakeAgent(delay=0.01)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        ids = [(await put(store)).queue_id for _ in range(40)]
        calls = spy(store, monkeypatch)
        runner = QueueRunner(store, agent, DeliveryConfig(concurrency=4))
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 10
        while await rows(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await rows(store) == 0
        assert sorted(c[0].queue_id for c in agent.calls) == sorted(ids)
        assert agent.max_active <= 4
        assert calls["claim"] <= 6 and calls["due"] == 0, calls
        await runner.stop()
        await task
        await store.close()

    run(main())
