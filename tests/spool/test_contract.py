"""The ``SpoolStore`` contract, backend-neutral: every backend passes every test here.

Parametrised over the embedded backend (SQLite + files) and the in-memory one; a shared
backend (PostgreSQL) joins ``BACKENDS`` and must pass the same suite.  Only the
protocol is used — no backend's files or tables are looked at.  A "restart" is a new
store object over the same place (``StoreFactory``): the same data folder, or the
same ``MemoryState`` (the memory backend is not durable across processes; its
restarts keep what was committed, which is what these tests check).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from helpers.spoolkit import BACKENDS, BIG, BODY, Clock, StoreFactory, envelope, put, run
from mailwright.spool.model import BodyType, Envelope, Recipient, RecipientStatus
from mailwright.spool.store import SpoolError, SpoolStore


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return StoreFactory(request.param, tmp_path)


async def opened(stores: StoreFactory, clock: Clock) -> SpoolStore:
    store = stores(clock)
    await store.open()
    return store


async def queued(store: SpoolStore) -> list[str]:
    return [m.queue_id async for m in store.iterate()]


@pytest.mark.parametrize("body", [BODY, BIG], ids=["small", "large"])
def test_contract_put_is_durable_before_it_returns(
    stores: StoreFactory, clock: Clock, body: bytes
) -> None:
    """Read back by a *second* store over the same place while the first is still
    open and was never closed: what ``put`` returned for is already committed."""

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, envelope("bob@example.net", "carol@example.org"), body)
        other = await opened(stores, clock)
        loaded = await other.load(message.queue_id)
        assert loaded == message
        assert await other.read_body(message.queue_id) == body
        await other.close()
        await store.close()

    run(main())


def test_contract_put_takes_bytes_or_its_writer(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        env = envelope("bob@example.net")
        from_bytes = await store.put(BIG, env)
        writer = store.new_message()
        writer.write(BODY)
        from_writer = await store.put(writer, env)
        assert writer.body_bytes() in (BODY, None)  # None: the backend did not keep it
        assert from_bytes.size == len(BIG) and from_writer.size == len(BODY)
        assert await store.read_body(from_bytes.queue_id) == BIG
        assert await store.read_body(from_writer.queue_id) == BODY
        assert sorted(await queued(store)) == sorted([from_bytes.queue_id, from_writer.queue_id])
        with pytest.raises(ValueError, match="at least one recipient"):
            await store.put(BODY, Envelope(mail_from="", recipients=()))
        await store.close()

    run(main())


def test_contract_envelope_round_trip(stores: StoreFactory, clock: Clock) -> None:
    env = Envelope(
        mail_from="",
        recipients=(
            Recipient("bob@example.net", ("SUCCESS", "FAILURE"), "rfc822;bob@example.net"),
            Recipient("Postmaster"),
        ),
        body_type=BodyType.BINARY_MIME,
        smtputf8=True,
        ret="HDRS",
        envid="env 1",
        client_address="192.0.2.1",
        client_helo="client.example",
        auth_user="alice",
    )

    async def main() -> None:
        store = await opened(stores, clock)
        message = await store.put(BODY, env)
        assert message.received_at == message.next_attempt == clock.now
        assert [r.status for r in message.recipients] == [RecipientStatus.PENDING] * 2
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.envelope == env and loaded == message
        assert await store.load("0000000000000000") is None
        assert await store.load("../etc/passwd") is None
        await store.close()

    run(main())


def test_contract_due_order_limit_and_update(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        first = await put(store)
        clock.advance(1)
        second = await put(store)
        clock.advance(1)
        third = await put(store)
        due = await store.due(clock.now, 10)
        assert [m.queue_id for m in due] == [first.queue_id, second.queue_id, third.queue_id]
        assert [m.queue_id for m in await store.due(clock.now, 2)] == [
            first.queue_id,
            second.queue_id,
        ]
        assert await store.due(clock.now, 0) == []

        # Deferred: no longer due now; due again at its next attempt, after the others.
        first.attempts = 1
        first.next_attempt = clock.now + 60
        first.recipients[0].attempts = 1
        first.recipients[0].last_reply = "451 4.2.0 Mailbox busy"
        await store.update(first)
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [
            second.queue_id,
            third.queue_id,
        ]
        later = await store.due(clock.now + 60, 10)
        assert [m.queue_id for m in later][-1] == first.queue_id
        loaded = await store.load(first.queue_id)
        assert loaded == first

        # Nothing pending: never due, still listed until removed.
        second.recipients[0].status = RecipientStatus.DELIVERED
        await store.update(second)
        assert second.queue_id not in [m.queue_id for m in await store.due(clock.now + 99, 10)]
        assert second.queue_id in await queued(store)
        await store.remove(second.queue_id)
        await store.remove(second.queue_id)  # idempotent
        assert await store.load(second.queue_id) is None
        with pytest.raises(SpoolError):
            await store.read_body(second.queue_id)
        with pytest.raises(SpoolError):
            await store.update(second)  # gone: an update cannot resurrect it
        await store.close()

    run(main())


def test_contract_returned_messages_are_copies(stores: StoreFactory, clock: Clock) -> None:
    """Mutating a returned message changes nothing stored until ``update``."""

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store)
        loaded = await store.load(message.queue_id)
        assert loaded is not None
        loaded.recipients[0].status = RecipientStatus.DELIVERED
        loaded.next_attempt += 1000
        again = await store.load(message.queue_id)
        assert again == message
        await store.close()

    run(main())


def test_contract_iterate_lists_everything_in_arrival_order(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        ids = []
        for _ in range(300):  # more than one page of the embedded store's iteration
            ids.append((await put(store)).queue_id)
            clock.advance(0.01)  # queue ids have millisecond resolution
        assert await queued(store) == ids
        await store.close()

    run(main())


def test_contract_aborted_or_unfinished_writers_leave_nothing(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        aborted = store.new_message()
        aborted.write(BIG)
        aborted.abort()
        aborted.abort()  # idempotent
        with pytest.raises((SpoolError, ValueError)):
            await store.put(aborted, envelope())
        unfinished = store.new_message()
        unfinished.write(BODY)  # the client vanished; the store restarts
        kept = await put(store)
        await store.close()
        restarted = await opened(stores, clock)
        assert await queued(restarted) == [kept.queue_id]
        await restarted.close()

    run(main())


def test_contract_recovery_after_restart(stores: StoreFactory, clock: Clock) -> None:
    """Every committed message, with its delivery state, survives a restart."""

    async def main() -> None:
        store = await opened(stores, clock)
        small = await put(store, envelope("a@example.net", "b@example.net"))
        large = await put(store, body=BIG)
        small.attempts = 1
        small.next_attempt = clock.now + 300
        small.recipients[0].status = RecipientStatus.DELIVERED
        small.recipients[1].attempts = 1
        small.recipients[1].last_reply = "451 4.4.1 No answer"
        await store.update(small)
        await store.close()

        restarted = await opened(stores, clock)
        assert await restarted.load(small.queue_id) == small
        assert await restarted.load(large.queue_id) == large
        assert await restarted.read_body(large.queue_id) == BIG
        assert await restarted.read_body(small.queue_id) == BODY
        assert [m.queue_id for m in await restarted.due(clock.now, 10)] == [large.queue_id]
        await restarted.close()

    run(main())


def test_contract_concurrent_puts_all_commit(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        messages = await asyncio.gather(*(put(store) for _ in range(50)))
        assert sorted(await queued(store)) == sorted(m.queue_id for m in messages)
        await store.close()

    run(main())


def test_contract_closed_store_refuses_work(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store)
        writer = store.new_message()
        await store.close()
        with pytest.raises(SpoolError):
            writer.write(BODY)
            await store.put(writer, envelope())
        with pytest.raises(SpoolError):
            await store.put(BODY, envelope())
        with pytest.raises(SpoolError):
            await store.load(message.queue_id)
        with pytest.raises(SpoolError):
            await store.due(clock.now, 10)
        closed = store.new_message()  # never raises itself: write/put do
        with pytest.raises(SpoolError):
            closed.write(BODY)

    run(main())
