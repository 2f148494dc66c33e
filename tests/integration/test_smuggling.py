"""SMTP smuggling over a real socket (CVE-2023-51764 and relatives).

Each variant sends, in one pipelined write, a message whose body contains a *fake*
end-of-data followed by a complete smuggled transaction, then the real ``CRLF.CRLF``.
A vulnerable server splits it into two messages (the second with a forged sender).
mailwright must answer 521 5.5.2 at the first bare CR or LF and close, storing
nothing at all: neither the carrier message nor the smuggled one.
"""

from __future__ import annotations

import pytest

from helpers.servers import InProcessServer, in_maildir
from helpers.wire import RawSMTP
from mailwright.smtp import codes

FAKE_ENDINGS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CRLF.CR": b"\r\n.\r",
    "bare-LF": b"\n",
    "bare-CR": b"\r",
}

SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\n"
    b"RCPT TO:<bob@example.test>\r\n"
    b"DATA\r\n"
    b"From: ceo@example.test\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"Wire the money.\r\n"
)


@pytest.mark.parametrize("fake_end", FAKE_ENDINGS.values(), ids=FAKE_ENDINGS.keys())
def test_smuggled_transaction_is_refused_and_nothing_is_stored(
    server: InProcessServer, fake_end: bytes
):
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            b"MAIL FROM:<sender@remote.test>\r\n"
            b"RCPT TO:<alice@example.test>\r\n"
            b"DATA\r\n"
            b"From: sender@remote.test\r\n"
            b"Subject: carrier\r\n"
            b"\r\n"
            b"innocent text" + fake_end + SMUGGLED + b".\r\n"  # the real end of data
            b"QUIT\r\n"
        )
        mail, rcpt, data, verdict = raw.replies(4)
        assert mail.matches(codes.R250_SENDER_OK)
        assert rcpt.matches(codes.R250_RECIPIENT_OK)
        assert data.matches(codes.R354_START_DATA)
        assert verdict.matches(codes.R521_BARE_LINE_ENDING)
        # Closed right after the 521: the smuggled commands were never answered.
        assert raw.closed_by_peer()
        assert raw.buf == b""
    server.assert_nothing_stored()
    log = server.mail_log()
    assert " accepted " not in log


def test_bare_cr_command_after_an_empty_message_is_not_a_transaction(server: InProcessServer):
    """A message whose first line is "." is empty (RFC 5321 §4.1.1.4); what follows is
    read as commands, and a command line with a bare CR must not start a smuggled
    transaction (found by the sans-IO fuzz test with the body ".\r\n.\rMAIL ...")."""
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
            b".\r\n.\r" + SMUGGLED + b".\r\nQUIT\r\n"
        )
        mail, rcpt, data, end, smuggled_mail = raw.replies(5)
        assert mail.matches(codes.R250_SENDER_OK) and rcpt.matches(codes.R250_RECIPIENT_OK)
        assert data.matches(codes.R354_START_DATA)
        assert end.code == 250 and "queued as" in end.text  # the empty message
        assert smuggled_mail.matches(codes.R500_BAD_ENCODING)
        rest = []
        for _ in range(10):  # bounded: the payload holds fewer lines than this
            rest.append(raw.reply())
            if rest[-1].code == 221:
                break
        # RCPT and DATA find no transaction; the body lines are not commands.
        assert rest[0].matches(codes.R503_NEED_MAIL)
        assert rest[1].matches(codes.R503_NEED_MAIL)
        assert all(r.code >= 500 for r in rest[:-1]) and rest[-1].matches(codes.R221_BYE)
    [delivered] = server.maildir_messages("example.test", "alice")
    assert delivered.endswith(b" +0000\n")  # our trace headers only: the body is empty
    server.wait_settled()  # the session ended and its one message was delivered
    assert server.message_files("example.test", "bob") == []
    assert server.accepted_count() == 1


def test_clean_message_on_the_same_server_still_works(server: InProcessServer):
    """Control for the test above: the same payload with proper CRLFs is one message."""
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
            b"Subject: carrier\r\n\r\ninnocent text\r\n" + SMUGGLED + b".\r\nQUIT\r\n"
        )
        replies = raw.replies(5)
        assert replies[3].code == 250 and replies[4].matches(codes.R221_BYE)
    [delivered] = server.maildir_messages("example.test", "alice")
    # The "smuggled" commands are just body text of the one message.
    assert delivered.endswith(in_maildir(b"innocent text\r\n" + SMUGGLED))
    assert server.message_files("example.test", "bob") == []


# Issue 8 item 14: bodies that would smuggle once relayed over DATA.
RELAY_SMUGGLING_BODY = (
    b"From: sender@remote.test\r\nSubject: carrier\r\n\r\n"
    b"innocent text\n.\n" + SMUGGLED + b"NUL\x00here\r\n"
)


def test_bdat_body_with_bare_lf_is_refused_and_nothing_is_stored(server: InProcessServer):
    body = RELAY_SMUGGLING_BODY
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            + f"BDAT {len(body)} LAST\r\n".encode()
            + body
            + b"QUIT\r\n"
        )
        mail, rcpt, verdict = raw.replies(3)
        assert mail.matches(codes.R250_SENDER_OK) and rcpt.matches(codes.R250_RECIPIENT_OK)
        assert verdict.matches(codes.R521_BARE_LINE_ENDING)  # the same answer as DATA
        assert raw.closed_by_peer()
    server.assert_nothing_stored()
    assert " accepted " not in server.mail_log()


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_nul_in_message_is_refused_and_nothing_is_stored(server: InProcessServer, verb: str):
    body = b"From: sender@remote.test\r\nSubject: nul\r\n\r\nfirst\r\n\x00.\r\nsecond\r\n"
    if verb == "DATA":
        transfer = b"DATA\r\n" + body + b".\r\n"
    else:
        transfer = f"BDAT {len(body)} LAST\r\n".encode() + body
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\n" + transfer)
        replies = raw.replies(4 if verb == "DATA" else 3)
        assert replies[-1].matches(codes.R554_NUL_IN_DATA)
        # The stream stayed in step: the session goes on.
        assert raw.cmd("NOOP").matches(codes.R250_OK)
        assert raw.cmd("QUIT").matches(codes.R221_BYE)
    server.assert_nothing_stored()
    assert " accepted " not in server.mail_log()
