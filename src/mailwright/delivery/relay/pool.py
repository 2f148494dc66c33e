"""Open sessions kept for the next message to the same destination (Postfix's
connection cache, scache): a session that finished a transaction and can carry
another (``TransactionResult.usable``) waits here, idle, for at most
``IDLE_CACHE_TIME``; it is not reused once ``reuse_time`` has passed since it was
opened (Postfix smtp_connection_reuse_time_limit), so one connection never
carries a destination's mail forever.  An idle session is closed (QUIT) when its
time is up or the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

# Postfix smtp_connection_cache_time_limit (2s): how long an idle session waits for
# the next message.  Longer only ties up the peer's connection slots; the burst a
# cache is for (a queue run, a mailing list) comes within that.
IDLE_CACHE_TIME = 2.0


class Closable(Protocol):
    async def quit(self) -> None: ...


S = TypeVar("S", bound=Closable)


@dataclass(slots=True)
class Pooled(Generic[S]):
    session: S
    label: str  # the candidate, "mx.example.com[192.0.2.1]:25"
    opened_at: float
    extra: object = None  # what the agent wants back with it (the TLS policy)
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class SessionPool(Generic[S]):
    def __init__(
        self,
        reuse_time: float,
        idle_time: float = IDLE_CACHE_TIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reuse_time = reuse_time
        self.idle_time = idle_time
        self.clock = clock
        self._idle: dict[str, list[Pooled[S]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.reused = 0  # sessions handed out again (tests and metrics read it)

    def fresh(self, entry: Pooled[S]) -> bool:
        return self.clock() - entry.opened_at < self.reuse_time

    def take(self, key: str) -> Pooled[S] | None:
        """An idle session for ``key`` still inside its reuse time, or None."""
        entries = self._idle.get(key, [])
        while entries:
            entry = entries.pop()
            if entry._timer is not None:
                entry._timer.cancel()
                entry._timer = None
            if self.fresh(entry):
                self.reused += 1
                return entry
            self._close(entry)
        return None

    def put(self, key: str, entry: Pooled[S]) -> None:
        """Keep ``entry`` for reuse, or close it when its reuse time is over."""
        remaining = self.reuse_time - (self.clock() - entry.opened_at)
        if remaining <= 0:
            self._close(entry)
            return
        loop = asyncio.get_running_loop()
        entry._timer = loop.call_later(min(self.idle_time, remaining), self._expire, key, entry)
        self._idle.setdefault(key, []).append(entry)

    def discard(self, entry: Pooled[S]) -> None:
        """Close a session that cannot carry another transaction."""
        self._close(entry)

    def _expire(self, key: str, entry: Pooled[S]) -> None:
        entries = self._idle.get(key, [])
        if entry in entries:
            entries.remove(entry)
            self._close(entry)

    def _close(self, entry: Pooled[S]) -> None:
        task = asyncio.get_running_loop().create_task(self._quit(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit(self, entry: Pooled[S]) -> None:
        try:
            await entry.session.quit()
        except Exception:  # a peer gone away meanwhile: nothing to do about it
            log.debug("QUIT to %s failed", entry.label, exc_info=True)

    async def close(self) -> None:
        """QUIT every idle session; wait for those already closing."""
        for entries in self._idle.values():
            for entry in entries:
                if entry._timer is not None:
                    entry._timer.cancel()
                self._close(entry)
        self._idle.clear()
        if self._closing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._closing, return_exceptions=True)
