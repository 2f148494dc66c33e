"""Helpers for the spool tests (imported as ``spoolkit``; unique name on sys.path)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import Envelope, Recipient, SpooledMessage

T = TypeVar("T")

BODY = b"Received: from client\r\nSubject: test\r\nMessage-ID: <1@example.com>\r\n\r\nHello\r\n"


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


async def put(
    store: EmbeddedSpool, env: Envelope | None = None, body: bytes = BODY
) -> SpooledMessage:
    writer = store.new_message()
    writer.write(body)
    return await store.put(writer, env or envelope())


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []
