"""The client core in LMTP mode (RFC 2033): LHLO instead of EHLO, and one reply per
accepted recipient after the end of the data, whole and one byte at a time."""

from __future__ import annotations

import pytest

from mailwright.smtp import (
    Address,
    Bdat,
    ClientConnection,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    LocalProtocolError,
    MailFrom,
    Quit,
    RcptTo,
    State,
)

from .helpers import MODES, ClientDriver

ALICE = Address("alice", "a.example")
RCPTS = [Address(n, "b.example") for n in ("bob", "carol", "dave")]
LHLO_OK = b"220 lmtp.example LMTP ready\r\n250-lmtp.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n"


def lmtp_ready(mode: str) -> ClientDriver:
    client = ClientDriver(mode, lmtp=True)
    assert client.send(Ehlo("c.example")) == b"LHLO c.example\r\n"
    client.feed(LHLO_OK)
    assert client.state is State.READY
    return client


def test_helo_does_not_exist_in_lmtp() -> None:
    conn = ClientConnection(lmtp=True)
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.send(Helo("c.example"))


def test_smtp_mode_still_writes_ehlo() -> None:
    assert ClientConnection().send(Ehlo("c.example")) == b"EHLO c.example\r\n"


@pytest.mark.parametrize("mode", MODES)
def test_one_reply_per_accepted_recipient_after_the_dot(mode: str) -> None:
    client = lmtp_ready(mode)
    client.send(MailFrom(ALICE), *(RcptTo(r) for r in RCPTS), Data())
    # carol refused: two replies after the dot, in RCPT order (RFC 2033 §4.2).
    client.feed(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no carol\r\n250 2.1.5 ok\r\n354 go\r\n")
    assert client.state is State.DATA and client.conn.accepted_recipients == 2
    client.send(DataChunk(b"Subject: x\r\n\r\nhi\r\n"), EndOfData(0))
    assert client.conn.pending == 1  # the second is known once the first is in
    replies = client.feed(b"250 2.0.0 bob ok\r\n")
    assert [r.text for r in replies] == ["bob ok"]
    assert client.conn.pending == 1 and client.state is State.READY
    replies = client.feed(b"452 4.2.2 dave over quota\r\n")
    assert [(r.code, r.text) for r in replies] == [(452, "dave over quota")]
    assert client.conn.pending == 0 and client.conn.accepted_recipients == 0
    # In step for the next transaction: one RCPT, one reply after the dot.
    client.send(MailFrom(ALICE), RcptTo(RCPTS[0]), Data())
    client.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(EndOfData(0))
    client.feed(b"250 2.0.0 ok\r\n")
    assert client.conn.pending == 0
    client.send(Quit())
    client.feed(b"221 bye\r\n")
    assert client.state is State.CLOSED


@pytest.mark.parametrize("mode", MODES)
def test_bdat_last_is_answered_per_recipient(mode: str) -> None:
    client = lmtp_ready(mode)
    client.send(MailFrom(ALICE), *(RcptTo(r) for r in RCPTS))
    client.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n")
    client.send(Bdat(3), DataChunk(b"abc"), Bdat(2, last=True), DataChunk(b"\r\n"))
    replies = client.feed(b"250 2.0.0 3 octets\r\n250 a\r\n250 b\r\n451 4.3.0 c\r\n")
    assert [r.text for r in replies] == ["3 octets", "a", "b", "c"]
    assert client.conn.pending == 0 and client.state is State.READY


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_chunk_ends_the_transaction_without_per_recipient_replies(mode: str) -> None:
    """RFC 3030 §2: a refused chunk ends the transaction; the BDAT LAST pipelined
    behind it is refused once, not once per recipient."""
    client = lmtp_ready(mode)
    client.send(MailFrom(ALICE), RcptTo(RCPTS[0]), RcptTo(RCPTS[1]))
    client.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    client.send(Bdat(3), DataChunk(b"abc"), Bdat(2, last=True), DataChunk(b"\r\n"))
    client.feed(b"552 5.3.4 too big\r\n503 5.5.1 no transaction\r\n")
    assert client.conn.pending == 0 and client.state is State.READY


@pytest.mark.parametrize("mode", MODES)
def test_421_after_the_dot_closes_and_owes_nothing_more(mode: str) -> None:
    client = lmtp_ready(mode)
    client.send(MailFrom(ALICE), RcptTo(RCPTS[0]), RcptTo(RCPTS[1]), Data())
    client.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(EndOfData(0))
    client.feed(b"421 4.3.2 shutting down\r\n")
    assert client.state is State.CLOSED and client.conn.pending == 0
