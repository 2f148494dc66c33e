"""Two stores on one spool folder (the server or a session process, and the delivery
worker) take turns at the queue database's write lock: a commit that had to wait
starts as soon as the other writer's transaction ends, not at SQLite's default busy
handler's next poll (``_schema.WRITE_LOCK_POLL``)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from helpers.spoolkit import BODY, Clock, envelope, put, run
from mailwright.spool import _commit
from mailwright.spool.embedded import EmbeddedSpool

# The other writer's transaction lasts this long (a worker preempted mid-transaction on
# a busy machine).  SQLite's default busy handler tries at 0, 1, 3, 8, 18, 33, 53, 78,
# 103, 128, 178, 228 and then every 100 ms: released at 250 ms, the lock was taken at
# 328 ms, in the middle of its longest gap.
HOLD = 0.250
SLACK = 0.040  # seconds after the release within which the waiting commit must be done
SIGNAL_TIMEOUT = 5.0


def test_a_commit_waiting_for_another_writer_follows_its_release(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> tuple[float, float]:
        worker = EmbeddedSpool(tmp_path, clock=clock)
        await worker.open()
        server = EmbeddedSpool(tmp_path, recover=False, clock=clock)
        await server.open()
        try:
            delivered = await put(worker, envelope("bob@example.net"), BODY)
            holding = threading.Event()
            released: list[float] = []
            apply = _commit.BatchCommitter._apply
            worker_half = worker._committer_half

            def slow_apply(self: _commit.BatchCommitter, *args: object) -> None:
                apply(self, *args)  # type: ignore[arg-type]
                if self is worker_half:  # inside the worker's transaction: hold it
                    holding.set()
                    time.sleep(HOLD)
                    released.append(time.perf_counter())

            monkeypatch.setattr(_commit.BatchCommitter, "_apply", slow_apply)
            removal = asyncio.create_task(worker.remove(delivered.queue_id))
            assert await asyncio.to_thread(holding.wait, SIGNAL_TIMEOUT)
            started = time.perf_counter()
            await put(server, envelope("carol@example.org"), BODY)
            done = time.perf_counter()
            await removal
            return done - started, done - released[0]
        finally:
            await server.close()
            await worker.close()

    waited, after_release = run(main())
    assert waited > HOLD * 0.8  # it did wait for the worker's transaction
    assert after_release < SLACK, f"committed {after_release * 1000:.1f} ms after the release"
