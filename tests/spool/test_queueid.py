"""Queue ids: unique, sortable by time, safe as file names."""

from __future__ import annotations

from mailwright.spool.queueid import QUEUE_ID_LENGTH, is_queue_id, new_queue_id, queue_id_time


def test_format_and_safety() -> None:
    qid = new_queue_id()
    assert len(qid) == QUEUE_ID_LENGTH == 16
    assert qid.isalnum() and qid.isupper()
    assert is_queue_id(qid)
    for bad in ("", "../../etc/passwd", qid.lower(), qid[:-1], qid + "0", "I" * 16, "O" * 16):
        assert not is_queue_id(bad), bad


def test_sortable_by_time_and_decodable() -> None:
    ids = [new_queue_id(1_700_000_000.0 + i * 0.001) for i in range(100)]
    assert ids == sorted(ids)
    assert queue_id_time(ids[5]) == 1_700_000_000.005
    assert new_queue_id(1_700_000_000.0) < new_queue_id(1_700_000_001.0)


def test_unique_within_one_millisecond() -> None:
    ids = {new_queue_id(1_700_000_000.0) for _ in range(20_000)}
    assert len(ids) == 20_000
