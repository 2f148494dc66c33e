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
        calls = count_calls(store, ("due", "due_with_bodies", "read_body"), monkeypatch)
        runner = QueueRunner(store, agent, CONFIG)
        task = asyncio.create_task(runner.run())
        await drained(store)
        bodies = {m.queue_id: body for m, body, _ in agent.calls}
        assert bodies == {
            **{m.queue_id: BODY + b"%d\r\n" % i for i, m in enumerate(inline)},
            spilled.queue_id: BIG,
        }
        assert calls["read_body"] == 1
        assert calls["due"] == 0 and calls["due_with_bodies"] >= 1
        await runner.stop()
        await task
        await store.close()

    run(main())


def test_due_with_bodies(tmp_path: Path) -> None:
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
        # All three within the horizon, the last not yet due: no body for it.
        found, batch = await store.due_with_bodies(clock.now + 1000, 10, now=clock.now)
        assert found == 3
        assert [(m.queue_id, body) for m, body in batch] == [
            (first.queue_id, BODY),
            (second.queue_id, None),  # a file: read_body reads it
            (later.queue_id, None),  # not due by `now`
        ]
        assert batch[0][0].recipients == first.recipients
        # Skipped rows are counted (the limit applies to them) but not returned.
        found, batch = await store.due_with_bodies(
            clock.now + 1000, 2, now=clock.now, skip={first.queue_id}
        )
        assert found == 2 and [m.queue_id for m, _ in batch] == [second.queue_id]
        assert await store.due_with_bodies(clock.now, 0, now=clock.now) == (0, [])
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
        fills = count_calls(runner, ("_fill",), monkeypatch)
        task = asyncio.create_task(runner.run())
        while not agent.calls:
            await asyncio.sleep(0.005)
        for _ in range(200):  # a burst of notifications
            runner.kick()
            await asyncio.sleep(0)
        assert fills["_fill"] <= 2
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
