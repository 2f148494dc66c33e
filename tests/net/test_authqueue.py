"""``PasswordCheckQueue``: who gets a turn for a password check, and when.

Turns are observed directly (no hashing): a holder is a task inside ``turn(address)``
that waits for its own release event, so each test decides exactly when a turn ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from mailwright.net.authqueue import (
    PER_ADDRESS_CHECKS,
    PasswordCheckQueue,
    QueueFull,
)


class Holders:
    """Tasks that take a turn and keep it until released; ``order`` lists who got one."""

    def __init__(self, queue: PasswordCheckQueue) -> None:
        self.queue = queue
        self.order: list[str] = []
        self.refused: list[str] = []
        self._release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, address: str) -> None:
        release = self._release[name] = asyncio.Event()

        async def hold() -> None:
            try:
                async with self.queue.turn(address):
                    self.order.append(name)
                    await release.wait()
            except QueueFull:
                self.refused.append(name)

        self.tasks[name] = asyncio.create_task(hold())

    def release(self, name: str) -> None:
        self._release[name].set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def test_one_address_gets_at_most_per_address_checks_at_once() -> None:
    async def main() -> None:
        h = Holders(PasswordCheckQueue(threads=8))
        for i in range(5):
            h.start(f"a{i}", "192.0.2.1")
        await settle()
        assert h.order == ["a0", "a1"][:PER_ADDRESS_CHECKS]
        assert h.queue.waiting == 5 - PER_ADDRESS_CHECKS
        h.release("a0")
        await settle()
        assert h.order == ["a0", "a1", "a2"]  # in arrival order
        for name in ("a1", "a2", "a3", "a4"):
            h.release(name)
        await settle()
        assert h.order == ["a0", "a1", "a2", "a3", "a4"] and h.queue.waiting == 0

    run(main())


def test_turns_go_round_the_addresses() -> None:
    """A burst from one address does not keep a later address waiting behind all of
    it: with one thread, the quiet address gets the very next turn."""

    async def main() -> None:
        h = Holders(PasswordCheckQueue(threads=1))
        for i in range(6):
            h.start(f"busy{i}", "192.0.2.1")
        await settle()
        h.start("quiet", "192.0.2.2")
        await settle()
        assert h.order == ["busy0"]
        h.release("busy0")
        await settle()
        assert h.order == ["busy0", "busy1"]  # it was waiting before "quiet" came
        h.release("busy1")
        await settle()
        assert h.order[-1] == "quiet"
        for name in ["quiet", *(f"busy{i}" for i in range(2, 6))]:
            h.release(name)
            await settle()
        assert len(h.order) == 7 and not h.refused

    run(main())


def test_clean_addresses_go_before_addresses_with_failures() -> None:
    """The quiet address arrives last but gets the next turn, before the suspect's
    earlier attempts (the guard knows the suspect failed lately)."""

    async def main() -> None:
        suspects = {"192.0.2.1"}
        h = Holders(PasswordCheckQueue(suspect=suspects.__contains__, threads=1))
        h.start("first", "192.0.2.3")
        for i in range(3):
            h.start(f"guess{i}", "192.0.2.1")
        h.start("quiet", "192.0.2.2")
        await settle()
        h.release("first")
        await settle()
        assert h.order == ["first", "quiet"]
        h.release("quiet")
        await settle()
        assert h.order == ["first", "quiet", "guess0"]

    run(main())


def test_full_queue_drops_from_the_address_with_most_waiting() -> None:
    async def main() -> None:
        h = Holders(PasswordCheckQueue(threads=1, max_waiting=4))
        for i in range(5):  # one running, four waiting: full
            h.start(f"busy{i}", "192.0.2.1")
        await settle()
        assert h.queue.waiting == 4
        h.start("busy5", "192.0.2.1")  # its own address has the most waiting: refused
        h.start("quiet", "192.0.2.2")  # displaces busy4, the newest of the longest
        await settle()
        assert h.refused == ["busy5", "busy4"]
        assert h.queue.waiting == 4
        h.release("busy0")
        await settle()
        assert h.order == ["busy0", "busy1"]
        h.release("busy1")
        await settle()
        assert h.order[-1] == "quiet"

    run(main())


def test_a_session_that_ends_while_waiting_gives_its_place_back() -> None:
    async def main() -> None:
        h = Holders(PasswordCheckQueue(threads=1))
        h.start("first", "192.0.2.1")
        h.start("gone", "192.0.2.2")
        h.start("next", "192.0.2.3")
        await settle()
        h.tasks["gone"].cancel()
        await settle()
        assert h.queue.waiting == 1
        h.release("first")
        await settle()
        assert h.order == ["first", "next"]
        h.release("next")
        await settle()
        assert h.queue.waiting == 0 and h.queue._active == 0

    run(main())


def test_run_checks_on_a_thread_and_returns_its_result() -> None:
    async def main() -> None:
        queue = PasswordCheckQueue()
        async with queue.turn("192.0.2.1"):
            assert await queue.run(pow, 2, 10) == 1024

    run(main())
