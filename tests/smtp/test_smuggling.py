"""SMTP smuggling regressions (CVE-2023-51764 Postfix, -51765 sendmail, -51766 Exim).

The attacker ends DATA with a terminator some other server accepts, then pipelines a
second transaction, then the real CRLF.CRLF.  A server that honours the fake
terminator delivers the smuggled message as if the (SPF/DKIM-passing) first hop sent
it.  Only CRLF.CRLF ends DATA here; any bare CR or LF ends the session with 521 and
nothing after it is read (DESIGN, seam "DATA framing").

Every variant has a named test, run in plain form (client waits for each reply) and
pipelined form (one write), in both feeding modes; plus every two-way split.
"""

from __future__ import annotations

import pytest

from mailwright.smtp import (
    ConnectionClosed,
    Data,
    DataError,
    EndOfData,
    MailFrom,
    RcptTo,
    State,
    codes,
    has_bare_line_ending,
)

from .helpers import ENVELOPE, QUEUED, Driver, lines, merge_chunks, reject

SMUGGLED = (
    b"MAIL FROM:<admin@bank.example>\r\n"
    b"RCPT TO:<victim@b.example>\r\n"
    b"DATA\r\n"
    b"From: admin@bank.example\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"evil\r\n"
)
BODY = b"From: alice@a.example\r\nSubject: hello\r\n\r\nHi Bob."
REAL_END = b"\r\n.\r\n"
FORMS = ("plain", "pipelined")


def attack(fake_end: bytes, *, at_start: bool = False) -> bytes:
    return (b"" if at_start else BODY) + fake_end + SMUGGLED + REAL_END


def run_attack(mode: str, form: str, data: bytes) -> Driver:
    d = Driver(mode)
    if form == "plain":
        for command in [
            "EHLO client.example",
            "MAIL FROM:<alice@a.example>",
            "RCPT TO:<bob@b.example>",
            "DATA",
        ]:
            d.feed(lines(command))
        assert d.state is State.DATA
        d.feed(data)
    else:
        d.feed(ENVELOPE + lines("DATA") + data)
    return d


def assert_rejected(d: Driver) -> None:
    """One message started, none smuggled, the session closed after 521."""
    assert [str(m.address) for m in d.of_type(MailFrom)] == ["alice@a.example"]
    assert [str(r.address) for r in d.of_type(RcptTo)] == ["bob@b.example"]
    assert len(d.of_type(Data)) == 1
    (end,) = d.of_type(EndOfData)
    assert end.error is DataError.BARE_LINE_ENDING
    after = d.events[d.events.index(end) + 1 :]
    assert all(isinstance(e, ConnectionClosed) for e in after), after
    assert d.replies[-1] == codes.R521_BARE_LINE_ENDING
    assert bytes(d.output).endswith(
        b"\r\n521 5.5.2 Error: bare CR or LF in message data (see RFC 5321 section 2.3.8)\r\n"
    )
    assert d.state is State.CLOSED
    assert b"smuggled" not in d.content
    assert b"evil" not in d.content
    assert b"MAIL FROM" not in d.content
    # Whatever arrives later is never read.
    d.feed(REAL_END + lines("MAIL FROM:<x@x.example>", "QUIT"))
    assert len(d.of_type(MailFrom)) == 1
    assert d.replies[-1] == codes.R521_BARE_LINE_ENDING


forms = pytest.mark.parametrize("form", FORMS)


@forms
def test_bare_lf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\n")))


@forms
def test_bare_cr(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r")))


@forms
def test_lf_dot_lf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\n.\n")))


@forms
def test_cr_dot_cr(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r.\r")))


@forms
def test_lf_dot_crlf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\n.\r\n")))


@forms
def test_crlf_dot_lf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r\n.\n")))


@forms
def test_crlf_dot_cr(mode: str, form: str) -> None:
    # "\r\n.\r" followed by something other than LF (here the smuggled "MAIL").
    assert_rejected(run_attack(mode, form, attack(b"\r\n.\r")))


@forms
def test_cr_dot_crlf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r.\r\n")))


@forms
def test_crlf_dot_cr_crlf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r\n.\r\r\n")))


@forms
def test_cr_crlf_dot_crlf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\r\r\n.\r\n")))


@forms
def test_lf_cr_dot_crlf(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\n\r.\r\n")))


@forms
def test_dot_lf_at_body_start(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b".\n", at_start=True)))


@forms
def test_dot_cr_at_body_start(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b".\r", at_start=True)))


@forms
def test_bare_lf_at_body_start(mode: str, form: str) -> None:
    assert_rejected(run_attack(mode, form, attack(b"\n", at_start=True)))


@forms
def test_bare_lf_in_a_header_without_any_smuggling(mode: str, form: str) -> None:
    d = run_attack(mode, form, b"Subject: a\nb\r\n\r\nbody\r\n.\r\n")
    assert_rejected(d)


@forms
def test_closes_whatever_the_app_answers(mode: str, form: str) -> None:
    # The stream is out of step; even an (ill-advised) 250 cannot keep it open.
    d = Driver(mode, policy=reject(EndOfData, QUEUED))
    d.feed(ENVELOPE + lines("DATA") + attack(b"\n.\n"))
    assert d.state is State.CLOSED
    assert len(d.of_type(MailFrom)) == 1


# -- the legitimate terminator ----------------------------------------------------------


@forms
def test_crlf_dot_crlf_is_the_terminator(mode: str, form: str) -> None:
    d = run_attack(mode, form, BODY + REAL_END + SMUGGLED + REAL_END)
    # Here the "smuggled" transaction is a real second transaction: correct SMTP.
    assert [str(m.address) for m in d.of_type(MailFrom)] == [
        "alice@a.example",
        "admin@bank.example",
    ]
    assert [e.error for e in d.of_type(EndOfData)] == [None, None]
    assert d.state is State.READY
    assert d.replies_to(EndOfData) == [QUEUED, QUEUED]


@forms
def test_dot_stuffed_terminator_is_content(mode: str, form: str) -> None:
    body = b"a\r\n..\r\nb\r\n...\r\n..x\r\n"
    d = run_attack(mode, form, body + b".\r\n")
    assert d.content == b"a\r\n.\r\nb\r\n..\r\n.x\r\n"
    assert d.of_type(EndOfData) == [EndOfData(len(d.content))]
    assert d.state is State.READY


@forms
def test_dot_stuffing_at_body_start(mode: str, form: str) -> None:
    d = run_attack(mode, form, b"..hello\r\n.\r\n")
    assert d.content == b".hello\r\n"


@forms
def test_empty_body(mode: str, form: str) -> None:
    d = run_attack(mode, form, b".\r\n" + lines("NOOP"))
    assert d.content == b""
    assert d.of_type(EndOfData) == [EndOfData(0)]
    assert d.replies[-2:] == [QUEUED, codes.R250_OK]


@forms
def test_dots_inside_lines_are_content(mode: str, form: str) -> None:
    body = b"a.b\r\n .\r\nx.\r\n"
    d = run_attack(mode, form, body + b".\r\n")
    assert d.content == body


# -- every split point ------------------------------------------------------------------

VARIANTS = {
    "legit": ENVELOPE + lines("DATA") + b"..a\r\nb\r\n..\r\n.\r\n" + lines("MAIL FROM:<c@c.ex>"),
    "lf_dot_lf": ENVELOPE + lines("DATA") + attack(b"\n.\n"),
    "crlf_dot_cr": ENVELOPE + lines("DATA") + attack(b"\r\n.\r"),
    "cr_dot_cr": ENVELOPE + lines("DATA") + attack(b"\r.\r"),
    "dot_lf_start": ENVELOPE + lines("DATA") + attack(b".\n", at_start=True),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_two_way_split_gives_the_same_session(variant: str) -> None:
    data = VARIANTS[variant]
    whole = Driver("whole").feed(data)
    for i in range(1, len(data)):
        split = Driver("whole").feed(data[:i]).feed(data[i:])
        assert merge_chunks(split.events) == merge_chunks(whole.events), i
        assert split.output == whole.output, i
        assert split.state is whole.state


# -- NUL (issue 8 item 14) -------------------------------------------------------------
#
# A NUL cannot end DATA here, but a next hop that drops NUL would turn
# "\r\n\x00.\r\n" into an end of data once the message is relayed.


@forms
@pytest.mark.parametrize(
    "body",
    [
        b"Subject: s\r\n\r\nfirst\r\n\x00.\r\n" + SMUGGLED,  # the example
        b"\x00",
        b"a\x00b\r\n" + b"x" * 3000,
        b".\x00\r\n",  # right after a leading dot that is unstuffed
    ],
)
def test_nul_in_data_is_refused_and_session_continues(mode: str, form: str, body: bytes) -> None:
    d = run_attack(mode, form, body + REAL_END + lines("NOOP"))
    (end,) = d.of_type(EndOfData)
    assert end.error is DataError.NUL
    assert end.size == len(body.replace(b"\r\n.", b"\r\n").removeprefix(b".")) + 2
    assert d.replies[-2:] == [codes.R554_NUL_IN_DATA, codes.R250_OK]
    assert d.wire.endswith(
        b"554 5.6.0 Error: NUL octet in message data (allowed only in BINARYMIME)\r\n"
        b"250 2.0.0 Ok\r\n"
    )
    assert b"\x00" not in d.content and b"smuggled" not in d.content
    assert len(d.of_type(MailFrom)) == 1  # the text after the NUL was never a command
    assert d.state is State.READY


# -- the helper -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "bare"),
    [
        (b"", False),
        (b"abc", False),
        (b"a\r\nb\r\n", False),
        (b"a\nb", True),
        (b"a\rb", True),
        (b"a\r", True),
        (b"\na", True),
        (b"a\r\r\n", True),
        (b"a\r\n\n", True),
        (b"a\n\r", True),
    ],
)
def test_has_bare_line_ending(data: bytes, bare: bool) -> None:
    assert has_bare_line_ending(data) is bare
