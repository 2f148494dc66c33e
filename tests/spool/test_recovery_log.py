"""Start-up recovery (``spool._recovery``) tells the operator what it removed: one
line for the debris, one per lost body, one per file that is not ours."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from helpers.spoolkit import BIG, put, run
from mailwright.spool.embedded import EmbeddedSpool


def test_recovery_logs_debris_lost_bodies_and_foreign_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> str:
        store = EmbeddedSpool(tmp_path)
        await store.open()
        lost = await put(store, body=BIG)
        await store.close()
        (store.msg_dir / lost.queue_id).unlink()  # a row whose body file is gone
        (store.msg_dir / ("0" * 16)).write_bytes(b"crash between rename and commit")
        (store.tmp_dir / ("1" * 16)).write_bytes(b"crash while receiving")
        (store.msg_dir / "README").write_bytes(b"not ours")
        with caplog.at_level(logging.INFO, logger="mailwright.spool"):
            store = EmbeddedSpool(tmp_path)
            await store.open()
            await store.close()
        return lost.queue_id

    lost_id = run(main())
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "mailwright.spool"]
    msg_dir = tmp_path / "spool" / "msg"
    assert lines == [
        (
            logging.INFO,
            "spool recovery: removed 1 uncommitted temporary bodies, 1 orphan bodies",
        ),
        (logging.ERROR, f"spool recovery: {lost_id}: body file missing, queue entry removed"),
        (logging.WARNING, f"spool recovery: unexpected file README in {msg_dir} left alone"),
    ]


def test_a_second_process_recovers_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``recover=False`` (the delivery worker): debris is the server's to judge."""

    async def main() -> None:
        (tmp_path / "spool" / "tmp").mkdir(parents=True)
        (tmp_path / "spool" / "tmp" / ("1" * 16)).write_bytes(b"a session still receiving")
        with caplog.at_level(logging.INFO, logger="mailwright.spool"):
            store = EmbeddedSpool(tmp_path, recover=False)
            await store.open()
            assert store.recovery is not None and store.recovery.tmp_removed == []
            await store.close()

    run(main())
    assert (tmp_path / "spool" / "tmp" / ("1" * 16)).exists()
    assert [r for r in caplog.records if r.name == "mailwright.spool"] == []
