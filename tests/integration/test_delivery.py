"""End to end over real sockets: a client sends, the server queues (250 "queued as
ID"), the queue runner delivers, and the message is in the right Maildir with the
trace headers.  Clients: stdlib smtplib and aiosmtplib (independent implementations)
and a raw socket where byte-exactness matters (BDAT)."""

from __future__ import annotations

import asyncio
import re
import time

import aiosmtplib
import pytest

from helpers.fixtures import MakeServer
from helpers.servers import (
    CATCHALL,
    DELIVERY_TIMEOUT,
    EXAMPLE,
    HOSTNAME,
    UTF8_BOX,
    InProcessServer,
    in_maildir,
)
from helpers.wire import (
    CLIENT_NAME,
    RawSMTP,
    expect,
    message,
    queue_id_of,
    smtplib_client,
)
from mailwright.smtp import codes

SENDER = "sender@remote.test"


@pytest.fixture(params=[False, True], ids=["runner-in-server", "worker-process"])
def server(request: pytest.FixtureRequest, make_server: MakeServer) -> InProcessServer:
    """Every delivery path twice: with the queue runner in the server's process (the
    suite's fast default) and in a delivery worker process, as ``serve`` runs by
    default (``delivery.worker``): the Maildir bytes, trace headers and mail-log lines
    must not depend on the process that delivers."""
    return make_server(worker=request.param)


def send(
    server: InProcessServer,
    rcpts: list[str],
    msg: bytes,
    sender: str = SENDER,
    mail_options: list[str] | None = None,
) -> str:
    """MAIL, RCPT..., DATA with smtplib; every step must succeed; returns the queue id."""
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(sender, mail_options or []), codes.R250_SENDER_OK)
        for rcpt in rcpts:
            expect(client.rcpt(rcpt), codes.R250_RECIPIENT_OK)
        code, text = client.data(msg)
        assert code == 250, text
        queue_id = queue_id_of(text)
        assert text == f"2.0.0 Ok: queued as {queue_id}".encode()
        client.quit()
    return queue_id


def split_trace(delivered: bytes, original: bytes) -> bytes:
    """The headers we prepended; asserts the rest is the original byte for byte, in the
    Maildir's LF form."""
    stored = in_maildir(original)
    assert delivered.endswith(stored), delivered
    return delivered[: len(delivered) - len(stored)]


def received_re(queue_id: str, rcpt: str | None, protocol: str = "ESMTP") -> re.Pattern[bytes]:
    for_part = f"\n\tfor <{re.escape(rcpt)}>;" if rcpt else ";"
    return re.compile(
        (
            f"Received: from {CLIENT_NAME} \\(\\[127\\.0\\.0\\.1\\]\\)\n"
            f"\tby {re.escape(HOSTNAME)} \\(mailwright\\) with {protocol} id {queue_id}"
            f"{for_part}\n\t[A-Z][a-z]{{2}}, \\d\\d? [A-Z][a-z]{{2}} \\d{{4}} "
            "\\d\\d:\\d\\d:\\d\\d \\+0000\n$"
        ).encode()
    )


def assert_trace(
    trace: bytes,
    *,
    mail_from: str,
    delivered_to: str,
    queue_id: str,
    rcpt: str | None,
    protocol: str = "ESMTP",
) -> None:
    head = f"Return-Path: <{mail_from}>\nDelivered-To: {delivered_to}\n".encode()
    assert trace.startswith(head), trace
    assert received_re(queue_id, rcpt, protocol).fullmatch(trace[len(head) :]), trace


def test_smtplib_message_is_queued_then_delivered_with_trace_headers(server):
    msg = message("basic", b"Hello Alice.\r\n.leading dot survives\r\n")
    queue_id = send(server, ["alice@example.test"], msg)
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    trace = split_trace(delivered, msg)
    assert_trace(
        trace,
        mail_from=SENDER,
        delivered_to="alice@example.test",
        queue_id=queue_id,
        rcpt="alice@example.test",
    )
    assert server.message_files(EXAMPLE, "bob") == []
    # Delivered means removed from the queue.
    assert server.maildir_messages(EXAMPLE, "alice", count=2, timeout=0.2) == [delivered]


def test_aiosmtplib_send_is_delivered(server):
    msg = message("aiosmtplib")

    async def go() -> tuple[dict, str]:
        return await aiosmtplib.send(
            msg,
            sender=SENDER,
            recipients=["bob@example.test"],
            hostname=server.host,
            port=server.port,
            start_tls=False,
            local_hostname=CLIENT_NAME,
            timeout=5,
        )

    errors, text = asyncio.run(go())
    assert errors == {}
    queue_id = queue_id_of(text)
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert_trace(
        split_trace(delivered, msg),
        mail_from=SENDER,
        delivered_to="bob@example.test",
        queue_id=queue_id,
        rcpt="bob@example.test",
    )


def test_null_sender_gets_empty_return_path(server):
    msg = message("bounce")
    queue_id = send(server, ["alice@example.test"], msg, sender="")
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert_trace(
        split_trace(delivered, msg),
        mail_from="",
        delivered_to="alice@example.test",
        queue_id=queue_id,
        rcpt="alice@example.test",
    )


def test_alias_fans_out_to_each_member_once(server):
    msg = message("alias")
    # alice is reached twice (directly and through team): she still gets one copy.
    queue_id = send(server, ["team@example.test", "alice@example.test"], msg)
    [to_alice] = server.maildir_messages(EXAMPLE, "alice")
    [to_bob] = server.maildir_messages(EXAMPLE, "bob")
    for delivered, box in ((to_alice, "alice"), (to_bob, "bob")):
        assert_trace(
            split_trace(delivered, msg),
            mail_from=SENDER,
            delivered_to=f"{box}@{EXAMPLE}",
            queue_id=queue_id,
            rcpt=None,
        )
    assert len(server.maildir_messages(EXAMPLE, "alice", count=2, timeout=0.3)) == 1


def test_plus_address_goes_to_the_base_mailbox(server):
    msg = message("plus")
    queue_id = send(server, ["alice+lists@example.test"], msg)
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert_trace(
        split_trace(delivered, msg),
        mail_from=SENDER,
        delivered_to="alice@example.test",
        queue_id=queue_id,
        rcpt="alice+lists@example.test",
    )
    assert server.message_files(EXAMPLE, "bob") == []


def test_catch_all_receives_any_local_part(server):
    msg = message("catchall")
    queue_id = send(server, ["whoever-123@catchall.test"], msg)
    [delivered] = server.maildir_messages(CATCHALL, "sink")
    assert_trace(
        split_trace(delivered, msg),
        mail_from=SENDER,
        delivered_to="sink@catchall.test",
        queue_id=queue_id,
        rcpt="whoever-123@catchall.test",
    )


def test_unknown_local_user_is_refused_at_rcpt(make_server):
    server = make_server()  # nothing is delivered: one process mode is enough
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("nobody@example.test"), codes.R550_NO_SUCH_USER)
        # The transaction goes on with the recipients that were accepted.
        expect(client.rcpt("bob@example.test"), codes.R250_RECIPIENT_OK)
        code, _ = client.data(message("after-550"))
        assert code == 250
    assert len(server.maildir_messages(EXAMPLE, "bob")) == 1


def test_non_local_domain_is_not_relayed(make_server):
    server = make_server()  # nothing is delivered: one process mode is enough
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("alice@elsewhere.test"), codes.R550_RELAY_DENIED)
        # With no accepted recipient there is no transaction to send.
        expect(client.docmd("DATA"), codes.R554_NO_VALID_RECIPIENTS)
    server.assert_nothing_stored()


def test_many_recipients_in_one_transaction(server):
    rcpts = [f"alice+{i}@example.test" for i in range(60)]
    rcpts += [f"bob+{i}@example.test" for i in range(60)]
    rcpts += [f"user{i}@catchall.test" for i in range(80)]
    msg = message("many")
    queue_id = send(server, rcpts, msg)
    for domain, box in ((EXAMPLE, "alice"), (EXAMPLE, "bob"), (CATCHALL, "sink")):
        [delivered] = server.maildir_messages(domain, box)
        assert f" id {queue_id};".encode() in delivered  # several recipients: no "for"
    # Each of the 200 recipients is reported delivered in the mail log.
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    log = server.mail_log()
    while log.count(f"{queue_id}: delivered") < len(rcpts) and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.mail_log()
    delivered_to = re.findall(rf"{queue_id}: delivered to=<([^>]+)>", log)
    assert sorted(delivered_to) == sorted(rcpts)


def test_8bitmime_body_is_delivered_byte_exact(server):
    body = bytes(range(0x80, 0x100)) + b"\r\n" + "Grüße, 日本語\r\n".encode() + b"..dots\r\n"
    msg = message(
        "8bit",
        body,
        extra=b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
    )
    queue_id = send(server, ["alice@example.test"], msg, mail_options=["BODY=8BITMIME"])
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert delivered.endswith(in_maildir(msg))  # octets >= 0x80 intact, dots unstuffed
    assert_trace(
        split_trace(delivered, msg),
        mail_from=SENDER,
        delivered_to="alice@example.test",
        queue_id=queue_id,
        rcpt="alice@example.test",
    )


def test_smtputf8_mailbox_receives_utf8_envelope(server):
    sender = "отправитель@remote.test"
    rcpt = f"{UTF8_BOX}@example.test"
    msg = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: 你好\r\n\r\n正文\r\n").encode()
    queue_id = send(server, [rcpt], msg, sender=sender, mail_options=["SMTPUTF8"])
    [delivered] = server.maildir_messages(EXAMPLE, UTF8_BOX)
    assert_trace(
        split_trace(delivered, msg),
        mail_from=sender,
        delivered_to=rcpt,
        queue_id=queue_id,
        rcpt=rcpt,
        protocol="UTF8SMTP",
    )


def test_utf8_local_part_reaches_the_catch_all(server):
    rcpt = "δοκιμή@catchall.test"
    msg = message("utf8-catchall")
    queue_id = send(server, [rcpt], msg, mail_options=["SMTPUTF8"])
    [delivered] = server.maildir_messages(CATCHALL, "sink")
    assert_trace(
        split_trace(delivered, msg),
        mail_from=SENDER,
        delivered_to="sink@catchall.test",
        queue_id=queue_id,
        rcpt=rcpt,
        protocol="UTF8SMTP",
    )


def test_utf8_address_without_smtputf8_is_refused(make_server):
    server = make_server()  # nothing is delivered: one process mode is enough
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        assert raw.cmd(f"MAIL FROM:<{SENDER}>").matches(codes.R250_SENDER_OK)
        assert raw.cmd(f"RCPT TO:<{UTF8_BOX}@example.test>").matches(codes.R553_UTF8_NOT_ALLOWED)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"single chunk only\r\n"],
        # BDAT is binary-transparent: bare LF/CR, a lone "." line and 8-bit octets are
        # data, and chunk boundaries may fall anywhere (inside CRLF here: the Maildir
        # file has one LF there, as for every other CRLF pair).
        [b"part one\r", b"\npart two\n", b".\r\n", bytes(range(256)), b"\r\nend\r\n"],
    ],
    ids=["one", "many"],
)
def test_bdat_chunks_are_delivered_byte_exact(server, chunks):
    headers = b"From: sender@remote.test\r\nSubject: bdat\r\n\r\n"
    body = headers + b"".join(chunks)
    pieces = [headers, *chunks]
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        assert "CHUNKING" in raw.ehlo().lines
        assert raw.cmd(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME").matches(codes.R250_SENDER_OK)
        assert raw.cmd("RCPT TO:<alice@example.test>").matches(codes.R250_RECIPIENT_OK)
        for piece in pieces[:-1]:
            raw.send(f"BDAT {len(piece)}\r\n".encode() + piece)
            reply = raw.reply()
            assert (reply.code, reply.text) == (250, f"2.0.0 {len(piece)} octets received")
        raw.send(f"BDAT {len(pieces[-1])} LAST\r\n".encode() + pieces[-1])
        last = raw.reply()
        assert last.code == 250
        queue_id = queue_id_of(last.text)
        assert raw.cmd("QUIT").matches(codes.R221_BYE)
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert_trace(
        split_trace(delivered, body),
        mail_from=SENDER,
        delivered_to="alice@example.test",
        queue_id=queue_id,
        rcpt="alice@example.test",
    )


def test_bdat_zero_last_ends_the_message(server):
    body = b"Subject: bdat0\r\n\r\nend with an empty chunk\r\n"
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<bob@example.test>\r\nBDAT {len(body)}\r\n".encode()
            + body
            + b"BDAT 0 LAST\r\n"
        )
        mail, rcpt, chunk, last = raw.replies(4)
        assert mail.matches(codes.R250_SENDER_OK) and rcpt.matches(codes.R250_RECIPIENT_OK)
        assert chunk.code == 250 and last.code == 250
        queue_id_of(last.text)
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert delivered.endswith(in_maildir(body))


def test_session_sends_several_messages(server):
    with smtplib_client(server.host, server.port) as client:
        for i in range(3):
            assert client.sendmail(SENDER, ["bob@example.test"], message(f"m{i}")) == {}
    messages = server.maildir_messages(EXAMPLE, "bob", count=3)
    assert sorted(m.split(b"Subject: ")[1][:2] for m in messages) == [b"m0", b"m1", b"m2"]


def test_disconnect_line_counts_the_session_messages(server):
    """The mail log's disconnect line says how many messages the session stored."""
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        for n in range(2):
            assert client.sendmail(SENDER, ["bob@example.test"], message(f"count {n}")) == {}
        client.quit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and " disconnect " not in server.mail_log():
        time.sleep(0.05)
    [line] = [ln for ln in server.mail_log().splitlines() if " disconnect " in ln]
    assert "messages=2" in line and "errors=0" in line, line
