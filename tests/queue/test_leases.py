"""The queue runner and the store's leases and attempt history, over every backend:
two runners never attempt one message at once, a long attempt keeps its lease, a
restarted runner takes its own leases back at once, and every attempt leaves history
rows with the structured reply and the remote host."""

from __future__ import annotations

import asyncio
import email
import time
from collections import Counter
from typing import Any

from helpers.spoolkit import (
    BUSY,
    CONFIG,
    Clock,
    FakeAgent,
    StoreFactory,
    envelope,
    put,
    run,
)
from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryResult, Progress
from mailwright.queue.runner import QueueRunner
from mailwright.smtp import Reply
from mailwright.spool.model import Recipient, RecipientStatus, RemoteReply, SpooledMessage
from mailwright.spool.store import SpoolStore


async def drained(store: SpoolStore, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while [m async for m in store.iterate()]:
        assert time.monotonic() < deadline, "queue not drained"
        await asyncio.sleep(0.02)


def test_two_runners_on_one_store_never_attempt_a_message_twice(stores: StoreFactory) -> None:
    """Two runners (two owners) over the same queue, both scanning while the other
    delivers: each message is attempted exactly once."""
    agent = FakeAgent(delay=0.02)
    config = DeliveryConfig(concurrency=3)

    async def main() -> None:
        first, second = stores(), stores()
        await first.open()
        await second.open()
        ids = [(await put(first)).queue_id for _ in range(40)]
        runners = [
            QueueRunner(first, agent, config, owner="node-a"),
            QueueRunner(second, agent, config, owner="node-b"),
        ]
        tasks = [asyncio.create_task(r.run()) for r in runners]
        await drained(first)
        for runner in runners:
            await runner.stop()
        await asyncio.gather(*tasks)
        attempts = Counter(call[0].queue_id for call in agent.calls)
        assert attempts == Counter(dict.fromkeys(ids, 1))
        await second.close()
        await first.close()

    run(main())


def test_restarted_runner_takes_its_own_leases_back_at_once(stores: StoreFactory) -> None:
    """A runner killed while it held leases: the next runner of the same owner (the
    same node) delivers them now, not when the leases run out."""
    agent = FakeAgent()

    async def main() -> None:
        store = stores()
        await store.open()
        message = await put(store)
        now = time.time()
        assert len(await store.claim(now, 10, 3600, "node")) == 1  # then "kill -9"
        runner = QueueRunner(store, agent, CONFIG, owner="node")
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(agent.called.wait(), 5)
        assert agent.calls[0][0].queue_id == message.queue_id
        await runner.stop()
        await task
        # Another node's lease is respected: it is not ours to take back.
        held = await put(store)
        assert len(await store.claim(time.time(), 10, 3600, "other-node")) == 1
        runner = QueueRunner(store, agent, CONFIG, owner="node")
        task = asyncio.create_task(runner.run())
        # A marker the runner is told about: once it is delivered, the runner has
        # been at work, and the message leased to the other node was not taken.
        marker = await put(store)
        runner.announce(marker.queue_id)
        deadline = time.monotonic() + 5
        while len(agent.calls) < 2:
            assert time.monotonic() < deadline, "the marker was not delivered"
            await asyncio.sleep(0.01)
        assert [c[0].queue_id for c in agent.calls] == [message.queue_id, marker.queue_id]
        assert await store.load(held.queue_id) is not None
        await runner.stop()
        await task
        await store.close()

    run(main())


class RenewSignal:
    """Wraps a store's ``renew`` to tell the test that a renewal happened."""

    def __init__(self, store: SpoolStore) -> None:
        self.renewed = asyncio.Event()
        real = store.renew

        async def renew(*args: Any) -> list[str]:
            result = await real(*args)
            if result:
                self.renewed.set()
            return result

        store.renew = renew  # type: ignore[method-assign]


def test_long_attempt_keeps_its_lease(stores: StoreFactory, clock: Clock) -> None:
    """An attempt longer than the lease: the runner renews it, so another runner cannot
    claim the message while it is being delivered."""
    gate = asyncio.Event()

    class SlowAgent(FakeAgent):
        async def deliver(self, *args: Any, **kwargs: Any) -> dict[str, DeliveryResult]:
            result = await super().deliver(*args, **kwargs)
            await gate.wait()
            return result

    agent = SlowAgent()

    async def main() -> None:
        store = stores(clock)
        await store.open()
        signal = RenewSignal(store)
        message = await put(store)
        runner = QueueRunner(store, agent, CONFIG, clock=clock, owner="a", lease=10)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(agent.called.wait(), 5)
        clock.advance(8)  # past a fifth of the lease: the next loop pass renews
        runner.kick()
        await asyncio.wait_for(signal.renewed.wait(), 5)
        # The first lease ended at +10; the renewed one runs to +18.
        assert await store.claim(clock.now + 5, 10, 60, "b") == []
        gate.set()
        await drained(store)
        assert [c[0].queue_id for c in agent.calls] == [message.queue_id]
        await runner.stop()
        await task
        await store.close()

    run(main())


class HostAgent(FakeAgent):
    """Answers like a relay: every result names the remote host that gave it."""

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        results = await super().deliver(message, body, recipients)
        return {a: DeliveryResult(r.reply, r.reason, "mx1.example.net") for a, r in results.items()}


def test_runner_records_each_attempt_as_history(stores: StoreFactory, clock: Clock) -> None:
    agent = HostAgent({"bob@example.net": BUSY})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG, clock=clock)
        message = await put(store, envelope("bob@example.net", "carol@example.net"))
        await runner.run_once()
        first_at = clock.now
        clock.advance(3600)
        await runner.run_once()
        busy = RemoteReply(451, "4.2.0", "Mailbox busy")
        ok = RemoteReply(250, "2.0.0", "Delivered")
        history = await store.attempts(message.queue_id)
        assert [(a.position, a.at, a.status, a.reply, a.remote_host) for a in history] == [
            (0, first_at, RecipientStatus.PENDING, busy, "mx1.example.net"),
            (1, first_at, RecipientStatus.DELIVERED, ok, "mx1.example.net"),
            (0, clock.now, RecipientStatus.PENDING, busy, "mx1.example.net"),
        ]
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.recipients[0].last_reply == busy
        await store.close()

    run(main())


def test_bounce_status_comes_from_the_structured_reply(stores: StoreFactory, clock: Clock) -> None:
    """Regression: the DSN's Status was parsed back from the stored reply *text*, so a
    550 without an enhanced code whose text began like one ("4.2.2 ...") was reported
    as Status 4.2.2 — a transient status for a permanent failure.  The status now
    comes from the reply's own fields: the class of 550, 5.0.0 (RFC 3463 §2)."""
    over_quota = Reply.of(550, "", "4.2.2 mailbox over quota")
    agent = FakeAgent({"bob@example.net": over_quota, "alice@example.com": BUSY})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        runner = QueueRunner(store, agent, CONFIG, clock=clock)
        await put(store, envelope("bob@example.net"))
        await runner.run_once()
        (bounce,) = [m async for m in store.iterate() if m.envelope.mail_from == ""]
        parsed = email.message_from_bytes(await store.read_body(bounce.queue_id))
        parts = parsed.get_payload()
        assert isinstance(parts, list)
        blocks = parts[1].get_payload()
        assert isinstance(blocks, list)
        assert blocks[1]["Status"] == "5.0.0"
        # Our agent's own reply (no remote host): RFC 3464 §2.3.6's X- type, text only.
        assert blocks[1]["Diagnostic-Code"] == "X-mailwright; 4.2.2 mailbox over quota"
        await store.close()

    run(main())
