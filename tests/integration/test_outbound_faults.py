"""Relay delivery against Postfix's ``smtp-sink`` (and aiosmtpd for per-recipient
replies), routed by a real DNS server on loopback: MX order, fail-over, spreading,
implicit and null MX, the fault cases, with the per-recipient state, the retry time
(a settable clock) and the DSN parsed back with ``email``.

The MX hosts are 127.0.0.N, all on one port (``[outbound] port``); the queue is the
real spool and runner, built as the composition root builds them (``RelayHarness``).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiosmtpd.controller import Controller

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.mtasts_env import ServedPolicies
from helpers.relaykit import (
    PerRecipient,
    RelayHarness,
    SmtpSink,
    dsn_status,
    free_shared_port,
    relay_config,
    report_fields,
    run,
    sinks,
)
from helpers.resolvers import resolver_for
from mailwright.config import parse_config
from mailwright.delivery.tlspolicy.build import build_decider
from mailwright.queue.agent import ReplySource
from mailwright.spool.model import RecipientStatus

pytestmark = pytest.mark.interop

SOA = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
ZONE = f"""
$ORIGIN test.
$TTL 300
{SOA}
far          IN MX 10 mx1.far
far          IN MX 20 mx2.far
mx1.far      IN A 127.0.0.2
mx2.far      IN A 127.0.0.3
spread       IN MX 10 a.spread
spread       IN MX 10 b.spread
a.spread     IN A 127.0.0.4
b.spread     IN A 127.0.0.5
implicit     IN A 127.0.0.6
nullmx       IN MX 0 .
faulty       IN MX 10 mx.faulty
mx.faulty    IN A 127.0.0.7
partial      IN MX 10 mx.partial
mx.partial   IN A 127.0.0.8
sts          IN MX 10 mx1.sts
sts          IN MX 20 mx2.sts
mx1.sts      IN A 127.0.0.2
mx2.sts      IN A 127.0.0.3
_mta-sts.sts IN TXT "v=STSv1; id=20261204"
"""
ADDRESSES = [f"127.0.0.{n}" for n in range(2, 9)]
RETRY_INITIAL = 60.0  # relaykit.RETRY


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


@pytest.fixture
def port() -> int:
    return free_shared_port(ADDRESSES)


def harness(tmp_path, dns, port, **outbound) -> RelayHarness:
    return RelayHarness(dns, relay_config(tmp_path, dns, port, **outbound))


def states(message) -> dict[str, RecipientStatus]:
    return {r.recipient.address: r.status for r in message.recipients}


def test_first_mx_down_the_second_takes_one_transaction(tmp_path, dns, port):
    with sinks(("127.0.0.3", ()), port=port) as (mx2,):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("a@far.test", "b@far.test")
            assert await h.run_once() == 1
            assert await h.queued() == []  # both delivered: nothing left
            await h.close()
            return h

        h = run(main())
    assert [kind for kind, _, _ in h.events] == ["delivered", "delivered"]
    assert {r.remote_host for r in h.results} == {f"mx2.far.test[127.0.0.3]:{port}"}
    # One transaction for both recipients of one destination.
    assert mx2.rcpts() == [["<a@far.test>", "<b@far.test>"]]
    (received,) = mx2.messages()
    assert received["Subject"] == "relayed"
    assert ".leading dot stays one line" in received.get_payload()  # dot-stuffing undone
    assert "tls=may (default" in h.results[0].reason


def test_equal_preferences_spread_over_both_hosts(tmp_path, dns, port):
    with sinks(("127.0.0.4", ()), ("127.0.0.5", ()), port=port) as (a, b):

        async def main():
            # No connection reuse: each message picks its MX afresh.
            h = harness(tmp_path, dns, port, connection_reuse_time=0)
            for i in range(16):
                await h.put(f"user{i}@spread.test")
            while await h.run_once():
                pass
            assert await h.queued() == []
            await h.close()

        run(main())
    # 16 fair coin flips all landing on one side: 2 * 2**-16.
    assert len(a.dumps()) > 0 and len(b.dumps()) > 0
    assert len(a.dumps()) + len(b.dumps()) == 16


def test_connection_reused_for_the_next_message(tmp_path, dns, port):
    # -n 1: the sink serves one session and exits, so the later messages arrive
    # only if they travel over the first connection.
    with sinks(("127.0.0.6", ("-n", "1")), port=port) as (sink,):

        async def main():
            h = harness(tmp_path, dns, port)
            for i in range(3):
                await h.put(f"user{i}@implicit.test")
            while await h.run_once():
                pass
            queued = await h.queued()
            await h.close()
            return queued

        assert run(main()) == []
    assert sorted(r[0] for r in sink.rcpts()) == [
        "<user0@implicit.test>",
        "<user1@implicit.test>",
        "<user2@implicit.test>",
    ]


def test_implicit_mx_is_the_domain_itself(tmp_path, dns, port):
    with sinks(("127.0.0.6", ()), port=port) as (sink,):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@implicit.test")
            await h.run_once()
            await h.close()
            return h

        h = run(main())
    assert h.events == [("delivered", "x@implicit.test", h.events[0][2])]
    assert h.results[0].remote_host == f"implicit.test[127.0.0.6]:{port}"
    assert sink.rcpts() == [["<x@implicit.test>"]]


def test_null_mx_bounces_at_once_with_5_1_10(tmp_path, dns, port):
    async def main():
        h = harness(tmp_path, dns, port)
        await h.put("x@nullmx.test")
        await h.run_once()
        bounces = await h.bounces()
        await h.close()
        return h, bounces

    h, bounces = run(main())
    assert h.events == [("bounced", "x@nullmx.test", "556 5.1.10 Recipient address has null MX")]
    (dsn,) = bounces
    assert dsn.get_content_type() == "multipart/report"
    assert dsn_status(dsn) == [("rfc822; x@nullmx.test", "failed", "5.1.10")]
    # Our routing verdict, no host involved: no Remote-MTA, an X- diagnostic.
    assert (h.results[0].source, h.results[0].remote_host) == (ReplySource.LOCAL, None)
    (fields,) = report_fields(dsn)
    assert fields["Remote-MTA"] is None
    assert fields["Diagnostic-Code"] == "X-mailwright; Recipient address has null MX"


def test_4xx_then_250_is_delivered_exactly_once(tmp_path, dns, port):
    async def main():
        h = harness(tmp_path, dns, port)
        with sinks(("127.0.0.7", ("-r", "RCPT")), port=port):
            await h.put("x@faulty.test")
            started = h.clock.now
            await h.run_once()
            (queued,) = await h.queued()
        assert states(queued) == {"x@faulty.test": RecipientStatus.PENDING}
        assert queued.next_attempt == started + RETRY_INITIAL  # jitter 0
        with sinks(("127.0.0.7", ()), port=port) as (good,):
            h.clock.advance(RETRY_INITIAL - 1)
            assert await h.run_once() == 0  # not due yet
            h.clock.advance(1)
            assert await h.run_once() == 1
            assert await h.queued() == []
            await h.close()
            return h, good.rcpts()

    h, delivered = run(main())
    assert [e[0] for e in h.events] == ["deferred", "delivered"]
    assert h.events[0][2].startswith("450 4.3.0")
    assert delivered == [["<x@faulty.test>"]]


def test_5xx_after_the_data_is_one_bounce(tmp_path, dns, port):
    with sinks(("127.0.0.7", ("-f", ".")), port=port):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@faulty.test", "y@faulty.test")
            await h.run_once()
            bounces = await h.bounces()
            await h.close()
            return h, bounces

        h, bounces = run(main())
    assert [e[0] for e in h.events] == ["bounced", "bounced"]
    assert h.events[0][2] == "500 5.3.0 Error: command failed"
    (dsn,) = bounces  # one DSN for both recipients
    assert dsn_status(dsn) == [
        ("rfc822; x@faulty.test", "failed", "5.3.0"),
        ("rfc822; y@faulty.test", "failed", "5.3.0"),
    ]
    # smtp-sink's own reply after the data: the host said it.
    assert {r.source for r in h.results} == {ReplySource.REMOTE}
    for fields in report_fields(dsn):
        assert fields["Remote-MTA"] == "dns; mx.faulty.test"
        assert fields["Diagnostic-Code"] == "smtp; 500 5.3.0 Error: command failed"


def test_drop_after_the_final_dot_is_retried(tmp_path, dns, port):
    async def main():
        h = harness(tmp_path, dns, port)
        with sinks(("127.0.0.7", ("-q", ".")), port=port):
            await h.put("x@faulty.test")
            await h.run_once()
            (queued,) = await h.queued()
        assert states(queued) == {"x@faulty.test": RecipientStatus.PENDING}
        assert queued.recipients[0].last_reply is not None
        assert queued.recipients[0].last_reply.code // 100 == 4
        assert await h.bounces() == []
        await h.close()
        return h

    h = run(main())
    assert [e[0] for e in h.events] == ["deferred"]


def test_slow_replies_are_waited_for(tmp_path, dns, port):
    # -p: no PIPELINING, since smtp-sink answers a pipelined DATA before a delayed
    # RCPT (its replies would come out of order; a real server's never do).
    with sinks(("127.0.0.7", ("-p", "-W", "RCPT:1", "-w", "1")), port=port) as (sink,):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@faulty.test")
            began = time.monotonic()
            await h.run_once()
            took = time.monotonic() - began
            await h.close()
            return h, took

        h, took = run(main())
    assert [e[0] for e in h.events] == ["delivered"]
    assert took >= 2.0  # one second at RCPT, one at DATA
    assert sink.rcpts() == [["<x@faulty.test>"]]


def test_all_mx_down_until_expiry_then_one_bounce(tmp_path, dns, port):
    async def main():
        h = harness(tmp_path, dns, port)  # no sink: every MX refuses the connection
        await h.put("x@far.test")
        await h.run_once()
        (queued,) = await h.queued()
        assert states(queued) == {"x@far.test": RecipientStatus.PENDING}
        h.clock.advance(86400)  # relaykit.RETRY's max_queue_lifetime
        await h.run_once()
        bounces = await h.bounces()
        remaining = await h.queued()
        await h.close()
        return h, bounces, remaining

    h, bounces, remaining = run(main())
    assert [e[0] for e in h.events] == ["deferred", "expired"]
    assert h.events[0][2].startswith("451 4.4.1")
    assert remaining == []
    (dsn,) = bounces
    assert dsn_status(dsn) == [("rfc822; x@far.test", "failed", "4.4.7")]


def test_two_of_three_recipients_one_delivered_one_retried_one_bounced(tmp_path, dns, port):
    handler = PerRecipient()
    controller = Controller(handler, hostname="127.0.0.8", port=port)
    controller.start()
    try:

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("ok@partial.test", "later@partial.test", "bad@partial.test")
            await h.run_once()
            (queued,) = await h.queued()
            bounces = await h.bounces()
            await h.close()
            return queued, bounces

        queued, bounces = run(main())
    finally:
        controller.stop()
    assert states(queued) == {
        "ok@partial.test": RecipientStatus.DELIVERED,
        "later@partial.test": RecipientStatus.PENDING,
        "bad@partial.test": RecipientStatus.FAILED,
    }
    assert handler.delivered == [["ok@partial.test"]]
    (dsn,) = bounces
    assert dsn_status(dsn) == [("rfc822; bad@partial.test", "failed", "5.1.1")]


def test_sink_fixture_is_real(port):
    """The sink refuses what it is told to: the fault cases above test the relay,
    not a sink that accepts everything."""
    sink = SmtpSink("127.0.0.7", port, "-r", "RCPT").start()
    try:

        async def probe() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.7", port)
            await reader.readline()
            writer.write(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
            lines = [await reader.readline() for _ in range(3)]
            writer.close()
            return lines[-1]

        assert run(probe()).startswith(b"450")
    finally:
        sink.stop()


class Concurrent:
    """aiosmtpd handler that holds each DATA a moment and counts sessions in DATA."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.delivered = 0

    async def handle_DATA(self, server, session, envelope):
        self.active += 1
        self.most = max(self.most, self.active)
        await asyncio.sleep(1.0)  # long enough that every allowed session overlaps
        self.active -= 1
        self.delivered += 1
        return "250 2.0.0 Queued"


@pytest.mark.parametrize("limit", [1, 3])
def test_per_destination_concurrency_limit(tmp_path, dns, port, limit):
    handler = Concurrent()
    controller = Controller(handler, hostname="127.0.0.8", port=port)
    controller.start()
    try:

        async def main():
            h = harness(
                tmp_path, dns, port, max_connections_per_destination=limit, connection_reuse_time=0
            )
            for i in range(4):
                await h.put(f"user{i}@partial.test")
            assert await h.run_once() == 4  # the runner starts all four at once
            queued = await h.queued()
            await h.close()
            return queued

        assert run(main()) == []
    finally:
        controller.stop()
    assert handler.delivered == 4
    assert handler.most == limit  # never more at once than the limit, and it is used


def test_mta_sts_enforce_skips_unlisted_mx_and_never_falls_back_to_plaintext(tmp_path, dns, port):
    """An enforced MTA-STS policy (RFC 8461) listing only mx2: mx1, up and preferred,
    is never contacted; mx2 offers no STARTTLS (smtp-sink), so the mail is deferred
    with 4.7.4 instead of going out in plaintext."""
    policy = b"version: STSv1\r\nmode: enforce\r\nmx: mx2.sts.test\r\nmax_age: 86400\r\n"
    with sinks(("127.0.0.2", ()), ("127.0.0.3", ()), port=port) as (mx1, mx2):

        async def main():
            doc = relay_config(tmp_path, dns, port)
            config = parse_config(doc)
            decider = build_decider(config, resolver_for(dns), fetcher=ServedPolicies(policy))
            h = RelayHarness(dns, doc, decider=decider)
            await h.put("x@sts.test")
            await h.run_once()
            (queued,) = await h.queued()
            await h.close()
            return h, queued

        h, queued = run(main())
    assert states(queued) == {"x@sts.test": RecipientStatus.PENDING}
    assert h.events[0][2].startswith("451 4.7.4"), h.events
    assert "tls=verify (mta-sts" in h.results[0].reason
    assert mx1.dumps() == [] and mx2.dumps() == []


@pytest.mark.parametrize(("sink_options", "reports"), [((), []), (("-N",), ["relayed"])])
def test_notify_success_relayed_dsn_only_when_the_next_hop_lacks_dsn(
    tmp_path, dns, port, sink_options, reports
):
    """RFC 3461 §5.2.2: NOTIFY=SUCCESS to a next hop that offers DSN travels on (the
    next hop reports); to one that does not (smtp-sink -N), we send "relayed"."""
    with sinks(("127.0.0.6", sink_options), port=port) as (sink,):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@implicit.test", notify=("SUCCESS",))
            await h.run_once()
            reports = await h.bounces()
            await h.close()
            return h, reports

        h, found = run(main())
    assert [e[0] for e in h.events] == ["delivered"]
    assert h.results[0].next_hop_dsn is (not reports)
    assert [action for _, action, _ in (s for r in found for s in dsn_status(r))] == reports
    (args,) = sink.messages()
    assert ("NOTIFY=SUCCESS" in (args["X-Rcpt-Args"] or "")) is (not reports)


def test_a_cached_session_the_peer_closed_is_replaced(tmp_path, dns, port):
    """The pooled connection dies while idle (the peer restarted): the next message
    finds it gone (RSET fails) and goes over a new connection, not lost, not
    deferred."""
    handler = Concurrent()

    async def main():
        h = harness(tmp_path, dns, port)
        controller = Controller(handler, hostname="127.0.0.8", port=port)
        controller.start()
        try:
            await h.put("one@partial.test")
            await h.run_once()
            assert h.agent.pool.reused == 0
            controller.stop()  # closes the idle connection the pool holds
            controller = Controller(handler, hostname="127.0.0.8", port=port)
            controller.start()
            await h.put("two@partial.test")
            await h.run_once()
            assert h.agent.pool.reused == 1  # the cached one was taken, found dead
            queued = await h.queued()
            await h.close()
            return h, queued
        finally:
            controller.stop()

    h, queued = run(main())
    assert queued == []
    assert [e[:2] for e in h.events] == [
        ("delivered", "one@partial.test"),
        ("delivered", "two@partial.test"),
    ]
    assert handler.delivered == 2


def test_a_cached_pipelining_session_the_peer_closed_is_replaced(tmp_path, dns, port):
    """As above against smtp-sink, which offers PIPELINING: the RSET that checks the
    cached connection goes in one write with MAIL, RCPT and DATA, finds the
    connection gone, and the message goes over a new one, delivered once."""

    async def main():
        h = harness(tmp_path, dns, port)
        with sinks(("127.0.0.6", ()), port=port) as (first,):
            await h.put("one@implicit.test")
            await h.run_once()
        # The sink is gone (its process exited): the pooled connection is closed.
        with sinks(("127.0.0.6", ()), port=port) as (second,):
            await h.put("two@implicit.test")
            await h.run_once()
            queued = await h.queued()
            await h.close()
            return h, queued, first.rcpts(), second.rcpts()

    h, queued, first, second = run(main())
    assert h.agent.pool.reused == 1  # the cached one was taken, found dead
    assert queued == []
    assert [e[:2] for e in h.events] == [
        ("delivered", "one@implicit.test"),
        ("delivered", "two@implicit.test"),
    ]
    assert [r[0] for r in first] == ["<one@implicit.test>"]
    assert [r[0] for r in second] == ["<two@implicit.test>"]


def test_4xx_greeting_moves_on_to_the_next_mx(tmp_path, dns, port):
    # -r CONNECT: mx1 greets with 450 (a busy server's greeting).
    with sinks(("127.0.0.2", ("-r", "CONNECT")), ("127.0.0.3", ()), port=port) as (mx1, mx2):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@far.test")
            await h.run_once()
            await h.close()
            return h

        h = run(main())
    assert [e[0] for e in h.events] == ["delivered"]
    assert h.results[0].remote_host == f"mx2.far.test[127.0.0.3]:{port}"
    assert mx1.dumps() == [] and len(mx2.dumps()) == 1


def test_mx_session_limit_counts_hosts_that_answered(tmp_path, dns, port):
    """max_mx_sessions = 1 (Postfix smtp_mx_session_limit): mx1 greeted (with 4xx),
    so that was the attempt's one session; mx2 waits for the retry."""
    with sinks(("127.0.0.2", ("-r", "CONNECT")), ("127.0.0.3", ()), port=port) as (_, mx2):

        async def main():
            h = harness(tmp_path, dns, port, max_mx_sessions=1)
            await h.put("x@far.test")
            await h.run_once()
            await h.close()
            return h

        h = run(main())
    assert [e[0] for e in h.events] == ["deferred"]
    assert h.events[0][2].startswith("450 ")  # mx1's greeting is the answer
    assert h.results[0].remote_host == f"mx1.far.test[127.0.0.2]:{port}"
    assert h.results[0].source is ReplySource.REMOTE  # its words, not ours
    assert mx2.dumps() == []


def test_private_mx_is_a_mail_loop_without_allow_private_addresses(tmp_path, dns, port):
    async def main():
        h = harness(tmp_path, dns, port, allow_private_addresses=False)
        await h.put("x@far.test")
        await h.run_once()
        bounces = await h.bounces()
        await h.close()
        return h, bounces

    h, bounces = run(main())
    assert h.events == [
        ("bounced", "x@far.test", "554 5.4.6 Mail for the domain loops back to myself")
    ]
    (dsn,) = bounces
    assert dsn_status(dsn) == [("rfc822; x@far.test", "failed", "5.4.6")]
    (fields,) = report_fields(dsn)
    assert fields["Remote-MTA"] is None
    assert fields["Diagnostic-Code"] == "X-mailwright; Mail for the domain loops back to myself"


def test_opportunistic_tls_handshake_failure_falls_back_to_plaintext(tmp_path, dns, port):
    """A host that offers STARTTLS, answers 220 and then cannot do TLS: with the
    default ("may") policy the relay connects again and delivers in plaintext (RFC
    7435, Postfix's "may"); the log detail says so."""
    connections: list[list[bytes]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[bytes] = []
        connections.append(seen)
        writer.write(b"220 broken-tls.test ESMTP\r\n")
        while line := await asyncio.wait_for(reader.readline(), 5):
            verb = line[:4].upper()
            seen.append(verb)
            if verb == b"EHLO":
                writer.write(b"250-broken-tls.test\r\n250 STARTTLS\r\n")
            elif verb == b"STAR":
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                await reader.read(5)  # the ClientHello, answered with garbage
                writer.write(b"this is not TLS\r\n" * 10)
                await writer.drain()
                break
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 2.0.0 stored\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(peer, "127.0.0.8", port)
        try:
            h = harness(tmp_path, dns, port)
            await h.put("x@partial.test")
            await h.run_once()
            await h.close()
            return h
        finally:
            server.close()
            await server.wait_closed()

    h = run(main())
    assert [e[:2] for e in h.events] == [("delivered", "x@partial.test")]
    assert "TLS handshake failed" in h.results[0].reason and "tls=none" in h.results[0].reason
    assert connections[0] == [b"EHLO", b"STAR"]
    assert connections[1][:3] == [b"EHLO", b"MAIL", b"RCPT"]  # no STARTTLS the second time
