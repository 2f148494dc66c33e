"""The outbound session against scripted asyncio peers, for what a well-behaved server
never does: drop the connection after the final dot, stall, send a 421, append
plaintext to its 220 to STARTTLS; and for the wire itself (the pipelined group, no
body after all RCPTs are refused, nothing sent for a local refusal)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl

import pytest
import trustme

from helpers.outbound import (
    FAST,
    RAW,
    free_port,
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
from mailwright.net.outbound import (
    ClientTimeouts,
    Credentials,
    OutboundSession,
    SessionError,
    Stage,
    TlsMode,
    TlsPolicy,
)

NO_TLS = TlsPolicy(TlsMode.NONE)


def test_mail_rcpts_and_data_go_in_one_pipelined_group() -> None:
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await pipelined_peer(
            reader, writer, seen, b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
        )

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            result = await session.send(
                message("bob@example.test", "carol@example.test", data=b"Subject: x\r\n\r\n.hi\r\n")
            )
            await session.quit()
            return result

    result = run(main())
    assert [r.reply.code for r in result.recipients] == [250, 250]
    assert seen == [
        b"MAIL FROM:<alice@example.test>\r\n",
        b"RCPT TO:<bob@example.test>\r\n",
        b"RCPT TO:<carol@example.test>\r\n",
        b"DATA\r\n",
        b"Subject: x\r\n\r\n..hi\r\n.\r\n",  # dot-stuffed (RFC 5321 §4.5.2)
        b"QUIT\r\n",
    ]


def test_all_recipients_refused_sends_no_body_and_resets() -> None:
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        seen.extend([await read_command(reader) for _ in range(3)])
        writer.write(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")
        seen.append(await read_command(reader))
        writer.write(b"250 2.0.0 reset\r\n")
        seen.append(await read_command(reader))
        writer.write(b"221 bye\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            result = await session.send(message("nobody@example.test"))
            await session.quit()
            return result

    result = run(main())
    reply = result.recipients[0].reply
    assert (reply.code, reply.enhanced, result.recipients[0].permanent) == (550, "5.1.1", True)
    assert seen[-2:] == [b"RSET\r\n", b"QUIT\r\n"]
    assert result.usable and result.reason == "no recipient accepted"


def test_connection_dropped_after_the_final_dot_is_temporary() -> None:
    """RFC 5321 §6.1: no reply after the dot means not delivered: retry later."""

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
        await read_until(reader, b"\r\n.\r\n")
        writer.transport.abort()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            result = await session.send(message("bob@example.test", "carol@example.test"))
            await session.quit()  # never raises, even on a dead connection
            return session, result

    session, result = run(main())
    for r in result.recipients:
        assert (r.reply.code, r.reply.enhanced, r.permanent) == (451, "4.4.2", False)
    assert not result.usable and not session.usable
    assert "connection closed by peer" in result.reason
    assert [e.stage.value for e in result.transcript] == ["mail", "rcpt", "rcpt", "data"]


def test_no_reply_after_the_dot_times_out_as_temporary() -> None:
    stalled = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await read_until(reader, b"\r\n.\r\n")
        await reader.read()  # until the client gives up and closes
        stalled.set()

    short = dataclasses.replace(FAST, data_end=0.3)

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(timeouts=short), NO_TLS)
            result = await session.send(message("bob@example.test"))
            await asyncio.wait_for(stalled.wait(), 5)  # the client closed the connection
            return result

    result = run(main())
    reply = result.recipients[0].reply
    assert (reply.code, reply.enhanced) == (451, "4.4.2") and not result.usable
    assert result.reason == "timed out after 0.3s waiting for the message reply"


def test_421_mid_transaction_is_every_unanswered_recipients_reply() -> None:
    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n550 5.1.1 unknown\r\n421 4.3.2 shutting down\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            return await session.send(message("x@example.test", "y@example.test"))

    result = run(main())
    assert [(r.reply.code, r.permanent) for r in result.recipients] == [(550, True), (421, False)]
    assert [r.from_peer for r in result.recipients] == [True, True]  # both the peer's
    assert not result.usable


def test_results_say_which_replies_the_peer_sent_and_which_we_made() -> None:
    """A DSN says "host X said" only for the peer's own reply (RFC 3464 §2.3.6): the
    refused RCPT is the peer's; the 451 for a connection dropped after the dot is ours."""

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n")
        await read_until(reader, b"\r\n.\r\n")
        writer.transport.abort()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            return await session.send(message("x@example.test", "y@example.test"))

    refused, dropped = run(main()).recipients
    assert (str(refused.reply), refused.from_peer) == ("550 5.1.1 unknown", True)
    assert (dropped.reply.code, dropped.reply.enhanced, dropped.from_peer) == (451, "4.4.2", False)


def test_local_refusals_send_nothing_and_keep_the_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100\r\n")
        seen.append(await read_command(reader))
        writer.write(b"221 bye\r\n")

    nobody = message()  # no recipients: nothing to send
    big = message("bob@example.test", data=b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n")
    utf8 = message("bob@example.test", smtputf8=True)
    nul = message("bob@example.test", data=b"Subject: nul\r\n\r\n\0\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            results = [await session.send(m) for m in (nobody, big, utf8, nul)]
            await session.quit()
            return results

    empty, too_big, no_utf8, with_nul = run(main())
    assert empty.recipients == () and empty.reason == "no recipients" and empty.usable
    assert seen == [b"QUIT\r\n"]  # not one MAIL went out
    assert str(too_big.recipients[0].reply).startswith("552 5.3.4 ")
    assert too_big.reason == "message of 218 octets, the peer accepts at most 100"
    assert str(no_utf8.recipients[0].reply).startswith("553 5.6.7 SMTPUTF8 is required")
    assert str(with_nul.recipients[0].reply).startswith("554 5.6.0 ")
    for result in (too_big, no_utf8, with_nul):
        assert result.usable and result.recipients[0].permanent and result.mail_reply is None
        assert not result.recipients[0].from_peer  # our refusal: no peer said it


def _tls_contexts() -> tuple[ssl.SSLContext, trustme.CA]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(RAW).configure_cert(server_ctx)
    return server_ctx, ca


def test_plaintext_appended_to_the_starttls_220_is_discarded() -> None:
    """The STARTTLS response injection (CVE-2011-0411 class, client side): what a man
    in the middle appends to the 220 must not be read as the reply to the EHLO sent
    over TLS."""
    server_ctx, _ = _tls_contexts()
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250-PIPELINING\r\n250 STARTTLS\r\n")
        assert await read_command(reader) == b"STARTTLS\r\n"
        writer.write(
            b"220 2.0.0 go ahead\r\n250-injected.example\r\n250-AUTH PLAIN\r\n250 INJECTED\r\n"
        )
        await writer.drain()
        await writer.start_tls(server_ctx)
        seen.append(await read_command(reader))
        writer.write(b"250-raw.example.test over TLS\r\n250 PIPELINING\r\n")
        seen.append(await read_command(reader))
        writer.write(b"221 bye\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(
                raw_peer(port), settings(), TlsPolicy(TlsMode.OPPORTUNISTIC)
            )
            info = session.info
            await session.quit()
            return session, info

    session, info = run(main())
    assert seen == [b"EHLO client.example.test\r\n", b"QUIT\r\n"]
    assert info.extensions == {"PIPELINING": ""} and info.tls_version
    ehlo_after_tls = [e for e in session.transcript if e.stage is Stage.EHLO][-1]
    assert ehlo_after_tls.reply.lines[0] == "raw.example.test over TLS"
    assert "injected" not in repr(session.transcript).lower()


def test_failed_handshake_fails_the_session_without_plaintext_fallback() -> None:
    """OPPORTUNISTIC: STARTTLS offered and answered 220, then no TLS: the session
    fails (temporary), it does not go on in plaintext on that connection."""
    after: list[bytes] = []
    done = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250 STARTTLS\r\n")
        await read_command(reader)
        writer.write(b"220 go\r\n")
        after.append(await reader.read(5))  # the ClientHello, answered with garbage
        writer.write(b"this is not TLS\r\n" * 10)
        after.append(await reader.read())  # all the client sent until it closed
        done.set()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            with pytest.raises(SessionError) as caught:
                await OutboundSession.open(
                    raw_peer(port), settings(), TlsPolicy(TlsMode.OPPORTUNISTIC)
                )
            await asyncio.wait_for(done.wait(), 5)
            return caught.value

    err = run(main())
    assert (
        err.stage is Stage.TLS and err.temporary and err.reason.startswith("TLS handshake failed")
    )
    assert after[0][:1] == b"\x16"  # a TLS handshake record, not a plaintext command
    assert b"EHLO" not in after[1] and b"MAIL" not in after[1]


@pytest.mark.parametrize(
    ("greeting", "temporary"), [(b"554 5.7.1 go away\r\n", False), (b"421 4.3.2 busy\r\n", True)]
)
def test_refused_greeting(greeting: bytes, temporary: bool) -> None:
    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        writer.write(greeting)
        await writer.drain()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            await OutboundSession.open(raw_peer(port), settings(), NO_TLS)

    with pytest.raises(SessionError) as caught:
        run(main())
    err = caught.value
    assert err.stage is Stage.GREETING and err.temporary is temporary
    assert err.reply is not None and err.reply.to_bytes() == greeting
    assert err.result_reply is err.reply


def test_greeting_timeout() -> None:
    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await reader.read()  # never greets

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            await OutboundSession.open(
                raw_peer(port), settings(timeouts=ClientTimeouts(greeting=0.3)), NO_TLS
            )

    with pytest.raises(SessionError) as caught:
        run(main())
    assert caught.value.stage is Stage.GREETING and caught.value.temporary
    assert caught.value.reason == "timed out after 0.3s waiting for the greeting reply"


def test_connection_refused() -> None:
    port = free_port()  # bound and released: nothing listens there now
    with pytest.raises(SessionError) as caught:
        run(OutboundSession.open(raw_peer(port), settings(), NO_TLS))
    err = caught.value
    assert err.stage is Stage.CONNECT and err.temporary and err.reply is None
    assert (err.result_reply.code, err.result_reply.enhanced) == (451, "4.4.1")
    assert "connect failed" in err.reason


def test_envelope_without_smtputf8_uses_a_labels_or_refuses() -> None:
    """RFC 6531 §3.2: without SMTPUTF8 an IDN domain goes as A-labels; a non-ASCII
    local part cannot go at all (553 5.6.7, nothing sent)."""
    seen: list[bytes] = []

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        seen.extend([await read_command(reader) for _ in range(3)])
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await read_until(reader, b"\r\n.\r\n")
        writer.write(b"250 ok\r\n")
        seen.append(await read_command(reader))
        writer.write(b"221 bye\r\n")

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(), NO_TLS)
            idn = await session.send(message("bob@bücher.example"))
            local = await session.send(message("jösé@example.test"))
            await session.quit()
            return idn, local

    idn, local = run(main())
    assert seen == [
        b"MAIL FROM:<alice@example.test>\r\n",
        b"RCPT TO:<bob@xn--bcher-kva.example>\r\n",
        b"DATA\r\n",
        b"QUIT\r\n",
    ]
    assert idn.recipients[0].delivered
    assert str(local.recipients[0].reply).startswith("553 5.6.7 ")
    assert local.reason == "recipient 'jösé@example.test' needs SMTPUTF8, not offered"


@pytest.mark.parametrize("mode", [TlsMode.OPPORTUNISTIC, TlsMode.ENCRYPT])
def test_starttls_refused(mode: TlsMode) -> None:
    """A STARTTLS answered 454: opportunistic TLS goes on in plaintext (the session is
    in step, RFC 7435); a policy that requires TLS fails, never falls back."""
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250 STARTTLS\r\n")
        assert await read_command(reader) == b"STARTTLS\r\n"
        writer.write(b"454 4.7.0 TLS not available due to local problem\r\n")
        seen.append(await reader.readline())
        writer.write(b"221 2.0.0 bye\r\n")
        done.set()

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            try:
                session = await OutboundSession.open(raw_peer(port), settings(), TlsPolicy(mode))
                await session.quit()
                return session
            finally:
                await asyncio.wait_for(done.wait(), 5)

    if mode is TlsMode.OPPORTUNISTIC:
        session = run(main())
        assert session.info.tls_version is None and seen == [b"QUIT\r\n"]
        return
    with pytest.raises(SessionError) as caught:
        run(main())
    assert seen == [b"QUIT\r\n"]  # in step: the client says goodbye, no plaintext mail
    err = caught.value
    assert err.stage is Stage.STARTTLS and err.temporary
    assert err.reply is not None and err.reply.code == 454
    assert (err.result_reply.code, err.result_reply.enhanced) == (451, "4.7.4")


def test_a_peer_that_stops_reading_the_body_times_out() -> None:
    """RFC 5321 §4.5.3.2.5: each data block write is bounded."""
    done = asyncio.Event()

    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer)
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await done.wait()  # reads nothing more: the client's writes back up

    data = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    data *= 64 * 1024 // 1000 * 512  # ~32 MB: more than loopback socket buffers hold
    short = dataclasses.replace(FAST, data_block=0.5)

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(handler) as port:
            session = await OutboundSession.open(raw_peer(port), settings(timeouts=short), NO_TLS)
            try:
                return await session.send(message("bob@example.test", data=data))
            finally:
                done.set()

    result = run(main())
    assert (result.recipients[0].reply.code, result.recipients[0].reply.enhanced) == (451, "4.4.2")
    assert result.reason == "write timed out after 0.5s" and not result.usable


def _auth_peer(answer: bytes, seen: list[bytes]):  # type: ignore[no-untyped-def]
    async def handler(reader, writer) -> None:  # type: ignore[no-untyped-def]
        await greet(reader, writer, b"250 AUTH SCRAM-SHA-256\r\n")
        seen.append(await read_command(reader))
        writer.write(answer)
        seen.append(await reader.readline())  # "*" when the client cancels, or EOF
        if seen[-1] == b"*\r\n":
            writer.write(b"501 5.7.0 Authentication cancelled\r\n")
            await writer.drain()

    return handler


def test_scram_without_the_server_signature_fails() -> None:
    """A 235 before the server proved it knows the secret (RFC 5802 §5: the client
    verifies ServerSignature) means the server may be an impostor."""
    seen: list[bytes] = []

    async def main():  # type: ignore[no-untyped-def]
        async with scripted_server(_auth_peer(b"235 2.7.0 ok\r\n", seen)) as port:
            creds = Credentials("alice", "secret")
            await OutboundSession.open(
                raw_peer(port), settings(auth=creds, allow_plaintext_auth=True), NO_TLS
            )

    with pytest.raises(SessionError) as caught:
        run(main())
    assert caught.value.stage is Stage.AUTH and caught.value.temporary
    assert caught.value.reason == "AUTH SCRAM-SHA-256: server signature not verified"
    assert seen[0].startswith(b"AUTH SCRAM-SHA-256 ")


def test_a_malformed_challenge_cancels_the_exchange() -> None:
    seen: list[bytes] = []

    async def main():  # type: ignore[no-untyped-def]
        answer = b"334 not base64!\r\n"
        async with scripted_server(_auth_peer(answer, seen)) as port:
            creds = Credentials("alice", "secret")
            await OutboundSession.open(
                raw_peer(port), settings(auth=creds, allow_plaintext_auth=True), NO_TLS
            )

    with pytest.raises(SessionError) as caught:
        run(main())
    err = caught.value
    assert err.stage is Stage.AUTH and err.temporary
    assert err.reason.startswith("AUTH SCRAM-SHA-256: ") and "base64" in err.reason.lower()
    assert seen[1] == b"*\r\n"  # RFC 4954 §4: the client cancels
    assert [e.reply.code for e in err.transcript if e.stage is Stage.AUTH] == [334, 501]
