"""The answer cache: typed answers by (name, type) for as long as DNS says they hold.

Positive answers live for their TTL (the smallest of the CNAME chain and the records,
RFC 2181 §5.2); negative ones (NXDOMAIN and NODATA) for the smaller of the SOA record's
TTL and its MINIMUM field (RFC 2308 §5), and not at all without an SOA ("SHOULD NOT be
cached", same section).  Both are capped, so a zone cannot pin an answer for weeks.
Failures are never cached: the next lookup asks again.  Size is bounded: least recently
used answers go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mailwright.dns.types import Answer

MAX_POSITIVE_TTL = 86400  # seconds; unbound's cache-max-ttl default (1 day)
MAX_NEGATIVE_TTL = 3600  # seconds; unbound's cache-max-negative-ttl default (RFC 2308 §5: 1-3 h)
DEFAULT_CACHE_SIZE = 10_000  # answers kept; a queue's distinct domains fit many times over

CacheKey = tuple[str, int]  # (name: lower case, no trailing dot; record type number)


class AnswerCache:
    def __init__(
        self, size: int = DEFAULT_CACHE_SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if size < 0:
            raise ValueError("cache size must not be negative")
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, Answer[Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Answer[Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    def put(self, key: CacheKey, answer: Answer[Any], ttl: float, *, negative: bool) -> None:
        ttl = min(ttl, MAX_NEGATIVE_TTL if negative else MAX_POSITIVE_TTL)
        if ttl <= 0 or self.size == 0:
            return
        self._entries[key] = (self.clock() + ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
