"""EmbeddedSpool's two body forms: inline (in queue.db) and spilled (a file in msg/)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

from helpers.spoolkit import BIG, BODY, Clock, envelope, listing, put, run, settle, spilled
from mailwright.spool import _schema
from mailwright.spool._writer import INLINE_BODY_MAX, SPILL_MEMORY_MAX, BodyWriter
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import RecipientStatus
from mailwright.spool.store import SpoolError

MiB = 1024 * 1024
CHUNK = 64 * 1024  # what the server hands to write()


def body_of(size: int) -> bytes:
    """``size`` bytes of mail-like, position-dependent content (a shifted copy differs)."""
    line = bytes(range(33, 127)) + b"\r\n"
    data = b"Subject: sized\r\n\r\n" + line * (size // len(line) + 1)
    return data[:size]


@pytest.mark.parametrize(
    ("size", "inline"),
    [
        (0, True),
        (INLINE_BODY_MAX - 1, True),
        (INLINE_BODY_MAX, True),
        (INLINE_BODY_MAX + 1, False),
        (MiB, False),
    ],
    ids=["empty", "max-1", "max", "max+1", "1MiB"],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["one-write", "64KiB-writes"])
def test_round_trip_around_the_threshold(
    tmp_path: Path, clock: Clock, size: int, inline: bool, chunked: bool
) -> None:
    body = body_of(size)

    async def first() -> str:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        writer = store.new_message()
        assert isinstance(writer, BodyWriter)
        step = CHUNK if chunked else max(size, 1)
        for start in range(0, size, step):
            writer.write(body[start : start + step])
        assert writer.size == size
        message = await store.put(writer, envelope())
        assert message.size == size
        assert writer.inline is inline
        assert writer.body_bytes() == (body if inline else None)
        assert listing(store.tmp_dir) == []
        assert listing(store.msg_dir) == ([] if inline else [message.queue_id])
        assert await store.read_body(message.queue_id) == body
        # No close(): the next instance must not depend on a clean shutdown.
        return message.queue_id

    qid = run(first())

    async def second() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert store.recovery is not None
        assert store.recovery.orphans_removed == store.recovery.missing_bodies == []
        assert await store.read_body(qid) == body
        loaded = await store.load(qid)
        assert loaded is not None and loaded.size == size
        await store.remove(qid)
        assert await store.load(qid) is None
        deadline = time.monotonic() + 5  # a body file is unlinked after the commit
        while listing(store.msg_dir) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert listing(store.msg_dir) == []
        assert [m async for m in store.iterate()] == []
        with pytest.raises(SpoolError, match="cannot read body"):
            await store.read_body(qid)
        await store.close()

    run(second())


def test_small_body_makes_no_file_and_spill_file_appears_off_loop(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = store.new_message()
        assert isinstance(writer, BodyWriter)
        writer.write(body_of(INLINE_BODY_MAX))
        assert listing(store.tmp_dir) == []
        writer.write(b"!")  # one byte over: spills
        await settle(writer)
        assert listing(store.tmp_dir) == [writer.queue_id]
        writer.write(b"more")
        message = await store.put(writer, envelope())
        assert await store.read_body(message.queue_id) == body_of(INLINE_BODY_MAX) + b"!more"
        await store.close()

    run(main())


def test_slow_spill_file_creation_bounds_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the file is being created, writes buffer; past SPILL_MEMORY_MAX they wait."""
    from mailwright.spool import embedded

    real = embedded.create_exclusive

    def slow_create(path: Path) -> int:
        time.sleep(0.2)
        return real(path)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        monkeypatch.setattr(embedded, "create_exclusive", slow_create)
        writer = store.new_message()
        assert isinstance(writer, BodyWriter)
        body = body_of(3 * SPILL_MEMORY_MAX)
        for start in range(0, len(body), CHUNK):
            writer.write(body[start : start + CHUNK])
            assert writer._mem is None or len(writer._mem) <= SPILL_MEMORY_MAX + CHUNK
        assert writer._file is not None  # a write waited for the file
        message = await store.put(writer, envelope())
        assert await store.read_body(message.queue_id) == body
        await store.close()

    run(main())


def test_abort_while_spill_file_is_being_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailwright.spool import embedded

    real = embedded.create_exclusive

    def slow_create(path: Path) -> int:
        time.sleep(0.1)
        return real(path)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        monkeypatch.setattr(embedded, "create_exclusive", slow_create)
        writer = store.new_message()
        writer.write(BIG)
        writer.abort()  # the file does not exist yet
        await store.close()  # waits for the file thread
        assert listing(store.tmp_dir) == []

    run(main())


def test_crash_after_commit_keeps_both_forms_and_cleans_debris(tmp_path: Path) -> None:
    """SIGKILL-like: no close(); a spilled body renamed but never committed, and a
    temporary body, are both removed by the next open()."""

    async def crash() -> tuple[str, str, str, str]:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        small = await put(store, body=BODY)
        large = await put(store, body=BIG)
        half = await spilled(store)  # in DATA when the process dies
        half._file = None  # type: ignore[assignment]  # the kernel closes it
        # A body renamed into msg/ whose transaction never committed.
        orphan = await spilled(store)
        orphan.write(b"x")
        orphan.claim()
        await asyncio.to_thread(orphan.store_file, store.msg_dir / orphan.queue_id)
        return small.queue_id, large.queue_id, half.queue_id, orphan.queue_id

    small, large, half, orphan = run(crash())
    assert listing(tmp_path / "spool" / "tmp") == [half]
    assert listing(tmp_path / "spool" / "msg") == sorted([large, orphan])

    async def restart() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert store.recovery is not None
        assert store.recovery.tmp_removed == [half]
        assert store.recovery.orphans_removed == [orphan]
        assert store.recovery.missing_bodies == []
        assert listing(store.tmp_dir) == [] and listing(store.msg_dir) == [large]
        assert sorted([m.queue_id async for m in store.iterate()]) == sorted([small, large])
        assert await store.read_body(small) == BODY
        assert await store.read_body(large) == BIG
        await store.close()

    run(restart())


def test_group_commit_batches_mixed_bodies(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()

        async def session(i: int) -> tuple[str, bytes]:
            body = b"Subject: %d\r\n\r\n" % i + (BIG if i % 5 == 0 else b"body\r\n")
            writer = store.new_message()
            writer.write(body)
            await asyncio.sleep(0)  # interleave like real sessions
            return (await store.put(writer, envelope())).queue_id, body

        results = await asyncio.gather(*(session(i) for i in range(50)))
        assert len({qid for qid, _ in results}) == 50
        assert store.commit_batches < 50
        assert store.committed_ops == 50
        assert len(listing(store.msg_dir)) == 10
        for qid, body in results:
            assert await store.read_body(qid) == body
        await store.close()

    run(main())


def test_spilled_body_never_replaces_an_existing_file(tmp_path: Path) -> None:
    """A queue id collision with a stored body fails the put; the stored body stays."""

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = await spilled(store)
        (store.msg_dir / writer.queue_id).write_bytes(b"someone else's body")
        with pytest.raises(SpoolError, match="collision"):
            await store.put(writer, envelope())
        assert (store.msg_dir / writer.queue_id).read_bytes() == b"someone else's body"
        assert listing(store.tmp_dir) == []
        await store.close()

    run(main())


def test_duplicate_queue_id_in_database_fails_only_that_put(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        first = await put(store)
        twin = store.new_message()
        assert isinstance(twin, BodyWriter)
        twin.queue_id = first.queue_id  # as if the random part had collided
        twin.path = store.tmp_dir / first.queue_id
        twin.write(b"other body")
        with pytest.raises(SpoolError, match="duplicate id"):
            await store.put(twin, envelope())
        assert await store.read_body(first.queue_id) == BODY  # untouched
        await store.close()

    run(main())


def test_updates_commit_normal_everything_else_full(tmp_path: Path, clock: Clock) -> None:
    """synchronous=NORMAL only for batches that store nothing and unlink no body file."""

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        half = store._committer_half
        assert half is not None

        async def sync_level() -> int:  # asked on the writer thread, which owns the connection
            return await store._on_worker(
                lambda: int(half.conn.execute("PRAGMA synchronous").fetchone()[0])
            )

        small = await put(store)
        large = await put(store, body=BIG)
        assert await sync_level() == 2  # FULL
        small.recipients[0].attempts = 1
        small.next_attempt = clock.now + 60
        await store.update(small)
        assert await sync_level() == 1  # NORMAL: an update only
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert [c.message.queue_id for c in claimed] == [large.queue_id]
        assert await sync_level() == 1  # NORMAL: a lease stores nothing new
        await store.release("runner")
        assert await sync_level() == 1
        assert (await store.load(small.queue_id)) == small
        await store.remove(small.queue_id)  # inline body: goes with its row
        assert await sync_level() == 1
        await store.remove(large.queue_id)  # a body file is unlinked after this one
        assert await sync_level() == 2
        again = await put(store)
        assert await sync_level() == 2
        await store.close()
        return again.queue_id

    qid = run(main())

    async def reopened() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert [m.queue_id async for m in store.iterate()] == [qid]
        assert await store.read_body(qid) == BODY
        assert listing(store.msg_dir) == []  # inline
        await store.close()

    run(reopened())


def test_remove_unlinks_body_file_after_the_futures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unlink does not delay remove()'s caller; it happens soon after, off-thread."""
    from mailwright.spool import embedded

    gate = asyncio.Event()
    unlinked: list[str] = []
    real = embedded._unlink_bodies

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def slow_unlink(paths: list[Path]) -> None:
            loop.call_soon_threadsafe(gate.set)
            time.sleep(0.2)
            real(paths)
            unlinked.extend(p.name for p in paths)

        monkeypatch.setattr(embedded, "_unlink_bodies", slow_unlink)
        store = EmbeddedSpool(tmp_path)
        await store.open()
        message = await put(store, body=BIG)
        started = time.monotonic()
        await store.remove(message.queue_id)
        assert time.monotonic() - started < 0.2
        await store.load(message.queue_id)
        await asyncio.wait_for(gate.wait(), 5)
        await store.close()  # waits for the file thread
        assert unlinked == [message.queue_id]
        assert listing(store.msg_dir) == []

    run(main())


# -- schema -------------------------------------------------------------------------------


def test_version_1_database_is_migrated(tmp_path: Path, clock: Clock) -> None:
    """A queue written before inline bodies existed opens, keeps its mail, gains them."""
    spool = tmp_path / "spool"
    (spool / "msg").mkdir(parents=True)
    (spool / "tmp").mkdir()
    qid = "1HF00000000000AB"
    conn = sqlite3.connect(spool / "queue.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_schema.SCHEMA_V1)
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO messages VALUES (?, 'a@example.com', '7BIT', 0, NULL, NULL, '', '', NULL,"
        " ?, ?, ?, 0, 1)",
        (qid, len(BODY), clock.now, clock.now),
    )
    conn.execute(
        "INSERT INTO recipients VALUES (?, 0, 'b@example.net', '', NULL, 'pending', 0, NULL)",
        (qid,),
    )
    conn.commit()
    conn.close()
    (spool / "msg" / qid).write_bytes(BODY)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert store.recovery is not None and store.recovery.missing_bodies == []
        (due,) = await store.due(clock.now, 10)
        assert due.queue_id == qid and due.pending[0].recipient.address == "b@example.net"
        assert await store.read_body(qid) == BODY
        fresh = await put(store)
        assert await store.read_body(fresh.queue_id) == BODY
        due.recipients[0].status = RecipientStatus.DELIVERED
        await store.remove(qid)
        await store.close()

    run(main())

    async def again() -> None:  # migrated once: a second start finds the current schema
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert [m.queue_id async for m in store.iterate()] != []
        await store.close()

    run(again())


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    conn.execute("PRAGMA user_version=99")
    conn.close()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        with pytest.raises(SpoolError, match=r"schema version 99, expected \d+"):
            await store.open()

    run(main())


def test_reads_do_not_wait_for_a_slow_commit(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """due/load/read_body use their own connection: a commit stuck in fsync delays no scan."""

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        message = await put(store)
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            time.sleep(0.5)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", slow_fsync)
        slow_put = asyncio.create_task(put(store, body=BIG))
        await asyncio.sleep(0.05)  # the commit is now waiting for the body fsync
        started = time.monotonic()
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [message.queue_id]
        assert await store.read_body(message.queue_id) == BODY
        assert time.monotonic() - started < 0.3
        assert not slow_put.done()
        await slow_put
        monkeypatch.undo()
        await store.close()

    run(main())


RECOVERY_QUEUE = 5000  # inline messages: two sets of their ids cost about 1 MiB
RECOVERY_PEAK_MAX = 100 * 1024  # bytes of Python allocations open() may peak at


def test_recovery_memory_does_not_grow_with_inline_messages(tmp_path: Path) -> None:
    """Start-up recovery compares msg/ with the file-backed messages only: a big queue
    of small (inline) messages costs it no memory per message.  It used to build the
    set of every queue id and the set of every inline id in Python (about 20 MiB of
    peak RSS with 100,000 queued, bench/recovery.py)."""

    async def fill() -> str:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        await asyncio.gather(*(put(store) for _ in range(RECOVERY_QUEUE)))
        large = await put(store, body=BIG)
        await store.close()
        return large.queue_id

    large = run(fill())
    (tmp_path / "spool" / "msg" / "orphan-not-an-id").write_bytes(b"x")

    async def restart() -> int:
        store = EmbeddedSpool(tmp_path)
        tracemalloc.start()
        try:
            await store.open()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # Recovery still does its job: the spilled body is kept, nothing is dropped.
        assert store.recovery is not None
        assert store.recovery.missing_bodies == store.recovery.orphans_removed == []
        assert listing(store.msg_dir) == sorted([large, "orphan-not-an-id"])
        await store.close()
        return peak

    peak = run(restart())
    assert peak < RECOVERY_PEAK_MAX, peak
