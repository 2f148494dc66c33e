"""Processes seen through /proc (Linux): a server's children, their state and command
line, and bounded waits for them to change."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_INTERVAL = 0.05  # seconds between two looks in wait_until


def stat_fields(path: str) -> list[bytes]:
    """The fields of a /proc ``stat`` file after the command name (state first)."""
    with open(path, "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running: not gone, not a zombie."""
    try:
        return stat_fields(f"/proc/{pid}/stat")[0] != b"Z"
    except OSError:
        return False


def cmdline(pid: int) -> list[bytes]:
    """The process's arguments ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(f"/proc/{entry}/stat")[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError):
                continue
    return found


def catches(pid: int, sig: int) -> bool:
    """Whether ``pid`` has a handler for ``sig`` (``SigCgt`` in /proc/<pid>/status):
    before that, the signal's default action applies (for SIGUSR1/SIGHUP/SIGTERM:
    the process dies)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True
