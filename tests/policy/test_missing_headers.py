"""Date:/Message-ID: completion for submission (RFC 6409 §8.2, §8.3): which fields are
missing, and the hold that adds them to a streamed, write-once body."""

from __future__ import annotations

import email.utils
import re

import pytest

from mailwright.policy.builtin.from_header import MAX_HEADER_SECTION
from mailwright.policy.builtin.missing_headers import (
    HeaderSectionHold,
    field_names,
    missing_fields,
)

HOST = "mx.example.test"
QUEUE_ID = "1M7Z0JYX9YXH6DW5"
NOW = 1_700_000_000.0
MESSAGE_ID_RE = re.compile(rb"^Message-ID: <\d{14}\.1M7Z0JYX9YXH6DW5@mx\.example\.test>\r\n$")


def added(header_section: bytes) -> bytes:
    return missing_fields(header_section, hostname=HOST, queue_id=QUEUE_ID, now=NOW)


def test_both_added_when_missing() -> None:
    date_line, id_line = added(b"Subject: hi\r\nTo: a@b\r\n").split(b"\r\n", 1)
    assert date_line.startswith(b"Date: ")
    # RFC 5322 §3.3 with a numeric zone, the instant we asked for.
    parsed = email.utils.parsedate_to_datetime(date_line[6:].decode())
    assert parsed.timestamp() == NOW and parsed.tzinfo is not None
    assert re.search(rb" [+-]\d{4}$", date_line)
    assert MESSAGE_ID_RE.match(id_line)


@pytest.mark.parametrize(
    "header_section",
    [
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <x@y>\r\n",
        b"DATE: x\r\nmessage-id: <x@y>\r\n",  # field names are case-insensitive
        b"Message-Id : <x@y>\r\nSubject: s\r\nDate:\r\n  folded value\r\n",  # obs WSP
    ],
)
def test_nothing_added_when_present(header_section: bytes) -> None:
    assert added(header_section) == b""


def test_only_what_is_missing() -> None:
    assert added(b"Message-ID: <x@y>\r\n").startswith(b"Date: ")
    assert MESSAGE_ID_RE.match(added(b"Date: x\r\n"))
    # A continuation line that looks like a field is not one.
    assert field_names(b"Subject: a\r\n Date: no\r\n") == {b"subject"}


def hold_output(message: bytes, pieces: list[bytes]) -> bytes:
    hold = HeaderSectionHold(hostname=HOST, queue_id=QUEUE_ID, now=NOW)
    return b"".join(hold.feed(p) for p in pieces) + hold.finish()


def split_everywhere(message: bytes) -> list[list[bytes]]:
    return [[message], [message[i : i + 1] for i in range(len(message))]] + [
        [message[:i], message[i:]] for i in range(1, len(message))
    ]


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: hi\r\n\r\nbody\r\n",
        b"Subject: hi\r\n",  # no body at all
        b"\r\nonly a body\r\n",  # an empty header section
        b"",
    ],
)
def test_hold_adds_before_the_header_section_however_split(message: bytes) -> None:
    outputs = {hold_output(message, pieces) for pieces in split_everywhere(message)}
    (out,) = outputs  # the same bytes whatever the split
    assert out.startswith(b"Date: ")
    _date, rest = out.split(b"\r\n", 1)
    assert rest.startswith(b"Message-ID: <") and rest.endswith(message)
    assert len(out) == len(added(b"")) + len(message)


def test_hold_passes_a_complete_message_unchanged() -> None:
    message = b"Date: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n\r\nDate: in the body\r\n"
    for pieces in split_everywhere(message):
        assert hold_output(message, pieces) == message


def test_an_oversized_header_section_is_streamed_unchanged() -> None:
    long_field = b"X-Long: " + b"a" * 900 + b"\r\n"
    message = long_field * (MAX_HEADER_SECTION // len(long_field) + 2) + b"\r\nbody\r\n"
    hold = HeaderSectionHold(hostname=HOST, queue_id=QUEUE_ID, now=NOW)
    out = b""
    for i in range(0, len(message), 4096):
        out += hold.feed(message[i : i + 4096])
        assert len(message) - len(out) <= MAX_HEADER_SECTION + 4096  # bounded hold
    assert out + hold.finish() == message


@pytest.mark.parametrize("extra", [-2, -1, 0, 1, 2])
def test_the_header_section_limit_does_not_depend_on_the_split(extra: int) -> None:
    # A header section of exactly MAX_HEADER_SECTION + extra octets (final CRLF
    # included): completed up to the limit, unchanged beyond, in every feeding.
    field = b"X: " + b"a" * (MAX_HEADER_SECTION + extra - 5) + b"\r\n"
    message = field + b"\r\nbody\r\n"
    whole = hold_output(message, [message])
    assert whole.startswith(b"Date: ") is (extra <= 0)
    for size in (1, 3, 4096):
        pieces = [message[i : i + size] for i in range(0, len(message), size)]
        assert hold_output(message, pieces) == whole, size
