"""EmbeddedSpool: durability, round trips, queue operations, recovery, group commit."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from pathlib import Path

import pytest

from helpers.spoolkit import BIG, BODY, Clock, envelope, listing, put, run, spilled
from mailwright.spool import _commit, _db, embedded
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import (
    BodyType,
    Envelope,
    Recipient,
    RecipientStatus,
    RemoteReply,
)
from mailwright.spool.queueid import is_queue_id
from mailwright.spool.store import SpoolError


async def on_disk(tmp_path: Path) -> list[str]:
    """The queue as an independent store over the same folder reads it (what is on
    disk), through the store's API: tests do not open ``queue.db`` themselves."""
    other = EmbeddedSpool(tmp_path, recover=False)
    await other.open()
    try:
        return [m.queue_id async for m in other.iterate()]
    finally:
        await other.close()


@pytest.mark.parametrize("body", [BODY, BIG], ids=["inline", "spilled"])
def test_put_makes_body_and_rows_durable(tmp_path: Path, clock: Clock, body: bytes) -> None:
    async def main() -> str:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        message = await put(store, envelope("bob@example.net", "carol@example.org"), body)
        # Checked while the store is still open: durable means on disk *now*, read
        # here by an independent store (its own database connections).
        assert listing(store.tmp_dir) == []
        assert (store.root / "queue.db-wal").exists()  # journal_mode=WAL
        other = EmbeddedSpool(tmp_path, recover=False)
        await other.open()
        assert await other.load(message.queue_id) == message
        assert await other.read_body(message.queue_id) == body
        await other.close()
        if body is BODY:  # inline: in the database, no file
            assert listing(store.msg_dir) == []
        else:
            assert (store.msg_dir / message.queue_id).read_bytes() == BIG
        await store.close()
        return message.queue_id

    qid = run(main())
    assert is_queue_id(qid)

    async def reopened() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        loaded = await store.load(qid)
        assert loaded is not None
        assert (loaded.envelope.mail_from, loaded.size, len(loaded.pending)) == (
            "alice@example.com",
            len(body),
            2,
        )
        assert [(r.recipient.address, r.status) for r in loaded.recipients] == [
            ("bob@example.net", RecipientStatus.PENDING),
            ("carol@example.org", RecipientStatus.PENDING),
        ]
        await store.close()

    run(reopened())


def test_load_and_read_body_round_trip(tmp_path: Path, clock: Clock) -> None:
    env = Envelope(
        mail_from="alice@example.com",
        recipients=(
            Recipient("bob@example.net", ("SUCCESS", "FAILURE"), "rfc822;bob+2Bx@example.net"),
            Recipient("dörte@exämple.de", ("NEVER",)),
        ),
        body_type=BodyType.EIGHT_BIT_MIME,
        smtputf8=True,
        ret="HDRS",
        envid="env-1",
        client_address="192.0.2.1",
        client_helo="client.example",
        auth_user="alice",
    )
    body = BODY + bytes(range(256)) * 1000  # binary-safe, several write chunks

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        writer = store.new_message()
        for start in range(0, len(body), 65536):
            writer.write(body[start : start + 65536])
        assert writer.size == len(body)
        message = await store.put(writer, env)
        loaded = await store.load(message.queue_id)
        assert loaded == message
        assert loaded is not None and loaded.envelope == env
        assert loaded.received_at == clock.now == loaded.next_attempt
        assert await store.read_body(message.queue_id) == body
        assert await store.load("0" * 16) is None
        assert await store.load("../../etc/passwd") is None
        with pytest.raises(SpoolError):
            await store.read_body("../queue.db")
        await store.close()

    run(main())


def test_update_due_remove(tmp_path: Path, clock: Clock) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        first = await put(store)
        clock.advance(1)
        second = await put(store, envelope("x@example.net", "y@example.net"))
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [
            first.queue_id,
            second.queue_id,
        ]
        assert [m.queue_id for m in await store.due(clock.now, 1)] == [first.queue_id]
        assert await store.due(clock.now - 10, 10) == []

        second.recipients[0].status = RecipientStatus.DELIVERED
        second.recipients[0].last_reply = RemoteReply(250, "2.0.0", "ok")
        second.recipients[1].attempts = 1
        second.recipients[1].last_reply = RemoteReply(451, "4.2.0", "busy")
        second.attempts = 1
        second.next_attempt = clock.now + 300
        await store.update(second)
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [first.queue_id]
        loaded = await store.load(second.queue_id)
        assert loaded == second
        assert [m.queue_id for m in await store.due(clock.now + 300, 10)] == [
            first.queue_id,
            second.queue_id,
        ]

        # All recipients done: no longer due even though the row is still there.
        second.recipients[1].status = RecipientStatus.FAILED
        await store.update(second)
        assert [m.queue_id for m in await store.due(clock.now + 999, 10)] == [first.queue_id]

        await store.remove(first.queue_id)
        assert await store.load(first.queue_id) is None
        assert not (store.msg_dir / first.queue_id).exists()
        await store.remove(first.queue_id)  # idempotent
        with pytest.raises(SpoolError, match="no such message"):
            await store.update(first)
        await store.close()

    run(main())


def test_iterate_pages_through_everything(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "ITERATE_PAGE", 3)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        ids = []
        for _ in range(7):
            ids.append((await put(store)).queue_id)
            clock.advance(0.01)
        seen = [m.queue_id async for m in store.iterate()]
        assert seen == sorted(ids) == ids  # queue ids sort in arrival order
        await store.close()

    run(main())


def test_abort_discards_and_is_idempotent(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        small = store.new_message()
        small.write(b"partial")
        assert listing(store.tmp_dir) == []  # a small body never touches the disk
        small.abort()
        small.abort()
        assert small.body_bytes() is None
        writer = await spilled(store)
        assert listing(store.tmp_dir) == [writer.queue_id]
        writer.abort()
        writer.abort()
        assert listing(store.tmp_dir) == []
        with pytest.raises(SpoolError):
            writer.write(b"more")
        with pytest.raises(SpoolError):
            await store.put(writer, envelope())
        message = await put(store)  # the store still works after an abort
        assert [m.queue_id async for m in store.iterate()] == [message.queue_id]
        await store.close()

    run(main())


def test_abort_after_put_keeps_message(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = store.new_message()
        writer.write(BODY)
        message = await store.put(writer, envelope())
        writer.abort()
        assert await store.read_body(message.queue_id) == BODY
        with pytest.raises(SpoolError):
            await store.put(writer, envelope())  # put twice
        await store.close()

    run(main())


def test_unfinished_writer_is_cleaned_on_reopen(tmp_path: Path) -> None:
    async def crash() -> str:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = await spilled(store)
        writer.write(b"Subject: half\r\n")
        # Simulated crash: the process dies without put() or abort(); the kernel
        # closes the descriptor, the temporary file stays.
        writer._file.close()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return writer.queue_id

    qid = run(crash())
    assert listing(tmp_path / "spool" / "tmp") == [qid]
    assert run(on_disk(tmp_path)) == []

    async def reopen() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert store.recovery is not None and store.recovery.tmp_removed == [qid]
        assert listing(store.tmp_dir) == [] and listing(store.msg_dir) == []
        assert [m async for m in store.iterate()] == []
        await store.close()

    run(reopen())


def test_renamed_but_uncommitted_body_is_removed(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        kept = await put(store, body=BIG)
        kept_inline = await put(store)
        await store.close()
        orphan = "0" * 16
        (store.msg_dir / orphan).write_bytes(b"crash between rename and commit")
        (store.msg_dir / "README").write_bytes(b"not ours")
        # A file beside an inline body is debris too: a message has one body.
        (store.msg_dir / kept_inline.queue_id).write_bytes(b"stray")

        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert store.recovery is not None
        assert store.recovery.orphans_removed == sorted([orphan, kept_inline.queue_id])
        assert store.recovery.foreign_files == ["README"]
        assert store.recovery.missing_bodies == []
        assert listing(store.msg_dir) == sorted([kept.queue_id, "README"])
        assert await store.read_body(kept.queue_id) == BIG
        assert await store.read_body(kept_inline.queue_id) == BODY
        await store.close()

    run(main())


def test_row_without_body_is_dropped_and_reported(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        lost = await put(store, body=BIG)
        kept = await put(store)
        await store.close()
        (store.msg_dir / lost.queue_id).unlink()

        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert store.recovery is not None
        assert store.recovery.missing_bodies == [lost.queue_id]
        assert [m.queue_id async for m in store.iterate()] == [kept.queue_id]
        await store.close()

    run(main())


def test_put_survives_reopen_with_fresh_instance(tmp_path: Path, clock: Clock) -> None:
    async def first() -> str:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        message = await put(store, envelope("bob@example.net"))
        # No close(): the next instance must not depend on a clean shutdown.
        assert store._executor is not None
        return message.queue_id

    qid = run(first())

    async def second() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        loaded = await store.load(qid)
        assert loaded is not None and loaded.pending[0].recipient.address == "bob@example.net"
        assert await store.read_body(qid) == BODY
        assert [m.queue_id for m in await store.due(clock.now, 10)] == [qid]
        await store.close()

    run(second())


# -- failures --------------------------------------------------------------------------


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_fsync_failure_raises_spool_error_and_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = await spilled(store)
        monkeypatch.setattr(os, "fsync", _enospc)
        with pytest.raises(SpoolError, match="No space left on device"):
            await store.put(writer, envelope())
        monkeypatch.undo()
        assert listing(store.tmp_dir) == [] and listing(store.msg_dir) == []
        await store.close()

        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert [m async for m in store.iterate()] == []
        assert listing(store.msg_dir) == []
        await store.close()

    run(main())


def test_directory_fsync_failure_undoes_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        monkeypatch.setattr(_commit, "fsync_dir", _enospc)
        small, big = store.new_message(), store.new_message()
        small.write(BODY)
        big.write(BIG)
        results = await asyncio.gather(
            store.put(small, envelope()), store.put(big, envelope()), return_exceptions=True
        )
        monkeypatch.undo()
        # Only the body that needed the directory fsync fails.
        assert isinstance(results[1], SpoolError)
        assert "cannot sync spool directory" in str(results[1])
        assert not isinstance(results[0], BaseException)
        assert listing(store.msg_dir) == [] and listing(store.tmp_dir) == []
        assert [m.queue_id async for m in store.iterate()] == [small.queue_id]
        await store.close()

    run(main())


def test_write_failure_raises_spool_error(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writer = await spilled(store)
        writer.write(b"x")  # the spill file is attached now
        writer._file.write = _enospc  # type: ignore[method-assign, union-attr]
        with pytest.raises(SpoolError, match="ENOSPC"):
            writer.write(b"x" * 10)
        assert listing(store.tmp_dir) == []
        with pytest.raises(SpoolError):
            await store.put(writer, envelope())
        await store.close()

    run(main())


def test_tmp_creation_failure_is_reported_on_write_and_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        monkeypatch.setattr(embedded, "create_exclusive", denied)
        # Reported by the first write after the failed creation...
        writer = store.new_message()  # never raises
        writer.write(BIG)  # starts the creation on a file thread
        await asyncio.wait([asyncio.wrap_future(writer._spill)])  # type: ignore[attr-defined, arg-type]
        with pytest.raises(SpoolError, match="Permission denied"):
            writer.write(b"x")
        with pytest.raises(SpoolError, match="Permission denied"):
            await store.put(writer, envelope())
        # ... or by put(), which waits for the creation.
        writer = store.new_message()
        writer.write(BIG)
        with pytest.raises(SpoolError, match="Permission denied"):
            await store.put(writer, envelope())
        # Small bodies need no file: unaffected.
        assert (await put(store)).queue_id
        await store.close()

    run(main())


def test_db_commit_failure_fails_batch_and_removes_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        kept = await put(store, body=BIG)
        kept_inline = await put(store)
        monkeypatch.setattr(_db, "insert", disk_full)
        bodies = [BODY, BIG] * 3
        results = await asyncio.gather(
            *(put(store, body=b) for b in bodies), return_exceptions=True
        )
        assert all(isinstance(r, SpoolError) for r in results), results
        assert "disk is full" in str(results[0])
        monkeypatch.undo()
        assert listing(store.msg_dir) == [kept.queue_id]
        assert listing(store.tmp_dir) == []
        assert sorted([m.queue_id async for m in store.iterate()]) == sorted(
            [kept.queue_id, kept_inline.queue_id]
        )
        assert await store.read_body(kept_inline.queue_id) == BODY
        # The store keeps working after the failure.
        again = await put(store)
        assert await store.load(again.queue_id) is not None
        await store.close()

    run(main())


def test_commit_failure_at_commit_time_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT itself fails (WAL fsync error): rolled back, bodies unlinked."""

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        half = store._committer_half
        assert half is not None
        real = half.conn

        class FailingCommit:
            in_transaction = property(lambda self: real.in_transaction)

            def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
                if sql == "COMMIT":
                    raise sqlite3.OperationalError("disk I/O error")
                return real.execute(sql, *args)

            def executemany(self, sql: str, *args: object) -> sqlite3.Cursor:
                return real.executemany(sql, *args)

        monkeypatch.setattr(half, "conn", FailingCommit())
        results = await asyncio.gather(
            *(put(store, body=b) for b in (BODY, BIG, BODY, BIG)), return_exceptions=True
        )
        monkeypatch.undo()
        assert all(isinstance(r, SpoolError) and "disk I/O error" in str(r) for r in results)
        assert listing(store.msg_dir) == [] and listing(store.tmp_dir) == []
        assert [m async for m in store.iterate()] == []
        assert await on_disk(tmp_path) == []
        await store.close()

    run(main())


def test_one_bad_body_does_not_fail_the_batch(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writers = [store.new_message() for _ in range(4)]
        for i, w in enumerate(writers):
            w.write(BIG if i % 2 else BODY)

        def broken_store_file(_target: Path) -> None:
            raise OSError(errno.EIO, "Input/output error")

        writers[1].store_file = broken_store_file  # type: ignore[attr-defined]
        results = await asyncio.gather(
            *(store.put(w, envelope()) for w in writers), return_exceptions=True
        )
        assert isinstance(results[1], SpoolError) and "EIO" in str(results[1])
        ok = [r.queue_id for i, r in enumerate(results) if i != 1]  # type: ignore[union-attr]
        assert sorted([m.queue_id async for m in store.iterate()]) == sorted(ok)
        assert listing(store.msg_dir) == [writers[3].queue_id]
        assert listing(store.tmp_dir) == []
        assert store.commit_batches == 1
        await store.close()

    run(main())


def test_fsync_failure_of_one_spilled_body_fails_only_that_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies are fsynced in parallel; the one whose fsync fails is the only casualty."""
    real_fsync = os.fsync

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writers = [await spilled(store) for _ in range(6)] + [store.new_message()]
        writers[-1].write(BODY)
        victim = str(store.tmp_dir / writers[2].queue_id)

        def flaky_fsync(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}") == victim:
                raise OSError(errno.EIO, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", flaky_fsync)
        results = await asyncio.gather(
            *(store.put(w, envelope()) for w in writers), return_exceptions=True
        )
        monkeypatch.undo()
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        assert failed == [2]
        assert "EIO" in str(results[2])
        ok = sorted(w.queue_id for i, w in enumerate(writers) if i != 2)
        assert sorted([m.queue_id async for m in store.iterate()]) == ok
        stored_files = sorted(w.queue_id for w in writers[:6] if w is not writers[2])
        assert listing(store.msg_dir) == stored_files
        assert listing(store.tmp_dir) == []
        assert store.commit_batches == 1
        await store.close()
        # Durable: a fresh instance sees exactly the same.
        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert store.recovery is not None and store.recovery.orphans_removed == []
        for i, w in enumerate(writers):
            if i != 2:
                assert await store.read_body(w.queue_id) == (BODY if i == 6 else BIG)
        await store.close()

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    run(main())


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        with pytest.raises(SpoolError):
            await store.due(0, 1)
        await store.open()
        writer = store.new_message()
        writer.write(BODY)
        await store.close()  # a session still receiving: its body is discarded
        assert listing(store.tmp_dir) == []
        with pytest.raises(SpoolError):
            writer.write(b"more")
        with pytest.raises(SpoolError):
            await store.put(writer, envelope())
        with pytest.raises(SpoolError, match="closed"):
            store.new_message().write(b"x")

    run(main())


def test_unusable_spool_dir_raises_spool_error(tmp_path: Path) -> None:
    (tmp_path / "spool").write_bytes(b"a file where the directory should be")

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        with pytest.raises(SpoolError, match="cannot open spool"):
            await store.open()

    run(main())


# -- group commit ----------------------------------------------------------------------


def test_group_commit_batches_concurrent_puts(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()

        async def session(i: int) -> str:
            writer = store.new_message()
            writer.write(b"Subject: %d\r\n\r\nbody\r\n" % i)
            await asyncio.sleep(0)  # interleave like real sessions
            return (await store.put(writer, envelope())).queue_id

        ids = await asyncio.gather(*(session(i) for i in range(50)))
        assert len(set(ids)) == 50
        assert store.commit_batches < 50
        assert store.committed_ops == 50
        assert len(await store.due(float("inf"), 100)) == 50
        for i, qid in enumerate(ids):
            assert await store.read_body(qid) == b"Subject: %d\r\n\r\nbody\r\n" % i
        await store.close()

    run(main())


def test_close_flushes_queued_puts(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        tasks = [asyncio.create_task(put(store)) for _ in range(10)]
        await asyncio.sleep(0)  # every put is queued, none committed yet
        await store.close()
        ids = [t.result().queue_id for t in tasks]
        store = EmbeddedSpool(tmp_path)
        await store.open()
        assert sorted([m.queue_id async for m in store.iterate()]) == sorted(ids)
        await store.close()

    run(main())


def test_batch_shares_directory_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spilled bodies are fsynced in tmp/ (before the rename), msg/ once per batch, tmp/
    never; inline bodies cost no fsync of ours at all (the WAL fsync is SQLite's)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        writers = [await spilled(store) for _ in range(5)]
        small = [store.new_message() for _ in range(5)]
        for w in small:
            w.write(BODY)
        monkeypatch.setattr(os, "fsync", recording_fsync)
        await asyncio.gather(*(store.put(w, envelope()) for w in writers + small))
        monkeypatch.undo()
        bodies = sorted(str(store.tmp_dir / w.queue_id) for w in writers)
        assert sorted(p for p in synced if p.startswith(str(store.tmp_dir) + "/")) == bodies
        assert synced.count(str(store.msg_dir)) == 1
        assert synced.count(str(store.tmp_dir)) == 0
        assert len(synced) == 6
        assert store.commit_batches == 1

        synced.clear()
        monkeypatch.setattr(os, "fsync", recording_fsync)
        await asyncio.gather(*(put(store) for _ in range(5)))
        monkeypatch.undo()
        assert synced == []
        await store.close()

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    run(main())
