"""A remote 250 is recorded as soon as it arrives, end to end (issue 10): one message
to a fast destination (Postfix's ``smtp-sink``) and a slow one (aiosmtpd holding DATA
until the test releases it), through the real spool, router, relay agent and runner
(``RelayHarness``).  While the slow MX still holds its DATA, the spool — read through
a second store over the same data folder — already has the fast recipient DELIVERED.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiosmtpd.controller import Controller

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.relaykit import RelayHarness, free_shared_port, relay_config, run, sinks
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import RecipientStatus

pytestmark = pytest.mark.interop

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
fast         IN MX 10 mx.fast
mx.fast      IN A 127.0.0.2
slow         IN MX 10 mx.slow
mx.slow      IN A 127.0.0.8
"""
ADDRESSES = ["127.0.0.2", "127.0.0.8"]
HOLD_LIMIT = 30.0  # the held DATA answers 451 after this long if never released


class HeldData:
    """aiosmtpd handler: DATA is answered 250 only once ``release`` is set (it runs in
    the controller's own thread and loop, hence threading events)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.delivered = 0

    async def handle_DATA(self, server, session, envelope):
        self.entered.set()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.release.wait, HOLD_LIMIT):
            return "451 4.4.2 Held too long"
        self.delivered += 1
        return "250 2.0.0 Queued"


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


async def wait_for_state(spool: EmbeddedSpool, queue_id: str, deadline: float) -> list[str]:
    """Poll the second store until the first recipient is no longer PENDING."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        message = await spool.load(queue_id)
        assert message is not None
        statuses = [str(s.status) for s in message.recipients]
        if statuses[0] != str(RecipientStatus.PENDING) or loop.time() > end:
            return statuses
        await asyncio.sleep(0.05)


def test_fast_destination_is_delivered_in_the_store_while_the_slow_one_is_pending(tmp_path, dns):
    port = free_shared_port(ADDRESSES)
    handler = HeldData()
    controller = Controller(handler, hostname="127.0.0.8", port=port)
    controller.start()
    try:
        with sinks(("127.0.0.2", ()), port=port) as (fast,):

            async def main():
                h = RelayHarness(dns, relay_config(tmp_path, dns, port))
                message = await h.put("a@fast.test", "b@slow.test")
                attempt = asyncio.create_task(h.run_once())
                other = EmbeddedSpool(h.data_dir)
                await other.open()
                during = await wait_for_state(other, message.queue_id, 15)
                history = await other.attempts(message.queue_id)
                await other.close()
                held = handler.entered.is_set() and not attempt.done()
                fast_during = len(fast.dumps())
                events_during = list(h.events)
                handler.release.set()
                await asyncio.wait_for(attempt, 30)
                queued = await h.queued()
                await h.close()
                return during, history, held, fast_during, events_during, h.events, queued

            during, history, held, fast_during, events_during, events, queued = run(main())
            assert held, "the slow MX was not holding DATA while the store was read"
            assert during == [str(RecipientStatus.DELIVERED), str(RecipientStatus.PENDING)]
            (row,) = history
            assert row.position == 0 and row.reply.code == 250
            assert row.remote_host is not None and "127.0.0.2" in row.remote_host
            assert fast_during == 1
            assert [(k, a) for k, a, _ in events_during] == [("delivered", "a@fast.test")]
            assert sorted((k, a) for k, a, _ in events) == [
                ("delivered", "a@fast.test"),
                ("delivered", "b@slow.test"),
            ]
            assert queued == []  # both delivered: removed
            assert len(fast.dumps()) == 1
    finally:
        handler.release.set()
        controller.stop()
    assert handler.delivered == 1
