"""Helpers for the spool and queue tests: bodies, envelopes, a settable clock, a fake agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryResult, Progress
from mailwright.smtp import Reply
from mailwright.spool._writer import INLINE_BODY_MAX, BodyWriter
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.memory import MemorySpool, MemoryState
from mailwright.spool.model import Envelope, Recipient, SpooledMessage
from mailwright.spool.store import SpoolStore

T = TypeVar("T")

BODY = b"Received: from client\r\nSubject: test\r\nMessage-ID: <1@example.com>\r\n\r\nHello\r\n"
# Large enough to spill to a file (bodies up to INLINE_BODY_MAX are stored inline).
BIG = BODY + b"x" * 70 + b"\r\n" + (b"y" * 998 + b"\r\n") * (INLINE_BODY_MAX // 1000 + 1)
assert len(BIG) > INLINE_BODY_MAX


class Clock:
    """A settable clock shared by store and runner, so tests control time."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def envelope(*addresses: str, mail_from: str = "alice@example.com", **kwargs: object) -> Envelope:
    rcpts = tuple(Recipient(a) for a in (addresses or ("bob@example.net",)))
    return Envelope(mail_from=mail_from, recipients=rcpts, **kwargs)  # type: ignore[arg-type]


async def put(store: SpoolStore, env: Envelope | None = None, body: bytes = BODY) -> SpooledMessage:
    writer = store.new_message()
    writer.write(body)
    return await store.put(writer, env or envelope())


async def spilled(store: EmbeddedSpool, body: bytes = BIG) -> BodyWriter:
    """A writer holding ``body`` (> INLINE_BODY_MAX) whose tmp file exists."""
    writer = store.new_message()
    assert isinstance(writer, BodyWriter)
    writer.write(body)
    await settle(writer)
    return writer


async def settle(writer: BodyWriter) -> None:
    """Wait until the writer's spill file is created (it is made on a file thread)."""
    spill = writer._spill
    assert spill is not None, "body is not spilled"
    await asyncio.wrap_future(spill)


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


# -- delivery fakes (queue runner tests) ----------------------------------------------------

OK = Reply.of(250, "2.0.0", "Delivered")
BUSY = Reply.of(451, "4.2.0", "Mailbox busy")
UNKNOWN = Reply.of(550, "5.1.1", "User unknown")
CONFIG = DeliveryConfig(retry_initial=60, retry_max=3600, max_queue_lifetime=86400)

Event = tuple[str, str, str, str]


class FakeAgent:
    """Replies per address (default 250); records every call."""

    def __init__(self, replies: dict[str, Reply] | None = None, *, delay: float = 0.0) -> None:
        self.replies = replies or {}
        self.skip: set[str] = set()  # addresses left out of the result
        self.error: Exception | None = None
        self.delay = delay
        self.calls: list[tuple[SpooledMessage, bytes, list[str]]] = []
        self.active = 0
        self.max_active = 0
        self.called = asyncio.Event()

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        self.calls.append((message, body, [r.address for r in recipients]))
        self.called.set()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return {
                r.address: DeliveryResult(self.replies.get(r.address, OK))
                for r in recipients
                if r.address not in self.skip
            }
        finally:
            self.active -= 1


# -- backends (the contract suite and the queue runner tests run over each) ------------

BACKENDS = ("embedded", "memory")


class StoreFactory:
    """Makes stores of one backend over one place: each call is a (re)start of the
    same spool — the same data folder, or the same shared ``MemoryState``."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.state = MemoryState()

    def __call__(self, clock: Callable[[], float] = time.time) -> SpoolStore:
        if self.kind == "embedded":
            return EmbeddedSpool(self.tmp_path, clock=clock)
        return MemorySpool(clock=clock, state=self.state)

    @property
    def durable(self) -> bool:
        return self.kind == "embedded"
