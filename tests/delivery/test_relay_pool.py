"""The relay's session pool (Postfix's connection cache): an idle session is handed
out again only inside its reuse time, closed (QUIT) when its idle time or reuse time
is up, and every one is closed with the pool.  The sessions are stand-ins that record
their QUIT; the real reuse over the wire is in tests/integration/test_outbound_faults.py."""

from __future__ import annotations

import asyncio

from helpers.clock import FakeClock
from helpers.procs import wait_until
from mailwright.delivery.relay.pool import Pooled, SessionPool


class Session:
    def __init__(self) -> None:
        self.quits = 0

    async def quit(self) -> None:
        self.quits += 1


def entry(clock: FakeClock, session: Session) -> Pooled[Session]:
    return Pooled(session, "mx.test[192.0.2.1]:25", clock())


def test_reused_inside_the_reuse_time_only():
    async def main():
        clock = FakeClock()
        pool: SessionPool[Session] = SessionPool(reuse_time=300, idle_time=60, clock=clock)
        first = Session()
        pool.put("d", entry(clock, first))
        clock.advance(299)
        taken = pool.take("d")
        assert taken is not None and taken.session is first and pool.reused == 1
        pool.put("d", taken)
        clock.advance(1)  # 300 s since it opened: too old to carry more mail
        assert pool.take("d") is None
        await pool.close()
        return first

    first = asyncio.run(main())
    assert first.quits == 1


def test_put_after_the_reuse_time_closes_at_once():
    async def main():
        clock = FakeClock()
        pool: SessionPool[Session] = SessionPool(reuse_time=10, clock=clock)
        old = entry(clock, Session())
        clock.advance(10)
        pool.put("d", old)
        assert pool.take("d") is None
        await pool.close()
        return old.session

    assert asyncio.run(main()).quits == 1


def test_idle_session_closed_after_the_idle_time():
    async def main():
        pool: SessionPool[Session] = SessionPool(reuse_time=300, idle_time=0.05)
        session = Session()
        pool.put("d", Pooled(session, "mx", pool.clock()))
        loop = asyncio.get_running_loop()
        closed = await loop.run_in_executor(None, wait_until, lambda: session.quits == 1, 5.0)
        assert closed
        assert pool.take("d") is None
        await pool.close()

    asyncio.run(main())


def test_close_quits_every_idle_session_and_keys_are_separate():
    async def main():
        clock = FakeClock()
        pool: SessionPool[Session] = SessionPool(reuse_time=300, idle_time=60, clock=clock)
        a, b = Session(), Session()
        pool.put("a", entry(clock, a))
        pool.put("b", entry(clock, b))
        assert pool.take("c") is None
        await pool.close()
        return a, b

    a, b = asyncio.run(main())
    assert (a.quits, b.quits) == (1, 1)
