"""The queue runner's per-message costs: scans carry inline bodies, kicks while
saturated do not spin the loop."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers.spoolkit import BIG, BODY, CONFIG, Clock, FakeAgent, put, run
from mailwright.config import DeliveryConfig
from mailwright.queue.runner import QueueRunner
from mailwright.spool.embedded import EmbeddedSpool


def count_calls(
    obj: object, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> Counter[str]:
    calls: Counter[str] = Counter()
    for name in names:
        real = getattr(obj, name)

        def counted(*args: object, _real=real, _name=name, **kwargs: object):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
    return calls


async def drained(store: EmbeddedSpool, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while [m async for m in store.iterate()] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert [m async for m in store.iterate()] == []


def test_scan_carries_inline_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued mail found by a scan is delivered without one read_body per message:
    only the spilled body (a file) is read separately."""
    agent = FakeAgent()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        inline = [await put(store, body=BODY + b"%d\r\n" % i) for i in range(5)]
        spilled = await put(store, body=BIG)
        calls = count_calls(store, ("due", "claim", "read_body"), monkeypatch)
        runner = QueueRunner(store, agent, CONFIG)
        task = asyncio.create_task(runner.run())
        await drained(store)
        bodies = {m.queue_id: body for m, body, _ in agent.calls}
        assert bodies == {
            **{m.queue_id: BODY + b"%d\r\n" % i for i, m in enumerate(inline)},
            spilled.queue_id: BIG,
        }
        assert calls["read_body"] == 1
        assert calls["due"] == 0 and calls["claim"] >= 1
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_claim_carries_inline_bodies(tmp_path: Path) -> None:
    clock = Clock()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        first = await put(store)
        clock.advance(1)
        second = await put(store, body=BIG)
        clock.advance(1)
        later = await put(store)
        later.next_attempt = clock.now + 100
        await store.update(later)
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert [(c.message.queue_id, c.body) for c in claimed] == [
            (first.queue_id, BODY),
            (second.queue_id, None),  # a file: read_body reads it
        ]
        assert claimed[0].message == first and claimed[0].lease_until == clock.now + 60
        assert await store.next_due(clock.now) == later.next_attempt
        assert await store.claim(clock.now, 0, 60, "runner") == []
        await store.close()

    run(main())


def test_kicks_while_saturated_do_not_wake_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every slot busy and more due: a finishing attempt continues anyway, so the
    per-message kicks of the delivery worker are not each a loop iteration."""
    agent = FakeAgent(delay=0.05)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        queued = [await put(store) for _ in range(12)]
        runner = QueueRunner(store, agent, DeliveryConfig(concurrency=2))
        task = asyncio.create_task(runner.run())
        while not agent.calls:
            await asyncio.sleep(0.005)
        scans_before = runner.scans
        for _ in range(200):  # a burst of notifications
            runner.kick()
            await asyncio.sleep(0)
        assert runner.scans - scans_before <= 1
        await drained(store)
        assert Counter(c[0].queue_id for c in agent.calls) == Counter(
            {m.queue_id: 1 for m in queued}
        )
        # Not saturated any more: a kick is a wake-up again (new mail is found).
        fresh = await put(store)
        runner.kick()
        await drained(store)
        assert agent.calls[-1][0].queue_id == fresh.queue_id
        await runner.stop()
        await task
        await store.close()

    run(main())
