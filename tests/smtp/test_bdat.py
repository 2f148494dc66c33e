"""RFC 3030 CHUNKING: BDAT is count-framed; its content is kept verbatim, subject to
DATA's bare CR/LF and NUL rules unless the body is BINARYMIME.

The core yields a chunk's DataChunks first and then the Bdat event that owes the
reply, so the reply follows the data (§2).  Whatever the state, the announced octets
are consumed, so the session never reads message bytes as commands.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    Bdat,
    CommandError,
    ConnectionClosed,
    DataChunk,
    DataError,
    MailFrom,
    Noop,
    Reply,
    ServerOptions,
    State,
    codes,
)
from mailwright.smtp._data import ChunkRules

from .helpers import EHLO, ENVELOPE, QUEUED, Driver, lines, reject


def bdat(payload: bytes, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(payload), b" LAST" if last else b"") + payload


def test_single_last_chunk(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"Subject: x\r\n\r\nhello\r\n", last=True))
    assert d.merged[-2:] == [DataChunk(b"Subject: x\r\n\r\nhello\r\n"), Bdat(21, last=True)]
    assert d.replies[-1] == QUEUED
    assert d.state is State.READY
    assert d.conn.transaction.mail is None  # the transaction is over


def test_several_chunks(mode: str) -> None:
    d = Driver(mode)
    d.feed(ENVELOPE + bdat(b"one\r\n"))
    assert d.state is State.BDAT
    assert d.conn.transaction.bdat_size == 5
    d.feed(bdat(b"two\r\n"))
    assert d.state is State.BDAT
    d.feed(bdat(b"three\r\n", last=True))
    assert d.state is State.READY
    assert d.content == b"one\r\ntwo\r\nthree\r\n"
    bdats = d.of_type(Bdat)
    assert bdats == [Bdat(5), Bdat(5), Bdat(7, last=True)]
    assert d.replies_to(Bdat) == [codes.R250_OK, codes.R250_OK, QUEUED]
    assert d.wire.endswith(b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok: queued\r\n")


def test_bdat_zero_last_ends_the_message(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"body\r\n") + b"BDAT 0 LAST\r\n")
    assert d.of_type(Bdat) == [Bdat(6), Bdat(0, last=True)]
    assert d.content == b"body\r\n"
    assert d.state is State.READY


def test_empty_message_with_bdat_zero_last(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"BDAT 0 LAST\r\n" + lines("NOOP"))
    assert d.of_type(Bdat) == [Bdat(0, last=True)]
    assert d.content == b""
    assert d.replies[-2:] == [QUEUED, codes.R250_OK]


def test_bdat_zero_not_last_is_accepted(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"BDAT 0\r\n")
    assert d.of_type(Bdat) == [Bdat(0)]
    assert d.state is State.BDAT


def test_lowercase_last(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"bdat 2 last\r\nhi")
    assert d.of_type(Bdat) == [Bdat(2, last=True)]


@pytest.mark.parametrize(
    "payload",
    [
        b"a\r\n.\r\nMAIL FROM:<evil@x.example>\r\n",  # a DATA terminator is content
        b"\xff 8-bit \r\n..\r\n.",  # dots are not unstuffed, no final CRLF needed
    ],
)
def test_content_is_verbatim(mode: str, payload: bytes) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(payload, last=True) + lines("NOOP"))
    assert d.content == payload
    assert d.of_type(Bdat) == [Bdat(len(payload), last=True)]
    assert [str(m.address) for m in d.of_type(MailFrom)] == ["alice@a.example"]
    assert d.replies[-2:] == [QUEUED, codes.R250_OK]


BINARY_ENVELOPE = EHLO + lines("MAIL FROM:<a@a.example> BODY=BINARYMIME", "RCPT TO:<b@b.example>")


def test_binarymime_with_bdat(mode: str) -> None:
    d = Driver(mode).feed(BINARY_ENVELOPE + bdat(b"\x00\x01", True))
    assert d.content == b"\x00\x01"
    assert d.replies[-1] == QUEUED


# -- the DATA content rules outside BINARYMIME (issue 8 item 14) ---------------------
#
# Once relayed over DATA, a BDAT body is lines again: bare CR/LF or a NUL stored here
# could end or split the message differently at the next hop (CVE-2023-51764 class).

# The body: a bare LF, a fake "\n.\n" end of data, a second transaction, a NUL.
SMUGGLING_BODY = (
    b"Subject: hi\r\n\r\nfirst\n.\nMAIL FROM:<admin@bank.example>\r\n"
    b"RCPT TO:<victim@b.example>\r\nDATA\r\nsmuggled\x00\r\n"
)


def assert_bare_refused(d: Driver, content: bytes) -> None:
    """521 5.5.2 as in DATA, the session closed, nothing kept from the offending octet."""
    (event,) = [e for e in d.of_type(Bdat) if e.error is not None]
    assert event.error is DataError.BARE_LINE_ENDING
    assert d.replies[-1] == codes.R521_BARE_LINE_ENDING
    assert d.state is State.CLOSED
    assert d.content == content


def test_bdat_smuggling_body_is_refused_like_data(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(SMUGGLING_BODY, last=True) + lines("NOOP"))
    assert_bare_refused(d, b"Subject: hi\r\n\r\nfirst")
    assert d.replies_to(Noop) == []  # nothing after the 521 is read as a command


@pytest.mark.parametrize(
    ("chunks", "kept"),
    [
        ([b"a\nb"], b"a"),  # bare LF
        ([b"a\rb"], b"a\r"),  # bare CR: shown by the octet after it
        ([b"a\r", b"b\r\n"], b"a\r"),  # CR ending one chunk, no LF starting the next
        ([b"a\r\r\n"], b"a\r"),
        ([b"a\r\n", b"\n"], b"a\r\n"),  # LF starting a chunk, no CR before it
        ([b"a\r"], b"a\r"),  # CR ending the message
    ],
)
def test_bdat_bare_line_ending_is_refused(mode: str, chunks: list[bytes], kept: bytes) -> None:
    data = b"".join(bdat(c, last=i == len(chunks) - 1) for i, c in enumerate(chunks))
    d = Driver(mode).feed(ENVELOPE + data)
    assert_bare_refused(d, kept)


def test_bdat_crlf_split_across_chunks_is_accepted(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"a\r") + bdat(b"\nb\r") + bdat(b"\n", last=True))
    assert d.replies_to(Bdat) == [codes.R250_OK, codes.R250_OK, QUEUED]
    assert d.content == b"a\r\nb\r\n"


def test_bdat_nul_is_refused_and_session_continues(mode: str) -> None:
    d = Driver(mode).feed(
        ENVELOPE + bdat(b"x\r\n\x00y") + bdat(b"z\r\n", last=True) + lines("NOOP")
    )
    # The chunk with the NUL fails the transaction (RFC 3030 §2); the next BDAT has
    # no transaction left, and the stream stays in step.
    assert d.of_type(Bdat)[0] == Bdat(5, error=DataError.NUL)
    assert d.replies_to(Bdat) == [codes.R554_NUL_IN_DATA]
    assert d.command_errors == [codes.R503_NEED_MAIL]
    assert d.replies_to(Noop) == [codes.R250_OK]
    assert d.content == b"x\r\n"
    assert d.state is State.READY


@pytest.mark.parametrize("payload", [SMUGGLING_BODY, b"a\rb\r", b"\n\x00\r"])
def test_binarymime_bdat_keeps_bytes_exact(mode: str, payload: bytes) -> None:
    d = Driver(mode).feed(BINARY_ENVELOPE + bdat(payload[:5]) + bdat(payload[5:], last=True))
    assert d.content == payload
    assert d.replies[-1] == QUEUED


def test_pipelined_chunks(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"12345") + bdat(b"678", last=True) + lines("QUIT"))
    assert d.content == b"12345678"
    assert d.replies[-3:] == [codes.R250_OK, QUEUED, codes.R221_BYE]


def test_more_bytes_than_declared_are_read_as_commands(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"BDAT 5 LAST\r\nhelloEXTRA\r\nNOOP\r\n")
    assert d.content == b"hello"
    assert d.of_type(CommandError) == [CommandError(codes.R500_UNRECOGNIZED, b"EXTRA")]
    # Replies stay in step with the commands: chunk, the stray line, then the NOOP.
    assert d.replies[-3:] == [QUEUED, codes.R500_UNRECOGNIZED, codes.R250_OK]
    assert isinstance(d.answers[-1].event, Noop)


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (EHLO, codes.R503_NEED_MAIL),
        (EHLO + lines("MAIL FROM:<a@a.example>"), codes.R503_NEED_RCPT),
        (b"", codes.R503_SEND_HELO_FIRST),
    ],
    ids=["before-mail", "before-rcpt", "before-ehlo"],
)
def test_bdat_out_of_sequence_consumes_the_chunk(mode: str, setup: bytes, error: Reply) -> None:
    # The chunk could hold "MAIL FROM:..." lines: they must not run as commands.
    chunk = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@b.example>\r\n"
    d = Driver(mode).feed(setup + bdat(chunk, last=True) + lines("NOOP"))
    assert d.command_errors == [error]
    assert d.content == b""  # a refused chunk is not handed over
    assert not any(str(m.address) == "evil@x.example" for m in d.of_type(MailFrom))
    assert d.replies[-2:] == [error, codes.R250_OK]
    assert d.state is not State.CLOSED


def test_data_after_bdat_is_503(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"abc") + lines("DATA"))
    assert d.command_errors == [codes.R503_DATA_AFTER_BDAT]
    assert d.state is State.BDAT
    d.feed(bdat(b"def", last=True))
    assert d.content == b"abcdef"


def test_mail_inside_bdat_transaction_is_nested(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"abc") + lines("MAIL FROM:<c@c.example>"))
    assert d.command_errors == [codes.R503_NESTED_MAIL]


def test_rset_ends_a_bdat_transaction(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + bdat(b"abc") + lines("RSET") + bdat(b"x", True))
    assert d.state is State.READY
    assert d.command_errors == [codes.R503_NEED_MAIL]
    assert d.conn.transaction.bdat_size == 0


def test_refused_chunk_ends_the_transaction(mode: str) -> None:
    # RFC 3030 §2: after a failed BDAT the transaction is over.
    refused = Reply.of(451, "4.3.0", "Try again")
    d = Driver(mode, policy=reject(Bdat, refused)).feed(ENVELOPE + bdat(b"abc") + bdat(b"d"))
    assert d.replies_to(Bdat) == [refused]
    assert d.command_errors == [codes.R503_NEED_MAIL]
    assert d.state is State.READY


def test_overflow_in_one_chunk(mode: str) -> None:
    d = Driver(mode, options=ServerOptions(max_message_size=10))
    d.feed(ENVELOPE + bdat(b"x" * 25, last=True) + lines("MAIL FROM:<a@a.example>"))
    (event,) = d.of_type(Bdat)
    assert event == Bdat(25, last=True, error=DataError.TOO_BIG)
    assert len(d.content) <= 10
    assert d.replies[-2:] == [codes.R552_TOO_BIG, codes.R250_SENDER_OK]
    assert d.state is State.MAIL


def test_overflow_across_chunks(mode: str) -> None:
    d = Driver(mode, options=ServerOptions(max_message_size=10))
    d.feed(ENVELOPE + bdat(b"x" * 6) + bdat(b"y" * 6, last=True) + lines("NOOP"))
    assert d.of_type(Bdat) == [Bdat(6), Bdat(6, last=True, error=DataError.TOO_BIG)]
    assert d.content == b"x" * 6 + b"y" * 4  # never more than the limit
    assert d.replies[-3:] == [codes.R250_OK, codes.R552_TOO_BIG, codes.R250_OK]
    assert d.state is State.READY


def test_exactly_the_limit_is_fine(mode: str) -> None:
    d = Driver(mode, options=ServerOptions(max_message_size=10))
    d.feed(ENVELOPE + bdat(b"x" * 4) + bdat(b"y" * 6, last=True))
    assert [b.error for b in d.of_type(Bdat)] == [None, None]


@pytest.mark.parametrize(
    "command",
    [
        b"BDAT",
        b"BDAT x",
        b"BDAT 5 NOTLAST",
        b"BDAT -1",
        b"BDAT 1 LAST extra",
        b"BDAT 1.5",
        b"BDAT \xc2\xb2",
        b"BDAT 12345678901",
    ],
)
def test_malformed_bdat_closes(mode: str, command: bytes) -> None:
    # Without a chunk size the stream cannot be framed: answer, then close.
    d = Driver(mode).feed(ENVELOPE + command + b"\r\nMAIL FROM:<evil@x.example>\r\n")
    assert d.command_errors[0].code == 501
    assert d.state is State.CLOSED
    assert len(d.of_type(MailFrom)) == 1


def test_chunk_beyond_max_bdat_chunk_closes(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"BDAT 9999999999\r\n")
    assert (d.command_errors[0].code, d.command_errors[0].enhanced) == (552, "5.3.4")
    assert d.state is State.CLOSED


def test_bdat_not_advertised(mode: str) -> None:
    options = ServerOptions(extensions=DEFAULT_EXTENSIONS - {"CHUNKING", "BINARYMIME"})
    d = Driver(mode, options=options)
    d.feed(ENVELOPE + b"BDAT 28 LAST\r\nMAIL FROM:<evil@x.example>\r\n")
    assert d.command_errors == [codes.R500_UNRECOGNIZED]
    assert b"CHUNKING" not in bytes(d.output)
    # The core then closes: the octets that follow are a message, not commands.
    assert d.state is State.CLOSED
    assert len(d.of_type(MailFrom)) == 1


def test_eof_inside_a_chunk(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + b"BDAT 100 LAST\r\nonly some")
    d.eof()
    assert isinstance(d.events[-1], ConnectionClosed)
    assert not d.of_type(Bdat)


def reference_rules(body: bytes) -> tuple[int, DataError | None]:
    """The rule spelt out octet by octet: where the first error shows, and which."""
    for i, byte in enumerate(body):
        if byte == 10 and (i == 0 or body[i - 1] != 13):
            return i, DataError.BARE_LINE_ENDING
        if i > 0 and body[i - 1] == 13 and byte != 10:
            return i, DataError.BARE_LINE_ENDING
        if byte == 0:
            return i, DataError.NUL
    if body.endswith(b"\r"):
        return len(body), DataError.BARE_LINE_ENDING
    return len(body), None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\x00", b"."]), max_size=20).map(
        b"".join
    ),
    st.lists(st.integers(0, 40), max_size=6),
)
def test_chunk_rules_agree_with_the_octet_rule_however_split(body: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    rules = ChunkRules()
    seen = 0
    result: tuple[int, DataError | None] = (len(body), None)
    for piece in pieces:
        clean, error = rules.check(piece)
        if error is not None:
            result = (seen + clean, error)
            break
        seen += len(piece)
    else:
        if (error := rules.finish()) is not None:
            result = (len(body), error)
    assert result == reference_rules(body)
