"""8-bit to 7-bit MIME conversion (RFC 6152 §3): decoded content unchanged, header
lines other than Content-Transfer-Encoding byte for byte, and a clear reason where the
conversion is impossible."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.net.outbound.downgrade import DowngradeError, to_seven_bit

HEADER = (
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: downgrade\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s;\r\n"
    b"\th=from:to:subject; bh=abc; b=def\r\n"
    b"MIME-Version: 1.0\r\n"
)
TEXT = "Grüße aus Köln — ünïcödé, a long line " + "é" * 80 + "\r\n.dot line\r\nend = sign  \r\n"
BINARY = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\nmore\xff\r\n"


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")]


def test_single_text_part_becomes_quoted_printable() -> None:
    original = (
        HEADER
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + TEXT.encode()
    )
    converted = to_seven_bit(original)
    assert converted.isascii()
    assert all(len(line) <= 76 for line in converted.split(b"\r\n"))
    # Every header line but the encoding is unchanged, in place.
    before, after = header_lines(original), header_lines(converted)
    assert [a for a in after if not a.startswith(b"Content-Transfer")] == [
        b for b in before if not b.startswith(b"Content-Transfer")
    ]
    assert after[before.index(b"Content-Transfer-Encoding: 8bit")] == (
        b"Content-Transfer-Encoding: quoted-printable"
    )
    assert parse(converted).get_content() == parse(original).get_content()


def test_missing_encoding_field_is_added() -> None:
    original = HEADER + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + TEXT.encode()
    converted = to_seven_bit(original)
    assert header_lines(converted)[-1] == b"Content-Transfer-Encoding: quoted-printable"
    assert parse(converted).get_content() == parse(original).get_content()


def _mixed() -> bytes:
    return (
        HEADER
        + b'Content-Type: multipart/mixed; boundary="outer"\r\n'
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + b"This is the preamble.\r\n"
        + b"--outer\r\n"
        + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        + b"plain ascii part, left alone\r\n"
        + b"--outer\r\n"
        + b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
        + b"--inner\r\n"
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + TEXT.encode()
        + b"\r\n--inner\r\n"
        + b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        + b"<p>"
        + "Grüße".encode()
        + b"</p>\r\n"
        + b"--inner--\r\n"
        + b"--outer\r\n"
        + b"Content-Type: application/octet-stream\r\n"
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + BINARY
        + b"\r\n--outer\r\n"
        + b"Content-Type: message/rfc822\r\n\r\n"
        + b"Subject: attached\r\nMIME-Version: 1.0\r\n"
        + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "attached grüße\r\n".encode()
        + b"\r\n--outer--\r\n"
        + b"epilogue\r\n"
    )


def test_multipart_parts_are_converted_one_by_one() -> None:
    original = _mixed()
    converted = to_seven_bit(original)
    assert converted.isascii()
    assert b"Content-Transfer-Encoding: 7bit" in header_lines(converted)  # the multipart
    assert b"This is the preamble.\r\n--outer\r\n" in converted
    assert b"charset=us-ascii\r\n\r\nplain ascii part, left alone\r\n--outer\r\n" in converted
    assert converted.endswith(b"--outer--\r\nepilogue\r\n")
    before = [p for p in parse(original).walk() if not p.is_multipart()]
    after = [p for p in parse(converted).walk() if not p.is_multipart()]
    assert len(before) == len(after) == 5
    # The fifth leaf is the attached message's body (walk() enters message/rfc822).
    encodings = [p["Content-Transfer-Encoding"] for p in after]
    assert encodings == [None, "quoted-printable", "quoted-printable", "base64", "quoted-printable"]
    for old, new in zip(before, after, strict=True):
        assert new.get_payload(decode=True) == old.get_payload(decode=True)
    attached = parse(converted).get_payload()[3]
    assert attached["Content-Transfer-Encoding"] == "7bit"
    inner = attached.get_payload()[0]
    assert inner.get_content() == "attached grüße\r\n"


def test_ascii_message_is_left_byte_for_byte() -> None:
    original = HEADER + b"Content-Type: text/plain\r\n\r\nonly ascii\r\n"
    assert to_seven_bit(original) is original


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            HEADER + "Subject: grüße\r\n\r\nbody\r\n".encode(),
            "8-bit octets in a header section",
        ),
        (
            b"From: a@example.test\r\nSubject: no mime\r\n\r\n" + "grüße\r\n".encode(),
            "8-bit body without MIME structure",
        ),
        (
            HEADER
            + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + "grüße\r\n".encode(),
            "8-bit octets inside a base64 body",
        ),
        (
            HEADER
            + b"Content-Type: message/partial; id=x; number=1\r\n\r\n"
            + "grüße\r\n".encode(),
            "8-bit octets in message/partial",
        ),
        (
            HEADER + b"Content-Type: multipart/mixed\r\n\r\n" + "grüße\r\n".encode(),
            "multipart/mixed without a boundary",
        ),
        (
            HEADER
            + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + "pré\r\n--b\r\n\r\nx\r\n--b--\r\n".encode(),
            "8-bit octets in a multipart preamble or epilogue",
        ),
        (
            HEADER
            + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            + b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\n"
            + "grüße\r\n--b--\r\n".encode(),
            "attached message with an 8-bit body and no MIME-Version",
        ),
    ],
)
def test_impossible_conversions_name_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DowngradeError, match=reason):
        to_seven_bit(data)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200), max_size=8)
)
def test_any_text_survives_quoted_printable(lines: list[str]) -> None:
    text = "".join(line + "\r\n" for line in lines) + "é\r\n"
    original = HEADER + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
    converted = to_seven_bit(original)
    assert converted.isascii()
    assert parse(converted).get_payload(decode=True) == text.encode()
