"""PIPELINING (RFC 2920) over real sockets.

aiosmtplib 5.x no longer pipelines: ``sendmail`` awaits each reply before the next
command, and its protocol object parses one reply per command written (replies that
arrive together are left unread).  So the pipelined groups are written with an asyncio
stream client (and the raw socket client) and aiosmtplib is used for what it does:
many concurrent sessions, each one a complete independent SMTP client.
"""

from __future__ import annotations

import asyncio

import aiosmtplib

from helpers.servers import CATCHALL, EXAMPLE, InProcessServer, in_maildir
from helpers.wire import CLIENT_NAME, RawSMTP, message, queue_id_of
from mailwright.smtp import codes

SENDER = "sender@remote.test"


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One complete reply (all its lines), as raw bytes."""
    out = b""
    while True:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        out += line
        if line[3:4] != b"-":
            return out


def test_pipelined_group_gets_replies_in_order(server: InProcessServer):
    body1 = message("pipelined-1")
    body2 = message("pipelined-2")

    async def session() -> list[bytes]:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            replies = [await read_reply(reader)]
            writer.write(f"EHLO {CLIENT_NAME}\r\n".encode())
            ehlo = await read_reply(reader)
            assert b"250-PIPELINING\r\n" in ehlo
            # Group 1: the whole envelope, with two bad recipients in the middle.
            writer.write(
                f"MAIL FROM:<{SENDER}>\r\n"
                "RCPT TO:<alice@example.test>\r\n"
                "RCPT TO:<nobody@example.test>\r\n"
                "RCPT TO:<alice@elsewhere.test>\r\n"
                "RCPT TO:<bob@example.test>\r\n"
                "DATA\r\n".encode()
            )
            replies += [await read_reply(reader) for _ in range(6)]
            # Group 2: message content, then the next envelope (RFC 2920 §3.1).
            writer.write(
                body1
                + b".\r\n"
                + f"MAIL FROM:<{SENDER}>\r\n".encode()
                + b"RCPT TO:<anyone@catchall.test>\r\nDATA\r\n"
            )
            replies += [await read_reply(reader) for _ in range(4)]
            writer.write(body2 + b".\r\nQUIT\r\n")
            replies += [await read_reply(reader) for _ in range(2)]
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after 221
            return replies
        finally:
            writer.close()

    replies = asyncio.run(session())
    greeting, *rest = replies
    assert greeting.startswith(b"220 ")
    expected = [
        codes.R250_SENDER_OK,
        codes.R250_RECIPIENT_OK,
        codes.R550_NO_SUCH_USER,
        codes.R550_RELAY_DENIED,
        codes.R250_RECIPIENT_OK,
        codes.R354_START_DATA,
        None,  # 250 queued as ...
        codes.R250_SENDER_OK,
        codes.R250_RECIPIENT_OK,
        codes.R354_START_DATA,
        None,
        codes.R221_BYE,
    ]
    assert len(rest) == len(expected)
    for got, want in zip(rest, expected, strict=True):
        if want is None:
            assert got.startswith(b"250 2.0.0 Ok: queued as "), got
        else:
            assert got == want.to_bytes()
    first, second = queue_id_of(rest[6]), queue_id_of(rest[10])
    assert first != second
    for box in ("alice", "bob"):
        [delivered] = server.maildir_messages(EXAMPLE, box)
        assert delivered.endswith(in_maildir(body1)) and f" id {first};".encode() in delivered
    [delivered] = server.maildir_messages(CATCHALL, "sink")
    assert delivered.endswith(in_maildir(body2)) and f" id {second}\n".encode() in delivered


def test_pipelined_rset_and_noop_keep_order(server: InProcessServer):
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nRSET\r\n"
            "RCPT TO:<alice@example.test>\r\nNOOP\r\nQUIT\r\n".encode()
        )
        replies = raw.replies(6)
        assert [r.raw for r in replies] == [
            codes.R250_SENDER_OK.to_bytes(),
            codes.R250_RECIPIENT_OK.to_bytes(),
            codes.R250_RESET.to_bytes(),
            codes.R503_NEED_MAIL.to_bytes(),  # RSET ended the transaction
            codes.R250_OK.to_bytes(),
            codes.R221_BYE.to_bytes(),
        ]
        assert raw.closed_by_peer()
    server.assert_nothing_stored()


def test_concurrent_aiosmtplib_sessions_each_get_their_own_queue_id(server: InProcessServer):
    count = 20

    async def one(i: int) -> str:
        errors, text = await aiosmtplib.send(
            message(f"concurrent-{i}"),
            sender=SENDER,
            recipients=[f"alice+{i}@example.test", f"c{i}@catchall.test"],
            hostname=server.host,
            port=server.port,
            start_tls=False,
            local_hostname=CLIENT_NAME,
            timeout=10,
        )
        assert errors == {}
        return queue_id_of(text)

    async def all_sessions() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(count)))

    ids = asyncio.run(all_sessions())
    assert len(set(ids)) == count
    for domain, box in ((EXAMPLE, "alice"), (CATCHALL, "sink")):
        delivered = server.maildir_messages(domain, box, count=count)
        assert len(delivered) == count
        assert {m.split(b" id ", 1)[1][:16].decode() for m in delivered} == set(ids)


def test_pipelined_commands_around_a_coroutine_hook_keep_order(server: InProcessServer):
    """Commands whose handlers answer at once are answered straight from the protocol
    callback; a coroutine hook hands its command to the session task.  Commands
    pipelined behind it must wait for it: replies stay in command order and the
    state each one sees is the one the earlier replies made."""
    from mailwright.policy.pipeline import Stage

    seen: list[str] = []

    async def slow_mail_hook(ctx, event):
        seen.append("mail-hook")
        await asyncio.sleep(0.05)  # the RCPTs behind MAIL arrive while this waits

    pipeline = server.app.listeners[0].services.pipeline
    pipeline.register(Stage.MAIL, "slow", slow_mail_hook)

    raw = RawSMTP(server.host, server.port)
    try:
        raw.greeting()
        raw.ehlo()
        raw.send(
            f"MAIL FROM:<{SENDER}>\r\n"
            "RCPT TO:<alice@example.test>\r\n"
            "RCPT TO:<nobody@example.test>\r\n"
            "NOOP\r\n"
            "DATA\r\n".encode()
        )
        replies = raw.replies(5)
        raw.send(message("around a coroutine hook") + b".\r\nQUIT\r\n")
        queued, bye = raw.replies(2)
    finally:
        raw.close()
    assert [(r.code, r.enhanced) for r in replies] == [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (550, "5.1.1"),
        (250, "2.0.0"),
        (354, ""),
    ]
    assert queued.code == 250 and "queued as" in queued.text
    assert bye.code == 221
    assert seen == ["mail-hook"]
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert b"around a coroutine hook" in delivered
