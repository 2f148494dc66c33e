"""Whole SMTP dialogs, byte for byte, in both feeding modes.

Each case is a list of client writes and the replies the server must give (after the
greeting), in order, plus the state the session ends in.  Writes are fed separately
(a client waiting for each reply) unless the case is about pipelining.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    NEED_DATA,
    PAUSED,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataError,
    Ehlo,
    EndOfData,
    Help,
    LocalProtocolError,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    ServerConnection,
    ServerOptions,
    State,
    Vrfy,
    codes,
    ehlo_reply,
)
from mailwright.smtp.limits import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_COMMAND_LINE,
    MAX_EXTENDED_COMMAND_LINE,
)

from .helpers import (
    EHLO,
    ENVELOPE,
    GREETING,
    HELO_OK,
    HELP_REPLY,
    HOSTNAME,
    QUEUED,
    Driver,
    lines,
    reject,
)

EHLO_OK = ehlo_reply(HOSTNAME, DEFAULT_EXTENSIONS, max_size=DEFAULT_MAX_MESSAGE_SIZE)
MAIL = "MAIL FROM:<alice@a.example>"
RCPT = "RCPT TO:<bob@b.example>"
BODY = b"Subject: hello\r\n\r\nHi Bob.\r\n.\r\n"
R554_DATA_REFUSED = Reply.of(554, "5.7.1", "Message refused")


@dataclass
class Case:
    id: str
    writes: list[bytes]
    expect: list[Reply | tuple[int, str]]  # exact Reply, or (code, enhanced)
    state: State
    kwargs: dict = field(default_factory=dict)


def w(*commands: str | bytes) -> list[bytes]:
    """One write per command line (a client that waits for every reply)."""
    return [lines(c) for c in commands]


CASES = [
    Case(
        "classic",
        [*w("EHLO client.example", MAIL, RCPT, "DATA"), BODY, *w("QUIT")],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R221_BYE,
        ],
        State.CLOSED,
    ),
    Case(
        "helo",
        [*w("HELO client.example", MAIL, RCPT, "DATA"), BODY, *w("QUIT")],
        [
            HELO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R221_BYE,
        ],
        State.CLOSED,
    ),
    Case(
        "pipelining_whole_transaction_in_one_write",
        [
            lines("EHLO client.example", MAIL, RCPT, "RCPT TO:<carol@c.example>", "DATA")
            + BODY
            + lines("QUIT")
        ],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R221_BYE,
        ],
        State.CLOSED,
    ),
    Case(
        "two_messages_in_one_session",
        [ENVELOPE + lines("DATA") + BODY + lines(MAIL, RCPT, "DATA") + BODY],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
        ],
        State.READY,
    ),
    Case(
        "rset_ends_transaction",
        w("EHLO client.example", MAIL, RCPT, "RSET", RCPT),
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R250_RESET,
            codes.R503_NEED_MAIL,
        ],
        State.READY,
    ),
    Case("rset_before_helo", w("RSET"), [codes.R250_RESET], State.NEED_HELO),
    Case(
        "noop_anywhere",
        w("NOOP", "EHLO client.example", MAIL, "NOOP keepalive"),
        [codes.R250_OK, EHLO_OK, codes.R250_SENDER_OK, codes.R250_OK],
        State.MAIL,
    ),
    Case(
        "help_is_the_apps_reply_and_changes_nothing",
        w("EHLO client.example", MAIL, "HELP", "HELP MAIL"),
        [EHLO_OK, codes.R250_SENDER_OK, HELP_REPLY, HELP_REPLY],
        State.MAIL,
    ),
    Case(
        "vrfy_expn",
        w("EHLO client.example", "VRFY bob", "EXPN staff", "VRFY", "EXPN"),
        [EHLO_OK, codes.R252_CANNOT_VRFY, codes.R502_EXPN_DISABLED, (501, "5.5.4"), (501, "5.5.4")],
        State.READY,
    ),
    Case(
        "unknown_command",
        w("EHLO client.example", "XYZZY plugh"),
        [EHLO_OK, codes.R500_UNRECOGNIZED],
        State.READY,
    ),
    Case("mail_before_ehlo", w(MAIL), [codes.R503_SEND_HELO_FIRST], State.NEED_HELO),
    Case("rcpt_before_ehlo", w(RCPT), [codes.R503_SEND_HELO_FIRST], State.NEED_HELO),
    Case("data_before_ehlo", w("DATA"), [codes.R503_SEND_HELO_FIRST], State.NEED_HELO),
    Case(
        "rcpt_before_mail",
        w("EHLO client.example", RCPT),
        [EHLO_OK, codes.R503_NEED_MAIL],
        State.READY,
    ),
    Case(
        "data_before_mail",
        w("EHLO client.example", "DATA"),
        [EHLO_OK, codes.R503_NEED_MAIL],
        State.READY,
    ),
    Case(
        "data_before_rcpt",
        w("EHLO client.example", MAIL, "DATA"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R554_NO_VALID_RECIPIENTS],
        State.MAIL,
    ),
    Case(
        "nested_mail",
        w("EHLO client.example", MAIL, MAIL),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R503_NESTED_MAIL],
        State.MAIL,
    ),
    Case(
        "nested_mail_after_rcpt",
        w("EHLO client.example", MAIL, RCPT, MAIL),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK, codes.R503_NESTED_MAIL],
        State.RCPT,
    ),
    Case(
        "mail_without_brackets",
        w("EHLO client.example", "MAIL FROM:alice@a.example"),
        [EHLO_OK, (501, "5.5.4")],
        State.READY,
    ),
    Case(
        "mail_without_from",
        w("EHLO client.example", "MAIL <alice@a.example>"),
        [EHLO_OK, (501, "5.5.4")],
        State.READY,
    ),
    Case(
        "mail_bad_sender_syntax",
        w("EHLO client.example", "MAIL FROM:<a..b@a.example>"),
        [EHLO_OK, (501, "5.1.7")],
        State.READY,
    ),
    Case(
        "rcpt_bad_recipient_syntax",
        w("EHLO client.example", MAIL, "RCPT TO:<bob@>"),
        [EHLO_OK, codes.R250_SENDER_OK, (501, "5.1.3")],
        State.MAIL,
    ),
    Case(
        "rcpt_null_path",
        w("EHLO client.example", MAIL, "RCPT TO:<>"),
        [EHLO_OK, codes.R250_SENDER_OK, (501, "5.1.3")],
        State.MAIL,
    ),
    Case("ehlo_without_domain", w("EHLO"), [(501, "5.5.4")], State.NEED_HELO),
    Case("helo_with_two_words", w("HELO a b"), [(501, "5.5.4")], State.NEED_HELO),
    Case(
        "data_with_argument",
        w("EHLO client.example", MAIL, RCPT, "DATA now"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK, (501, "5.5.4")],
        State.RCPT,
    ),
    Case(
        "unknown_parameter",
        w("EHLO client.example", MAIL + " FOO=1"),
        [EHLO_OK, (555, "5.5.4")],
        State.READY,
    ),
    Case(
        "duplicate_parameter",
        w("EHLO client.example", MAIL + " SIZE=1 size=2"),
        [EHLO_OK, (501, "5.5.4")],
        State.READY,
    ),
    Case(
        "size_too_big_at_mail",
        w("EHLO client.example", MAIL + " SIZE=1001", MAIL + " SIZE=1000"),
        [(250, ""), codes.R552_TOO_BIG, codes.R250_SENDER_OK],
        State.MAIL,
        {"options": ServerOptions(max_message_size=1000)},
    ),
    Case(
        "max_recipients",
        w(
            "EHLO client.example",
            MAIL,
            "RCPT TO:<a@x.example>",
            "RCPT TO:<b@x.example>",
            "RCPT TO:<c@x.example>",
        ),
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R250_RECIPIENT_OK,
            codes.R452_TOO_MANY_RECIPIENTS,
        ],
        State.RCPT,
        {"options": ServerOptions(max_recipients=2)},
    ),
    Case(
        "refused_recipients_do_not_count_against_the_limit",
        w(
            "EHLO client.example",
            MAIL,
            "RCPT TO:<nobody@x.example>",
            "RCPT TO:<a@x.example>",
            "RCPT TO:<b@x.example>",
            "RCPT TO:<c@x.example>",
        ),
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R550_NO_SUCH_USER,
            codes.R250_RECIPIENT_OK,
            codes.R250_RECIPIENT_OK,
            codes.R452_TOO_MANY_RECIPIENTS,
        ],
        State.RCPT,
        {
            "options": ServerOptions(max_recipients=2),
            "policy": reject(
                RcptTo, codes.R550_NO_SUCH_USER, lambda e: e.address.local_part == "nobody"
            ),
        },
    ),
    Case(
        "ehlo_resets_the_transaction",
        w("EHLO client.example", MAIL, RCPT, "EHLO client.example", "DATA", MAIL),
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            EHLO_OK,
            codes.R503_NEED_MAIL,
            codes.R250_SENDER_OK,
        ],
        State.MAIL,
    ),
    Case(
        "rcpt_answered_550_does_not_advance",
        w("EHLO client.example", MAIL, "RCPT TO:<nobody@x.example>", "DATA"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R550_NO_SUCH_USER, codes.R554_NO_VALID_RECIPIENTS],
        State.MAIL,
        {"policy": reject(RcptTo, codes.R550_NO_SUCH_USER)},
    ),
    Case(
        "mail_answered_451_does_not_advance",
        w("EHLO client.example", MAIL, RCPT, MAIL),
        [EHLO_OK, codes.R451_TEMP_POLICY, codes.R503_NEED_MAIL, codes.R451_TEMP_POLICY],
        State.READY,
        {"policy": reject(MailFrom, codes.R451_TEMP_POLICY)},
    ),
    Case(
        # RFC 5321 §3.3: after a failed DATA the client's body is read as commands.
        "data_answered_554_leaves_body_lines_as_commands",
        [*w("EHLO client.example", MAIL, RCPT, "DATA"), BODY],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            R554_DATA_REFUSED,
            codes.R500_UNRECOGNIZED,
            codes.R500_UNRECOGNIZED,
            codes.R500_UNRECOGNIZED,
            codes.R500_UNRECOGNIZED,
        ],
        State.RCPT,
        {"policy": reject(Data, R554_DATA_REFUSED)},
    ),
    Case(
        "end_of_data_answered_451_ends_the_transaction",
        [*w("EHLO client.example", MAIL, RCPT, "DATA"), BODY, *w("DATA", MAIL)],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            codes.R451_LOCAL_ERROR,
            codes.R503_NEED_MAIL,
            codes.R250_SENDER_OK,
        ],
        State.MAIL,
        {"policy": reject(EndOfData, codes.R451_LOCAL_ERROR)},
    ),
    Case(
        "invalid_utf8_in_command",
        [EHLO, b"NOOP \xff\xfe\r\n", b"NOOP\r\n"],
        [EHLO_OK, codes.R500_BAD_ENCODING, codes.R250_OK],
        State.READY,
    ),
    Case(
        "nul_in_command",
        [EHLO, b"MAIL FROM:<a\x00b@a.example>\r\n"],
        [EHLO_OK, codes.R500_BAD_ENCODING],
        State.READY,
    ),
    Case(
        "bare_cr_in_command",
        [EHLO, b"MAIL FROM:<a@a.example>\rRCPT TO:<b@b.example>\r\n"],
        [EHLO_OK, codes.R500_BAD_ENCODING],
        State.READY,
    ),
    Case(
        "lf_only_command_terminator",
        [
            b"EHLO client.example\n",
            b"MAIL FROM:<a@a.example>\n",
            b"RCPT TO:<b@b.example>\n",
            b"DATA\n",
            BODY,
            b"QUIT\n",
        ],
        [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R221_BYE,
        ],
        State.CLOSED,
    ),
    Case(
        "lower_case_verbs",
        w("ehlo client.example", "mail from:<a@a.example>", "rcpt to:<b@b.example>", "quit"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK, codes.R221_BYE],
        State.CLOSED,
    ),
    Case(
        "space_after_colon_tolerated",
        w("EHLO client.example", "MAIL FROM: <a@a.example>", "RCPT TO: <b@b.example>"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK],
        State.RCPT,
    ),
    Case(
        "quit_closes_and_ignores_the_rest",
        [EHLO + lines("QUIT", MAIL, "NOOP")],
        [EHLO_OK, codes.R221_BYE],
        State.CLOSED,
    ),
    Case(
        "reply_421_closes",
        [EHLO + lines(MAIL, RCPT, "NOOP")],
        [EHLO_OK, codes.R421_SHUTTING_DOWN],
        State.CLOSED,
        {"policy": reject(MailFrom, codes.R421_SHUTTING_DOWN)},
    ),
    Case(
        "command_error_answered_421_closes",
        [EHLO + lines("BOGUS", "NOOP")],
        [EHLO_OK, codes.R421_TOO_MANY_ERRORS],
        State.CLOSED,
        {"policy": reject(CommandError, codes.R421_TOO_MANY_ERRORS)},
    ),
    Case(
        "null_sender_and_postmaster",
        w("EHLO client.example", "MAIL FROM:<>", "RCPT TO:<Postmaster>"),
        [EHLO_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK],
        State.RCPT,
    ),
    Case(
        "postmaster_is_no_sender",
        w("EHLO client.example", "MAIL FROM:<Postmaster>"),
        [EHLO_OK, (501, "5.1.7")],
        State.READY,
    ),
]


def _matches(reply: Reply, expected: Reply | tuple[int, str]) -> bool:
    if isinstance(expected, Reply):
        return reply == expected
    return (reply.code, reply.enhanced) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_dialog(case: Case, mode: str) -> None:
    d = Driver(mode, **case.kwargs)
    for data in case.writes:
        d.feed(data)
    assert len(d.replies) == len(case.expect), d.replies
    for got, want in zip(d.replies, case.expect, strict=True):
        assert _matches(got, want), (got, want)
    assert d.state is case.state
    # The wire carries exactly the replies, in order, after the greeting.
    assert bytes(d.output) == GREETING.to_bytes() + b"".join(r.to_bytes() for r in d.replies)


def test_classic_dialog_wire_bytes(mode: str) -> None:
    d = Driver(mode)
    for data in [*w("EHLO client.example", MAIL, RCPT, "DATA"), BODY, *w("QUIT")]:
        d.feed(data)
    assert bytes(d.output) == (
        b"220 mx.example ESMTP mailwright\r\n"
        b"250-mx.example\r\n"
        b"250-PIPELINING\r\n"
        b"250-SIZE 52428800\r\n"
        b"250-ENHANCEDSTATUSCODES\r\n"
        b"250-8BITMIME\r\n"
        b"250-DSN\r\n"
        b"250-SMTPUTF8\r\n"
        b"250-CHUNKING\r\n"
        b"250 BINARYMIME\r\n"
        b"250 2.1.0 Ok\r\n"
        b"250 2.1.5 Ok\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
        b"250 2.0.0 Ok: queued\r\n"
        b"221 2.0.0 Bye\r\n"
    )
    assert [type(e) for e in d.merged] == [
        Ehlo,
        MailFrom,
        RcptTo,
        Data,
        DataChunk,
        EndOfData,
        Quit,
        ConnectionClosed,
    ]
    assert d.content == b"Subject: hello\r\n\r\nHi Bob.\r\n"
    assert d.of_type(EndOfData) == [EndOfData(len(d.content))]


def test_pipelined_replies_all_leave_after_one_write() -> None:
    d = Driver("whole")
    d.feed(ENVELOPE + lines("RCPT TO:<carol@c.example>", "DATA") + BODY + lines("QUIT"))
    assert d.last_output == b"".join(
        r.to_bytes()
        for r in [
            EHLO_OK,
            codes.R250_SENDER_OK,
            codes.R250_RECIPIENT_OK,
            codes.R250_RECIPIENT_OK,
            codes.R354_START_DATA,
            QUEUED,
            codes.R221_BYE,
        ]
    )


def test_pipelined_commands_wait_until_the_reply_is_sent() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(lines("EHLO a.example", "NOOP"))
    assert isinstance(conn.next_event(), Ehlo)
    # The NOOP is not read while the EHLO's reply is owed.
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    conn.send(EHLO_OK)
    assert conn.next_event() == Noop()
    conn.send(codes.R250_OK)
    assert conn.next_event() is NEED_DATA


def test_envelope_is_what_the_app_accepted(mode: str) -> None:
    d = Driver(
        mode,
        policy=reject(RcptTo, codes.R550_NO_SUCH_USER, lambda e: e.address.local_part == "nobody"),
    )
    d.feed(lines("EHLO c.example", MAIL, "RCPT TO:<nobody@x.example>", RCPT))
    txn = d.conn.transaction
    assert txn.mail == d.of_type(MailFrom)[0]
    assert txn.mail is not None and str(txn.mail.address) == "alice@a.example"
    assert [str(r.address) for r in txn.rcpts] == ["bob@b.example"]
    assert d.conn.helo == "c.example"
    assert d.conn.esmtp is True


def test_helo_is_not_esmtp(mode: str) -> None:
    d = Driver(mode).feed(lines("HELO c.example"))
    assert d.conn.helo == "c.example"
    assert d.conn.esmtp is False


def test_help_and_vrfy_events_change_nothing(mode: str) -> None:
    d = Driver(mode).feed(lines("EHLO c.example", MAIL, RCPT, "HELP", "HELP RCPT", "VRFY bob"))
    assert d.of_type(Help) == [Help(""), Help("RCPT")]
    assert d.of_type(Vrfy) == [Vrfy("bob")]
    for answer in d.answers[3:]:
        assert answer.state_before is answer.state_after is State.RCPT
    assert len(d.conn.transaction.rcpts) == 1
    assert d.last_output.endswith(
        b"214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP\r\n" * 2
        + b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    )


def test_unknown_command_wire_bytes(mode: str) -> None:
    d = Driver(mode).feed(lines("XYZZY"))
    assert d.last_output == b"500 5.5.1 Command unrecognized\r\n"
    assert d.state is State.NEED_HELO


# -- sizes ----------------------------------------------------------------------------


def test_message_overflow_is_read_to_the_end_and_the_session_continues(mode: str) -> None:
    d = Driver(mode, options=ServerOptions(max_message_size=100))
    body = b"".join(b"line %03d of a message that is too big\r\n" % i for i in range(10))
    d.feed(ENVELOPE + lines("DATA") + body + b".\r\n" + lines(MAIL, "NOOP"))
    (end,) = d.of_type(EndOfData)
    assert end.error is DataError.TOO_BIG
    assert end.size == len(body)  # the real size, for the log
    assert len(d.content) <= 100  # never more than the limit is handed over
    assert body.startswith(d.content)
    assert d.replies[4:] == [codes.R552_TOO_BIG, codes.R250_SENDER_OK, codes.R250_OK]
    assert d.state is State.MAIL


def test_message_of_exactly_the_limit_is_accepted(mode: str) -> None:
    body = b"x" * 98 + b"\r\n"
    d = Driver(mode, options=ServerOptions(max_message_size=100))
    d.feed(ENVELOPE + lines("DATA") + body + b".\r\n")
    assert d.of_type(EndOfData) == [EndOfData(100)]
    assert d.content == body


def _long_but_valid_mail_line() -> bytes:
    local = "l" * 64
    domain = ".".join(["d" * 60] * 3)  # 182 octets
    envid = "+41" * 100  # xtext for 100 "A"s
    line = f"MAIL FROM:<{local}@{domain}> SIZE=100 BODY=8BITMIME RET=FULL ENVID={envid}"
    assert MAX_COMMAND_LINE < len(line) < MAX_EXTENDED_COMMAND_LINE
    return line.encode()


def test_mail_may_be_longer_than_512_with_parameters(mode: str) -> None:
    d = Driver(mode).feed(EHLO + _long_but_valid_mail_line() + b"\r\n")
    (mail,) = d.of_type(MailFrom)
    assert mail.params.envid == "A" * 100
    assert d.replies[-1] == codes.R250_SENDER_OK


@pytest.mark.parametrize(
    ("prefix", "limit"),
    [(b"NOOP ", MAX_COMMAND_LINE), (b"MAIL FROM:<a@a.example> ", MAX_EXTENDED_COMMAND_LINE)],
)
def test_line_length_boundary(mode: str, prefix: bytes, limit: int) -> None:
    # The limit counts the CRLF (RFC 5321 §4.5.3.1.4).  Spaces pad the MAIL line
    # legally (parameters are space separated).
    pad = b"x" if prefix.startswith(b"NOOP") else b" "
    fits = prefix + pad * (limit - 2 - len(prefix))
    too_long = fits + pad
    d = Driver(mode).feed(EHLO + fits + b"\r\n")
    assert d.replies[-1] != codes.R500_LINE_TOO_LONG
    assert d.replies[-1].code == 250
    d.feed(lines("RSET") + too_long + b"\r\n" + lines("NOOP"))
    assert d.replies[-3:] == [codes.R250_RESET, codes.R500_LINE_TOO_LONG, codes.R250_OK]


def test_very_long_line_with_newline_is_refused_and_session_continues(mode: str) -> None:
    d = Driver(mode).feed(EHLO + b"NOOP " + b"y" * 5000 + b"\r\n" + lines("NOOP"))
    assert d.replies[-2:] == [codes.R500_LINE_TOO_LONG, codes.R250_OK]
    assert d.state is State.READY


@pytest.mark.parametrize(
    ("total", "chunk"),
    [(10 * 2**20, 10 * 2**20), (10 * 2**20, 64 * 1024), (20_000, 1)],
    ids=["10MB-in-one-write", "10MB-in-64KiB-writes", "20kB-byte-at-a-time"],
)
def test_endless_line_costs_bounded_memory(total: int, chunk: int) -> None:
    d = Driver("whole").feed(EHLO)
    piece = b"A" * chunk
    for _ in range(total // chunk):
        d.conn.receive_data(piece)
        d.pump()
        # Once the core has looked at the input, it holds at most one line's worth.
        assert d.conn.buffered <= MAX_EXTENDED_COMMAND_LINE
    d.feed(b"\r\n" + lines("NOOP"))
    assert d.replies[-2:] == [codes.R500_LINE_TOO_LONG, codes.R250_OK]
    assert d.state is State.READY


# -- session edges --------------------------------------------------------------------


def test_early_talker_is_flagged(mode: str) -> None:
    d = Driver(mode, greet=False)
    d.feed(lines("EHLO impatient.example"))
    assert d.events == []  # nothing is read before the greeting
    assert d.conn.early_talker is True
    d.greet(codes.R554_EARLY_TALKER)
    assert d.state is State.CLOSED
    assert d.output == b"554 5.5.1 Error: protocol violation: data sent before greeting\r\n"


def test_patient_client_is_not_an_early_talker(mode: str) -> None:
    d = Driver(mode).feed(EHLO)
    assert d.conn.early_talker is False


def test_early_talker_may_still_be_served(mode: str) -> None:
    d = Driver(mode, greet=False)
    d.feed(lines("EHLO impatient.example"))
    d.greet()
    assert d.of_type(Ehlo) == [Ehlo("impatient.example")]
    assert d.state is State.READY


def test_greeting_554_closes(mode: str) -> None:
    d = Driver(mode, greet=False)
    d.greet(Reply.of(554, "5.7.1", "No SMTP service here"))
    d.feed(EHLO)
    assert d.state is State.CLOSED
    assert d.events == [ConnectionClosed()]


def test_eof_gives_connection_closed(mode: str) -> None:
    d = Driver(mode).feed(EHLO + b"MAIL FROM:<a@")
    d.eof()
    assert isinstance(d.events[-1], ConnectionClosed)
    assert not d.of_type(MailFrom)


def test_eof_inside_data(mode: str) -> None:
    d = Driver(mode).feed(ENVELOPE + lines("DATA") + b"Subject: x\r\n\r\nhalf")
    d.eof()
    assert isinstance(d.events[-1], ConnectionClosed)
    assert not d.of_type(EndOfData)


def test_send_without_an_owed_event_is_a_local_error() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    with pytest.raises(LocalProtocolError):
        conn.send(codes.R250_OK)


def test_reply_is_owed_only_once() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(b"NOOP\r\n")
    conn.next_event()
    conn.send(codes.R250_OK)
    with pytest.raises(LocalProtocolError):
        conn.send(codes.R250_OK)


def test_closed_connection_reads_nothing() -> None:
    d = Driver("whole").feed(lines("QUIT"))
    d.conn.receive_data(lines("NOOP"))
    assert isinstance(d.conn.next_event(), ConnectionClosed)
    assert d.conn.buffered == 0


# -- hostile command lines ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["MA\u0131L FROM:<a@a.example>", "\u017fTARTTL\u017f", "N\u039fOP"],
    ids=["dotless-i", "long-s", "greek-omicron"],
)
def test_verbs_are_ascii(mode: str, line: str) -> None:
    # str.upper() maps "ı" to "I" and "ſ" to "S": such lines must not become commands.
    d = Driver(mode).feed(EHLO + lines(line))
    assert d.command_errors == [codes.R500_UNRECOGNIZED]
    assert d.state is State.READY


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<a@a.example> " + b"!" * 600,
        b"MAIL FROM:<a@a.example> BODY=" + b"X" * 600,
        b"MAIL FROM:<a@a.example> X" + b"Y" * 600 + b"=1",
        b"MAIL FROM:<a@[" + b"\x01" * 200 + b"]>",
        b"RCPT TO:<b@b.example> " + "\u00e9".encode() * 300,
    ],
    ids=["malformed-param", "bad-body", "unknown-param", "bad-literal", "utf8-param"],
)
def test_error_replies_quoting_input_stay_short(mode: str, line: bytes) -> None:
    d = Driver(mode).feed(EHLO + line + b"\r\n" + lines("NOOP"))
    (error,) = d.command_errors
    assert error.code in (501, 555)
    assert len(error.to_bytes()) <= 512  # RFC 5321 §4.5.3.1.5
    assert d.replies[-1] == codes.R250_OK


def test_marker_bytes_are_not_mistaken_for_a_dropped_line(mode: str) -> None:
    """Regression: a dropped over-long line used to be signalled in-band with the bytes
    ``\\x00too-long``; a client sending exactly those got "line too long" instead of
    the NUL refusal.  The signal is now a sentinel no input can equal."""
    d = Driver(mode).feed(EHLO + b"\x00too-long\r\n" + lines("NOOP"))
    assert d.replies[-2:] == [codes.R500_BAD_ENCODING, codes.R250_OK]
