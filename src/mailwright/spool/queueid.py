"""Queue ids: short, unique, time-sortable names that are safe as file names.

Like Postfix's long queue ids (``enable_long_queue_ids``), an id encodes the arrival
time followed by randomness, so ``ls msg/`` and ``ORDER BY queue_id`` list messages in
arrival order, and ids never repeat after a restart (Postfix's short ids reuse inode
numbers; ours do not depend on the file system).

Format: 16 characters of Crockford base32 (``0-9 A-Z`` without ``I L O U``):

* 9 characters (45 bits) of milliseconds since the Unix epoch — enough until the year
  3084 — most significant first, so lexical order is time order;
* 7 characters (35 bits) from ``secrets``: two ids minted in the same millisecond
  collide with probability 2**-35, and the store still creates body files with
  ``O_EXCL`` so a collision is detected, never an overwrite.

Upper case only, so ids survive case-insensitive file systems and log greps; no
``/``, ``.`` or ``-``, so an id can never form a path component like ``..``.
"""

from __future__ import annotations

import re
import secrets
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, ASCII-sorted
TIME_CHARS = 9
RANDOM_CHARS = 7
QUEUE_ID_LENGTH = TIME_CHARS + RANDOM_CHARS
_BITS_PER_CHAR = 5
_QUEUE_ID_RE = re.compile(f"[{ALPHABET}]{{{QUEUE_ID_LENGTH}}}")


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(ALPHABET[value & 0x1F])
        value >>= _BITS_PER_CHAR
    return "".join(reversed(chars))


def new_queue_id(now: float | None = None) -> str:
    """A fresh queue id for arrival time ``now`` (Unix seconds; default: the clock)."""
    millis = int((time.time() if now is None else now) * 1000)
    millis &= (1 << (TIME_CHARS * _BITS_PER_CHAR)) - 1
    random_part = secrets.randbits(RANDOM_CHARS * _BITS_PER_CHAR)
    return _encode(millis, TIME_CHARS) + _encode(random_part, RANDOM_CHARS)


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
