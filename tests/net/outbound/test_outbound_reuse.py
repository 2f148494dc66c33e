"""Reusing an idle connection (the relay's connection cache): the RSET that checks it
goes in the pipelined group with MAIL, RCPT and DATA when the peer offers PIPELINING
(RFC 2920 §3.1), alone otherwise; a connection the peer closed or refuses to reset is
reported ``stale`` with nothing sent for good, and ``reset`` alone still answers
whether an idle connection is alive.  Scripted asyncio peers."""

from __future__ import annotations

import asyncio

import pytest

from helpers.outbound import (
    greet,
    message,
    pipelined_peer,
    raw_peer,
    read_command,
    read_until,
    run,
    scripted_server,
    settings,
)
from mailwright.net.outbound import OutboundSession, Stage, TlsMode, TlsPolicy

NO_TLS = TlsPolicy(TlsMode.NONE)


def test_reused_connection_rset_goes_in_the_pipelined_group() -> None:
    """The check of an idle connection (``reset_first``) costs no round trip: the
    peer has RSET, MAIL, RCPT and DATA before it answers anything (RFC 2920 §3.1:
    RSET may stand anywhere in a group)."""
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        group = b"250 2.0.0 reset\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
        await pipelined_peer(reader, writer, seen, group, transactions=2)

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            results = []
            for text in (b"one", b"two"):
                data = b"Subject: " + text + b"\r\n\r\nhi\r\n"
                results.append(
                    await session.send(message("bob@example.test", data=data), reset_first=True)
                )
            await session.quit()
            return results

    results = run(main())
    assert [(r.recipients[0].reply.code, r.stale, r.usable) for r in results] == [
        (250, False, True),
        (250, False, True),
    ]
    group = [
        b"RSET\r\n",
        b"MAIL FROM:<alice@example.test>\r\n",
        b"RCPT TO:<bob@example.test>\r\n",
        b"DATA\r\n",
    ]
    assert seen == [
        *group,
        b"Subject: one\r\n\r\nhi\r\n.\r\n",
        *group,
        b"Subject: two\r\n\r\nhi\r\n.\r\n",
        b"QUIT\r\n",
    ]
    assert [e.stage for e in results[1].transcript][:2] == [Stage.RSET, Stage.MAIL]


@pytest.mark.parametrize("peer_does", ["closes", "answers 421", "answers 500"])
def test_reused_connection_found_gone_is_stale_and_sends_no_body(peer_does: str) -> None:
    """The RSET ahead of MAIL gets no 250: the result is ``stale`` (the agent sends
    the message again on a new connection), every recipient has a temporary reply,
    and no body or final dot ever goes out on this connection."""
    after_greeting: list[bytes] = []
    done = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await writer.drain()
        try:
            if peer_does == "closes":
                writer.transport.abort()
                return
            after_greeting.append(await read_command(reader))
            writer.write(
                b"421 4.3.2 going down\r\n" if peer_does == "answers 421" else b"500 what\r\n"
            )
            await writer.drain()
            after_greeting.append(await reader.read())  # until the client drops us
        finally:
            done.set()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            if peer_does == "closes":
                await asyncio.wait_for(done.wait(), 5)
            result = await session.send(message("bob@example.test"), reset_first=True)
            await asyncio.wait_for(done.wait(), 5)
            return session, result

    session, result = run(main())
    assert result.stale and not result.usable and not session.usable
    assert [(r.reply.code, r.reply.enhanced) for r in result.recipients] == [(451, "4.4.2")]
    assert not result.recipients[0].from_peer
    assert all(b"\r\n.\r\n" not in chunk for chunk in after_greeting)
    if peer_does != "closes":
        assert after_greeting[0] == b"RSET\r\n"


def test_reset_first_without_pipelining_waits_for_the_rset_reply() -> None:
    """A peer without PIPELINING gets RSET on its own, then MAIL once RSET is
    answered (RFC 2920 §3.1 is for peers that offer it)."""
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250 8BITMIME\r\n")
        seen.append(await read_command(reader))
        # Nothing else may be in flight before the RSET reply.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readuntil(b"\r\n"), 0.2)
        writer.write(b"250 2.0.0 reset\r\n")
        for answer in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            seen.append(await read_command(reader))
            writer.write(answer)
        seen.append(await read_until(reader, b"\r\n.\r\n"))
        writer.write(b"250 2.0.0 queued\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            return await session.send(message("bob@example.test"), reset_first=True)

    result = run(main())
    assert result.recipients[0].reply.code == 250 and not result.stale
    assert seen[:4] == [
        b"RSET\r\n",
        b"MAIL FROM:<alice@example.test>\r\n",
        b"RCPT TO:<bob@example.test>\r\n",
        b"DATA\r\n",
    ]


def test_reset_detects_a_connection_the_peer_dropped_while_idle() -> None:
    closed = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await writer.drain()
        writer.transport.abort()
        closed.set()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            await asyncio.wait_for(closed.wait(), 5)
            alive = await session.reset()
            return session, alive

    session, alive = run(main())
    assert alive is False and not session.usable
