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
from mailwright.spool.model import (
    Attempt,
    BodyType,
    Envelope,
    Recipient,
    RecipientStatus,
    RemoteReply,
    RemoteSession,
    SessionReply,
    SpooledMessage,
)
from mailwright.spool.store import MessageBusy, MessageGone, SpoolError, SpoolStore


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
        first.recipients[0].last_reply = RemoteReply(451, "4.2.0", "Mailbox busy")
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
        small.recipients[1].last_reply = RemoteReply(451, "4.4.1", "No answer")
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


# -- leases ------------------------------------------------------------------------------


def test_contract_claim_is_exclusive(stores: StoreFactory, clock: Clock) -> None:
    """Two claimers — on one store object and on two over the same place — never get
    the same message while its lease runs, also when they claim at the same time."""

    async def main() -> None:
        store = await opened(stores, clock)
        other = await opened(stores, clock)
        ids = [(await put(store)).queue_id for _ in range(30)]
        first, second, third = await asyncio.gather(
            store.claim(clock.now, 12, 60, "runner-a"),
            other.claim(clock.now, 12, 60, "runner-b"),
            store.claim(clock.now, 12, 60, "runner-c"),
        )
        claimed = [c.message.queue_id for c in (*first, *second, *third)]
        assert sorted(claimed) == sorted(ids)  # every message once, none twice
        assert all(c.lease_until == clock.now + 60 for c in (*first, *second, *third))
        assert await store.claim(clock.now, 10, 60, "runner-a") == []
        assert await other.claim(clock.now + 59, 10, 60, "runner-b") == []
        await other.close()
        await store.close()

    run(main())


def test_contract_claim_takes_due_messages_in_order_with_bodies(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        first = await put(store)
        clock.advance(1)
        large = await put(store, body=BIG)
        clock.advance(1)
        later = await put(store)
        later.next_attempt = clock.now + 100
        await store.update(later)
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert [c.message for c in claimed] == [first, large]  # `later` is not due
        for c in claimed:  # the body, or None: then read_body serves it
            assert c.body in (None, await store.read_body(c.message.queue_id))
        assert await store.next_due(clock.now) == later.next_attempt
        assert await store.claim(clock.now, 0, 60, "runner") == []
        await store.close()

    run(main())


def test_contract_lease_expires(stores: StoreFactory, clock: Clock) -> None:
    """A runner that died: its lease runs out and another runner gets the message."""

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store)
        assert len(await store.claim(clock.now, 10, 60, "dead")) == 1
        assert await store.claim(clock.now + 59.9, 10, 60, "alive") == []
        taken = await store.claim(clock.now + 60, 10, 60, "alive")
        assert [c.message.queue_id for c in taken] == [message.queue_id]
        assert taken[0].lease_until == clock.now + 120
        await store.close()

    run(main())


def test_contract_renew_and_release(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        for _ in range(3):
            await put(store)
        a, b = [c.message.queue_id for c in await store.claim(clock.now, 2, 60, "mine")]
        (c,) = [c.message.queue_id for c in await store.claim(clock.now, 1, 60, "theirs")]
        # Only the holder renews; an unknown id is ignored.
        renewed = await store.renew([a, b, c, "0000000000000000"], "mine", clock.now + 600)
        assert sorted(renewed) == sorted([a, b])
        # At +300 c's lease ran out, a's and b's (renewed) did not.
        later = await store.claim(clock.now + 300, 10, 60, "theirs")
        assert [m.message.queue_id for m in later] == [c]
        # Only the holder releases: "theirs" releasing a changes nothing.
        await store.release("theirs", [a])
        assert await store.claim(clock.now, 10, 60, "x") == []
        await store.release("mine", [a])
        assert [m.message.queue_id for m in await store.claim(clock.now, 10, 60, "x")] == [a]
        # release(owner) with no ids: every lease it holds (a restarted runner).
        await store.release("theirs")
        assert [m.message.queue_id for m in await store.claim(clock.now, 10, 60, "y")] == [c]
        await store.close()
        restarted = await opened(stores, clock)  # leases are stored state: b is still held
        assert await restarted.claim(clock.now, 10, 60, "z") == []
        await restarted.release("mine")
        assert [m.message.queue_id for m in await restarted.claim(clock.now, 10, 60, "z")] == [b]
        await restarted.close()

    run(main())


# -- attempts ----------------------------------------------------------------------------


def test_contract_attempt_history_order_and_content(stores: StoreFactory, clock: Clock) -> None:
    """``record_attempt``: the recipients' state, the history rows in order with their
    structured replies and remote hosts, and the end of the recorder's lease."""
    busy = RemoteReply(451, "4.2.0", "Mailbox busy")
    unknown = RemoteReply(550, "5.1.1", "User unknown")
    ok = RemoteReply(250, "2.0.0", "Ok: queued as 1234")

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, envelope("a@example.net", "b@example.org"))
        assert await store.attempts(message.queue_id) == []
        (claimed,) = await store.claim(clock.now, 10, 600, "runner")
        m = claimed.message
        m.attempts = 1
        m.next_attempt = clock.now + 60
        m.recipients[0].attempts = m.recipients[1].attempts = 1
        m.recipients[0].last_reply = busy
        m.recipients[1].status = RecipientStatus.FAILED
        m.recipients[1].last_reply = unknown
        first = [
            Attempt(0, clock.now, RecipientStatus.PENDING, busy, "mx1.example.net"),
            Attempt(1, clock.now, RecipientStatus.FAILED, unknown, None),
        ]
        await store.record_attempt(m, first, "runner")
        assert await store.load(m.queue_id) == m
        clock.advance(60)
        # The lease ended with the record: due again, anyone may claim it.
        (again,) = await store.claim(clock.now, 10, 600, "other")
        m = again.message
        m.attempts = 2
        m.recipients[0].attempts = 2
        m.recipients[0].status = RecipientStatus.DELIVERED
        m.recipients[0].last_reply = ok
        second = [Attempt(0, clock.now, RecipientStatus.DELIVERED, ok, "mx2.example.net")]
        await store.record_attempt(m, second, "other")
        assert await store.attempts(m.queue_id) == first + second
        loaded = await store.load(m.queue_id)
        assert loaded is not None and loaded.recipients[0].last_reply == ok
        assert loaded.recipients[1].last_reply == unknown
        await store.close()
        restarted = await opened(stores, clock)
        assert await restarted.attempts(m.queue_id) == first + second
        await restarted.remove(m.queue_id)  # the history goes with the message
        assert await restarted.attempts(m.queue_id) == []
        await restarted.close()

    run(main())


def test_contract_attempt_history_keeps_the_remote_session(
    stores: StoreFactory, clock: Clock
) -> None:
    """An attempt's session (host name and address, TLS version and cipher, the TLS
    policy and the replies that concern the recipient) comes back as it was recorded,
    also after a restart; a session that is None stays None."""
    refused = RemoteReply(550, "5.1.1", "<b@example.org>: User unknown (\u00e9t\u00e9)")
    replies = (
        SessionReply("greeting", "", RemoteReply(220, "", "mx.example.org ESMTP")),
        SessionReply("ehlo", "EHLO out.example.net", RemoteReply(250, "", "mx PIPELINING")),
        SessionReply("starttls", "STARTTLS", RemoteReply(220, "2.0.0", "Ready")),
        SessionReply("mail", "MAIL FROM:<a@example.net>", RemoteReply(250, "2.1.0", "Ok")),
        SessionReply("rcpt", "RCPT TO:<b@example.org>", refused),
    )
    session = RemoteSession(
        host="mx.example.org",
        address="2001:db8::25",
        port=2525,
        tls_version="TLSv1.3",
        tls_cipher="TLS_AES_256_GCM_SHA384",
        tls_mode="verify",
        tls_source="mta-sts",
        tls_reason="policy mode enforce",
        replies=replies,
    )

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, envelope("a@example.net", "b@example.org"))
        message.attempts = 1
        message.recipients[1].status = RecipientStatus.FAILED
        message.recipients[1].last_reply = refused
        rows = [
            Attempt(1, clock.now, RecipientStatus.FAILED, refused, "mx.example.org", session),
            Attempt(0, clock.now, RecipientStatus.PENDING, refused, None, None),
        ]
        await store.record_attempt(message, rows)
        assert await store.attempts(message.queue_id) == rows
        await store.close()
        restarted = await opened(stores, clock)
        (first, second) = await restarted.attempts(message.queue_id)
        assert first.session == session and second.session is None
        await restarted.close()

    run(main())


def test_contract_record_attempt_of_a_removed_message_fails(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store)
        await store.remove(message.queue_id)
        reply = RemoteReply(451, "4.4.1", "No answer")
        with pytest.raises(SpoolError):
            await store.record_attempt(
                message, [Attempt(0, clock.now, RecipientStatus.PENDING, reply)], "runner"
            )
        assert await store.attempts(message.queue_id) == []
        await store.close()

    run(main())


@pytest.mark.parametrize("body", [BODY, BIG], ids=["small", "large"])
def test_contract_header_block_is_stored_with_the_row_and_prepended_on_read(
    stores: StoreFactory, clock: Clock, body: bytes
) -> None:
    """The header fields the MESSAGE stage added come back first from every read
    (``read_body``, ``claim``), across a restart; the body as written follows."""
    block = b"Authentication-Results: mx.example.net; spf=pass\r\nX-Test: yes\r\n"

    async def main() -> None:
        store = await opened(stores, clock)
        writer = store.new_message()
        writer.write(body)
        message = await store.put(writer, envelope(), block)
        assert message.header_block == block
        assert message.size == len(block) + len(body)
        plain = await put(store, body=body)
        assert plain.header_block == b"" and plain.size == len(body)
        await store.close()

        again = await opened(stores, clock)
        loaded = await again.load(message.queue_id)
        assert loaded == message
        assert await again.read_body(message.queue_id) == block + body
        assert await again.read_body(plain.queue_id) == body
        claimed = {c.message.queue_id: c for c in await again.claim(clock.now, 10, 60, "r")}
        assert claimed[message.queue_id].message.header_block == block
        for qid, expected in ((message.queue_id, block + body), (plain.queue_id, body)):
            got = claimed[qid].body
            assert got is None or got == expected  # None: read_body (checked above)
        await again.close()

    run(main())


# -- administration (`mailwright queue`) ---------------------------------------------------


def test_contract_scan_and_entry_show_state_hold_and_lease_without_bodies(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        first = await put(store, envelope("a@example.net", "b@example.org"))
        clock.advance(1)
        large = await put(store, body=BIG)
        first.recipients[0].status = RecipientStatus.DELIVERED
        first.recipients[1].attempts = 1
        first.recipients[1].last_reply = RemoteReply(451, "4.2.0", "Mailbox busy")
        first.attempts = 1
        await store.update(first)
        (claimed,) = await store.claim(clock.now, 1, 60, "runner")  # `large`: first is due later
        assert claimed.message.queue_id in (first.queue_id, large.queue_id)
        assert await store.hold(first.queue_id, clock.now)
        entries = [e async for e in store.scan()]
        assert [e.message.queue_id for e in entries] == [first.queue_id, large.queue_id]
        by_id = {e.message.queue_id: e for e in entries}
        assert by_id[first.queue_id].message == first
        assert by_id[first.queue_id].held_since == clock.now
        assert by_id[large.queue_id].held_since is None
        leased = by_id[claimed.message.queue_id]
        assert leased.lease_owner == "runner" and leased.leased(clock.now)
        assert not leased.leased(clock.now + 60)  # a lease that ran out is no lease
        assert await store.entry(first.queue_id) == by_id[first.queue_id]
        assert await store.entry("0000000000000000") is None
        assert await store.entry("../etc/passwd") is None
        await store.close()

    run(main())


def test_contract_held_message_is_never_claimed_until_unhold_also_across_restart(
    stores: StoreFactory, clock: Clock
) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        held = await put(store)
        clock.advance(1)
        other = await put(store)
        assert await store.hold(held.queue_id, clock.now)
        assert await store.hold(held.queue_id, clock.now + 5)  # again: keeps the first time
        assert not await store.hold("0000000000000000", clock.now)
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [other.queue_id]
        assert await store.next_due(clock.now) == other.next_attempt
        claimed = await store.claim(clock.now + 3600, 10, 60, "runner")
        assert [c.message.queue_id for c in claimed] == [other.queue_id]
        await store.release("runner")
        await store.close()

        restarted = await opened(stores, clock)  # the hold is stored state
        entry = await restarted.entry(held.queue_id)
        assert entry is not None and entry.held_since == clock.now
        assert held.queue_id not in [
            c.message.queue_id for c in await restarted.claim(clock.now + 3600, 10, 60, "r")
        ]
        assert await restarted.unhold(held.queue_id)
        assert not await restarted.unhold("0000000000000000")
        entry = await restarted.entry(held.queue_id)
        assert entry is not None and entry.held_since is None
        (claimed_after,) = await restarted.claim(clock.now, 10, 60, "r")
        assert claimed_after.message.queue_id == held.queue_id
        await restarted.close()

    run(main())


def test_contract_retry_makes_pending_messages_due_now(stores: StoreFactory, clock: Clock) -> None:
    async def main() -> None:
        store = await opened(stores, clock)
        due_first = await put(store)
        clock.advance(10)
        deferred = await put(store)
        deferred.attempts = 1
        deferred.recipients[0].attempts = 1
        deferred.next_attempt = clock.now + 3600
        await store.update(deferred)
        done = await put(store)
        done.recipients[0].status = RecipientStatus.DELIVERED
        await store.update(done)
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [due_first.queue_id]

        assert await store.retry(clock.now, [deferred.queue_id, done.queue_id]) == [
            deferred.queue_id  # nothing pending in `done`: not matched
        ]
        loaded = await store.load(deferred.queue_id)
        assert loaded is not None and loaded.next_attempt == clock.now
        # What was due already keeps its (earlier) time and so its place.
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [
            due_first.queue_id,
            deferred.queue_id,
        ]
        assert await store.retry(clock.now, ["0000000000000000"]) == []
        deferred.next_attempt = clock.now + 3600
        await store.update(deferred)
        assert sorted(await store.retry(clock.now + 1)) == sorted(
            [due_first.queue_id, deferred.queue_id]
        )
        again = await store.load(due_first.queue_id)
        assert again is not None and again.next_attempt == due_first.next_attempt
        await store.close()

    run(main())


@pytest.mark.parametrize("body", [BODY, BIG], ids=["small", "large"])
def test_contract_delete_removes_everything_but_refuses_a_leased_message(
    stores: StoreFactory, clock: Clock, body: bytes
) -> None:
    reply = RemoteReply(451, "4.2.0", "Mailbox busy")

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, body=body)
        (claimed,) = await store.claim(clock.now, 10, 60, "runner")
        with pytest.raises(MessageBusy):
            await store.delete(message.queue_id, clock.now)
        assert await store.read_body(message.queue_id) == body  # untouched
        m = claimed.message
        m.recipients[0].attempts = 1
        m.recipients[0].last_reply = reply
        m.next_attempt = clock.now + 60
        await store.record_attempt(
            m, [Attempt(0, clock.now, RecipientStatus.PENDING, reply)], "runner"
        )
        assert await store.delete(message.queue_id, clock.now)
        assert not await store.delete(message.queue_id, clock.now)  # gone: False
        assert await store.load(message.queue_id) is None
        assert await store.attempts(message.queue_id) == []
        with pytest.raises(SpoolError):
            await store.read_body(message.queue_id)
        # A lease that ran out (its runner died) does not protect the message.
        other = await put(store, body=body)
        await store.claim(clock.now + 120, 10, 60, "dead")
        assert await store.delete(other.queue_id, clock.now + 180)
        await store.close()
        restarted = await opened(stores, clock)
        assert await queued(restarted) == []
        await restarted.close()

    run(main())


def test_contract_update_of_a_deleted_message_raises_message_gone(
    stores: StoreFactory, clock: Clock
) -> None:
    """The runner tells "deleted by the operator mid-attempt" from a store failure."""

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store)
        assert await store.delete(message.queue_id, clock.now)
        with pytest.raises(MessageGone):
            await store.update(message)
        with pytest.raises(MessageGone):
            await store.record_attempt(message, [], "runner")
        await store.close()

    run(main())


def test_contract_delay_warned_is_kept_per_recipient_across_restarts(
    stores: StoreFactory, clock: Clock
) -> None:
    """The queue runner's "delay DSN sent" mark survives ``record_attempt`` and a restart."""

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, envelope("a@example.net", "b@example.net"))
        assert [s.delay_warned for s in message.recipients] == [False, False]
        message.recipients[1].delay_warned = True
        message.recipients[1].last_reply = RemoteReply(451, "4.2.0", "Mailbox busy")
        await store.record_attempt(message, [])
        await store.close()

        reopened = await opened(stores, clock)
        loaded = await reopened.load(message.queue_id)
        assert loaded is not None
        assert [s.delay_warned for s in loaded.recipients] == [False, True]
        (claimed,) = await reopened.claim(clock.now, 10, 60, "runner")
        assert [s.delay_warned for s in claimed.message.recipients] == [False, True]
        await reopened.close()

    run(main())


# -- progress: part of an attempt recorded while it runs ----------------------------------


def test_contract_record_progress_is_durable_and_keeps_the_lease(
    stores: StoreFactory, clock: Clock
) -> None:
    """``record_progress``: the recipients' state and the history rows are committed
    before it returns — a second store over the same place, while the first is still
    open, sees them — and the recorder's lease is still held afterwards (no one else
    can claim the message; its holder can renew it); ``record_attempt`` then ends it."""
    ok = RemoteReply(250, "2.0.0", "Ok: queued as FAST1")
    busy = RemoteReply(451, "4.4.1", "No answer")

    async def main() -> None:
        store = await opened(stores, clock)
        message = await put(store, envelope("a@fast.test", "b@slow.test"))
        (claimed,) = await store.claim(clock.now, 10, 600, "runner")
        m = claimed.message
        m.recipients[0].status = RecipientStatus.DELIVERED
        m.recipients[0].attempts = 1
        m.recipients[0].last_reply = ok
        early = [Attempt(0, clock.now, RecipientStatus.DELIVERED, ok, "mx.fast.test[192.0.2.1]:25")]
        await store.record_progress(m, early, "runner")

        other = await opened(stores, clock)
        seen = await other.load(message.queue_id)
        assert seen is not None
        assert [s.status for s in seen.recipients] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.PENDING,
        ]
        assert seen.recipients[0].last_reply == ok
        assert await other.attempts(message.queue_id) == early
        # The lease is kept: not claimable by anyone else, renewable by its holder.
        assert await other.claim(clock.now + 1, 10, 600, "other") == []
        assert await store.renew([message.queue_id], "runner", clock.now + 900) == [
            message.queue_id
        ]
        await other.close()

        # The attempt ends: b deferred, the history has both rows once, lease ended.
        m.attempts = 1
        m.next_attempt = clock.now + 60
        m.recipients[1].attempts = 1
        m.recipients[1].last_reply = busy
        late = [Attempt(1, clock.now, RecipientStatus.PENDING, busy)]
        await store.record_attempt(m, late, "runner")
        assert await store.attempts(message.queue_id) == early + late
        (again,) = await store.claim(clock.now + 60, 10, 600, "other")
        assert again.message.pending[0].recipient.address == "b@slow.test"
        await store.close()
        restarted = await opened(stores, clock)
        assert await restarted.attempts(message.queue_id) == early + late
        await restarted.close()

    run(main())


def test_contract_record_progress_only_by_the_lease_holder(
    stores: StoreFactory, clock: Clock
) -> None:
    """Another owner's live lease refuses it (``MessageBusy``) and nothing changes; a
    lease that ran out, or no lease at all (fresh mail attempted from an offer), does
    not; a message that is gone raises ``MessageGone``."""
    ok = RemoteReply(250, "2.0.0", "Ok")

    def delivered_first(m: SpooledMessage) -> list[Attempt]:
        m.recipients[0].status = RecipientStatus.DELIVERED
        m.recipients[0].attempts = 1
        m.recipients[0].last_reply = ok
        return [Attempt(0, clock.now, RecipientStatus.DELIVERED, ok)]

    async def main() -> None:
        store = await opened(stores, clock)
        leased = await put(store, envelope("a@fast.test", "b@slow.test"))
        (claimed,) = await store.claim(clock.now, 10, 60, "a")
        with pytest.raises(MessageBusy):
            await store.record_progress(claimed.message, delivered_first(claimed.message), "b")
        loaded = await store.load(leased.queue_id)
        assert loaded is not None and len(loaded.pending) == 2
        assert await store.attempts(leased.queue_id) == []
        clock.advance(61)  # a's lease ran out: b took over
        await store.record_progress(claimed.message, delivered_first(claimed.message), "b")
        loaded = await store.load(leased.queue_id)
        assert loaded is not None and len(loaded.pending) == 1

        fresh = await put(store, envelope("c@fast.test", "d@slow.test"))
        await store.record_progress(fresh, delivered_first(fresh), "runner")
        assert len(await store.attempts(fresh.queue_id)) == 1

        assert await store.delete(fresh.queue_id, clock.now)
        with pytest.raises(MessageGone):
            await store.record_progress(fresh, [], "runner")
        await store.close()

    run(main())
