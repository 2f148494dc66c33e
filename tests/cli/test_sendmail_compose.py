"""``cli.compose``: what ``mailwright sendmail`` makes of its input, byte by byte."""

from __future__ import annotations

import pytest

from mailwright.cli.compose import (
    Identity,
    InputError,
    complete,
    header_recipients,
    parse,
    to_wire,
)

WHO = Identity(uid=1000, from_address="ann@mx.example.test", full_name="Ann Example")


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n"),  # LF text
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),  # already CRLF
        (b"a\r\r\nb", b"a\r\nb\r\n"),  # CRLF converted twice; no final line end
        (b"a\rb\n", b"a\r\nb\r\n"),  # a bare CR ends a line: never left for the relay
        (b"", b""),
        (b"\n", b"\r\n"),
    ],
)
def test_to_wire_line_ends(given: bytes, wire: bytes) -> None:
    assert to_wire(given, dot_ends=False) == wire


def test_to_wire_lone_dot_ends_input_only_without_i() -> None:
    text = b"a\n.\nb\n..\n"
    assert to_wire(text, dot_ends=True) == b"a\r\n"
    assert to_wire(text, dot_ends=False) == b"a\r\n.\r\nb\r\n..\r\n"  # no unstuffing
    assert to_wire(b".\nrest\n", dot_ends=True) == b""
    assert to_wire(b"a\n.\r\nb\n", dot_ends=True) == b"a\r\n"  # "." CRLF ends it too


def test_to_wire_refuses_nul() -> None:
    with pytest.raises(InputError, match="NUL"):
        to_wire(b"a\0b\n", dot_ends=False)


def test_complete_adds_missing_fields_after_the_header_and_received_first() -> None:
    parsed = parse(b"Subject: hi\r\nBcc: hidden@example.net\r\n\r\nbody\r\n")
    out = complete(parsed, hostname="mx.example.test", queue_id="1M7Z0P99ME5E24SA", who=WHO, now=0)
    header, _, body = out.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    assert lines[0] == b"Received: by mx.example.test (mailwright, from userid 1000)"
    assert lines[1] == b"\tid 1M7Z0P99ME5E24SA; Thu, 01 Jan 1970 00:00:00 +0000"
    assert lines[2] == b"Subject: hi"
    assert lines[3] == b"From: Ann Example <ann@mx.example.test>"
    assert lines[4].startswith(b"Date: ")
    assert lines[5] == b"Message-ID: <19700101000000.1M7Z0P99ME5E24SA@mx.example.test>"
    assert b"hidden" not in out and body == b"body\r\n"


def test_complete_keeps_existing_fields_and_a_body_without_header() -> None:
    full = (
        b"From: x@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <1@x>\r\n\r\nb\r\n"
    )
    out = complete(parse(full), hostname="h", queue_id="1M7Z0P99ME5E24SA", who=WHO, now=0)
    assert out.split(b"\r\n", 2)[2] == full  # only Received added
    # A script that writes only a body: it starts after our fields and an empty line.
    bare = complete(parse(b"just text\r\n"), hostname="h", queue_id="1M7Z0P99ME5E24SA", who=WHO)
    assert bare.endswith(b"\r\n\r\njust text\r\n")
    # An mbox postmark is not a header field.
    mbox = parse(b"From ann Mon Jan  1 00:00:00 2024\r\nSubject: s\r\n\r\nx\r\n")
    assert [name for name, _ in mbox.fields] == [b"subject"]


def test_header_recipients_to_cc_bcc_or_resent_only() -> None:
    plain = parse(
        b'To: Ann <ann@example.org>, "Doe, Bob" <bob@example.org>\r\n'
        b"Cc: undisclosed-recipients:;\r\n"
        b"Bcc: carol@example.org,\r\n ANN@example.org\r\n"
        b"Reply-To: nobody@example.org\r\n\r\n"
    )
    assert header_recipients(plain) == ["ann@example.org", "bob@example.org", "carol@example.org"]
    resent = parse(b"To: ann@example.org\r\nResent-To: dave@example.org\r\n\r\n")
    assert header_recipients(resent) == ["dave@example.org"]
