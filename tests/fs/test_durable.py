"""The durable-write helper: content lands, failures leave no debris."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mailwright.fs import durable


def test_write_atomic_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "state"
    durable.write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    assert target.stat().st_mode & 0o777 == durable.FILE_MODE
    durable.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_write_atomic_failure_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state"
    durable.write_atomic(target, b"old")

    def broken(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        durable.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temp debris


def test_fsync_dir_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    durable.fsync_dir(tmp_path)
    assert len(synced) == 1
    with pytest.raises(FileNotFoundError):
        durable.fsync_dir(tmp_path / "missing")


def test_write_durable_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "msg"
    durable.write_durable(path, b"x" * 100_000)
    assert path.read_bytes() == b"x" * 100_000
    with pytest.raises(FileExistsError):
        durable.write_durable(path, b"other")
    assert path.read_bytes() == b"x" * 100_000


def test_ensure_dir(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    assert durable.ensure_dir(deep) is True
    assert deep.is_dir() and deep.stat().st_mode & 0o777 == durable.DIR_MODE
    assert durable.ensure_dir(deep) is False
