"""Queue ids: short, unique, time-sortable names that are safe as file names.

Like Postfix's long queue ids (``enable_long_queue_ids``), an id encodes the arrival
time followed by randomness, so ``ls msg/`` and ``ORDER BY queue_id`` list messages in
arrival order, and ids never repeat after a restart (Postfix's short ids reuse inode
numbers; ours do not depend on the file system).

Format: 16 characters of Crockford base32 (``0-9 A-Z`` without ``I L O U``):

* 9 characters (45 bits) of milliseconds since the Unix epoch — enough until the year
  3084 — most significant first, so lexical order is time order;
* 7 characters (35 bits) from the system CSPRNG (``os.urandom``, read ``_POOL_SIZE``
  bytes at a time: one system call per ~800 ids instead of one per id, which showed
  on the per-message path): two ids minted in the same millisecond collide with
  probability 2**-35, and the store still creates body files with ``O_EXCL`` so a
  collision is detected, never an overwrite.

Upper case only, so ids survive case-insensitive file systems and log greps; no
``/``, ``.`` or ``-``, so an id can never form a path component like ``..``.
"""

from __future__ import annotations

import os
import re
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, ASCII-sorted
TIME_CHARS = 9
RANDOM_CHARS = 7
QUEUE_ID_LENGTH = TIME_CHARS + RANDOM_CHARS
_BITS_PER_CHAR = 5
_QUEUE_ID_RE = re.compile(f"[{ALPHABET}]{{{QUEUE_ID_LENGTH}}}")
_RANDOM_BITS = RANDOM_CHARS * _BITS_PER_CHAR
# Every 10-bit value as its two characters, and the shifts of the 8 pairs of an id.
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR_SHIFTS = tuple(range(QUEUE_ID_LENGTH * _BITS_PER_CHAR - 10, -1, -10))
_RANDOM_BYTES = (_RANDOM_BITS + 7) // 8
_POOL_SIZE = 4096  # bytes of os.urandom per refill
_pool = b""
_pool_pos = 0
_pool_lock = threading.Lock()  # ids are minted on the event loop and on store threads


def _random_part() -> int:
    global _pool, _pool_pos
    with _pool_lock:
        if _pool_pos + _RANDOM_BYTES > len(_pool):
            _pool, _pool_pos = os.urandom(_POOL_SIZE), 0
        chunk = _pool[_pool_pos : _pool_pos + _RANDOM_BYTES]
        _pool_pos += _RANDOM_BYTES
    return int.from_bytes(chunk, "big") >> (_RANDOM_BYTES * 8 - _RANDOM_BITS)


def new_queue_id(now: float | None = None) -> str:
    """A fresh queue id for arrival time ``now`` (Unix seconds; default: the clock)."""
    millis = int((time.time() if now is None else now) * 1000)
    millis &= (1 << (TIME_CHARS * _BITS_PER_CHAR)) - 1
    # 45 + 35 bits = 80 bits = 16 characters, most significant first, taken two at a
    # time (10 bits) from a table: a third of the time of a loop per character (this
    # runs once per message).
    value = (millis << _RANDOM_BITS) | _random_part()
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 0x3FF] for shift in _PAIR_SHIFTS])


def is_queue_id(value: str) -> bool:
    """True if ``value`` is syntactically a queue id (checked before building paths)."""
    return _QUEUE_ID_RE.fullmatch(value) is not None


def queue_id_time(queue_id: str) -> float:
    """The arrival time encoded in ``queue_id`` (Unix seconds, millisecond precision)."""
    if not is_queue_id(queue_id):
        raise ValueError(f"{queue_id!r} is not a queue id")
    millis = 0
    for char in queue_id[:TIME_CHARS]:
        millis = (millis << _BITS_PER_CHAR) | ALPHABET.index(char)
    return millis / 1000
