"""MaildirBatcher: one fsync of new/ per batch, never a result before that fsync."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from mailwright.delivery import batch as batch_mod
from mailwright.delivery.batch import LANES, MaildirBatcher
from mailwright.delivery.maildir import Maildir

MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


@pytest.fixture
def boxes(tmp_path: Path) -> list[Maildir]:
    result = []
    for name in ("alice", "bob"):
        box = Maildir(tmp_path / name, hostname="mx.example.org")
        box.ensure()
        result.append(box)
    return result


def deliver_all(
    batcher: MaildirBatcher, jobs: list[tuple[Maildir, bytes]]
) -> list[str | BaseException]:
    async def main() -> list[str | BaseException]:
        return await asyncio.gather(
            *(batcher.deliver(box, lambda b=box, d=data: b.stage(d)) for box, data in jobs),
            return_exceptions=True,
        )

    return asyncio.run(main())


def test_concurrent_deliveries_share_directory_fsyncs(
    boxes: list[Maildir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name is returned only after an fsync of its new/ that saw it linked."""
    synced: list[tuple[str, set[str]]] = []  # (new/, its entries when fsync started)
    real_fsync_dir = batch_mod.fsync_dir

    def recording(path: str) -> None:
        synced.append((path, set(os.listdir(path))))
        real_fsync_dir(path)

    monkeypatch.setattr(batch_mod, "fsync_dir", recording)
    batcher = MaildirBatcher()
    jobs = [(boxes[i % 2], MESSAGE + b"%d\r\n" % i) for i in range(40)]
    names = deliver_all(batcher, jobs)
    for (box, data), name in zip(jobs, names, strict=True):
        assert isinstance(name, str)
        assert Path(box.new_dir, name).read_bytes() == data.replace(b"\r\n", b"\n")
        assert any(path == box.new_dir and name in seen for path, seen in synced)
    assert batcher.dir_syncs == len(synced) < len(jobs)
    assert batcher.batches < len(jobs)
    for box in boxes:
        assert os.listdir(box.tmp_dir) == []


def test_directory_fsync_failure_fails_and_removes_the_batch(
    boxes: list[Maildir], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = boxes
    real_fsync_dir = batch_mod.fsync_dir

    def failing(path: str) -> None:
        if path == alice.new_dir:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync_dir(path)

    monkeypatch.setattr(batch_mod, "fsync_dir", failing)
    jobs = [(alice, MESSAGE), (bob, MESSAGE), (alice, MESSAGE)]
    outcomes = deliver_all(MaildirBatcher(), jobs)
    assert isinstance(outcomes[0], OSError) and outcomes[0].errno == errno.EIO
    assert isinstance(outcomes[2], OSError)
    assert isinstance(outcomes[1], str)
    # Nothing a retry would duplicate: alice's new/ and tmp/ are empty.
    assert os.listdir(alice.new_dir) == [] and os.listdir(alice.tmp_dir) == []
    assert os.listdir(bob.new_dir) == [outcomes[1]]


def test_a_failed_stage_fails_alone(boxes: list[Maildir]) -> None:
    alice, _ = boxes

    def broken() -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main() -> list[str | BaseException]:
        batcher = MaildirBatcher()
        return await asyncio.gather(
            batcher.deliver(alice, lambda: alice.stage(MESSAGE)),
            batcher.deliver(alice, broken),
            batcher.deliver(alice, lambda: alice.stage(MESSAGE)),
            return_exceptions=True,
        )

    first, failed, third = asyncio.run(main())
    assert isinstance(failed, OSError) and failed.errno == errno.ENOSPC
    assert sorted(os.listdir(alice.new_dir)) == sorted([first, third])


def test_lanes_bound_the_threads(boxes: list[Maildir], monkeypatch: pytest.MonkeyPatch) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    real_run = MaildirBatcher._run

    def counting(self: MaildirBatcher, jobs: list[object]) -> list[str | BaseException]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return real_run(self, jobs)  # type: ignore[arg-type]
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(MaildirBatcher, "_run", counting)
    names = deliver_all(MaildirBatcher(), [(boxes[0], MESSAGE)] * 50)
    assert all(isinstance(n, str) for n in names) and len(set(names)) == 50
    assert peak <= LANES


def test_slow_stages_switch_batches_to_parallel_staging(
    boxes: list[Maildir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk (each stage waits on its own fsync) makes later batches stage at
    once, so their fsyncs overlap; the directory fsync still follows every stage."""
    delay = 0.02
    real_stage = Maildir.stage
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_stage(self: Maildir, data: bytes) -> str:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            time.sleep(delay)  # the fsync of a slow disk
            return real_stage(self, data)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(Maildir, "stage", slow_stage)
    synced: list[tuple[str, set[str]]] = []
    real_fsync_dir = batch_mod.fsync_dir

    def recording(path: str) -> None:
        synced.append((path, set(os.listdir(path))))
        real_fsync_dir(path)

    monkeypatch.setattr(batch_mod, "fsync_dir", recording)
    batcher = MaildirBatcher(lanes=1)
    first = deliver_all(batcher, [(boxes[0], MESSAGE)])  # one stage: slow, noticed
    assert isinstance(first[0], str) and batcher.parallel
    jobs = [(boxes[i % 2], MESSAGE + b"%d\r\n" % i) for i in range(16)]
    names = deliver_all(batcher, jobs)
    # Stages overlapped: counted, not timed (a wall-clock bound flakes on a busy box).
    assert most > 1
    for (box, data), name in zip(jobs, names, strict=True):
        assert isinstance(name, str)
        assert Path(box.new_dir, name).read_bytes() == data.replace(b"\r\n", b"\n")
        assert any(path == box.new_dir and name in seen for path, seen in synced)


def test_fast_stages_stay_in_one_thread(
    boxes: list[Maildir], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_mod, "SLOW_STAGE", 1.0)  # any real stage is faster
    threads: set[int] = set()
    real_stage = Maildir.stage

    def recording(self: Maildir, data: bytes) -> str:
        threads.add(threading.get_ident())
        return real_stage(self, data)

    monkeypatch.setattr(Maildir, "stage", recording)
    batcher = MaildirBatcher(lanes=1)
    deliver_all(batcher, [(boxes[0], MESSAGE + b"%d\r\n" % i) for i in range(8)])
    assert not batcher.parallel
    assert len(threads) == 1
