"""The MESSAGE stage's typed transaction: header fields as pairs, fields hooks add."""

from __future__ import annotations

import pytest

from mailwright.policy.message import MAX_HEADER_FIELDS, MessageTransaction, parse_fields
from mailwright.spool.model import Envelope, Recipient

ENVELOPE = Envelope("a@remote.test", (Recipient("b@example.test"),))


def test_header_fields_are_unfolded_pairs_in_order() -> None:
    section = b"From: a@remote.test\r\nSubject: one\r\n two\r\nX-Empty:\r\nnot a field\r\n"
    assert parse_fields(section) == [
        ("From", "a@remote.test"),
        ("Subject", "one two"),
        ("X-Empty", ""),
    ]


def test_header_fields_are_bounded() -> None:
    section = b"".join(b"X-N: %d\r\n" % i for i in range(MAX_HEADER_FIELDS + 5))
    txn = MessageTransaction(ENVELOPE, section, len(section))
    assert len(txn.fields) == MAX_HEADER_FIELDS
    assert txn.fields[-1] == ("X-N", str(MAX_HEADER_FIELDS - 1))


def test_add_field_keeps_whole_crlf_lines_in_order() -> None:
    txn = MessageTransaction(ENVELOPE, b"", 0)
    txn.add_field("Authentication-Results", "mx.example.test;\r\n\tspf=pass")
    txn.add_field("X-Test", "yes")
    assert txn.added_fields == [
        b"Authentication-Results: mx.example.test;\r\n\tspf=pass\r\n",
        b"X-Test: yes\r\n",
    ]
    # Each goes on top of those before it, as trace fields are prepended.
    assert txn.header_block == (
        b"X-Test: yes\r\nAuthentication-Results: mx.example.test;\r\n\tspf=pass\r\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Test", "yes\r\nBcc: smuggled@x"),  # a second field through the value
        ("X-Test", "yes\r\n\r\nbody"),  # an end of the header section
        ("X-Test", "bare\nLF"),
        ("X Test", "yes"),
        ("X-Test:", "yes"),
        ("", "yes"),
        ("X-Test", "a" * 1000),
    ],
)
def test_add_field_refuses_what_is_not_one_header_field(name: str, value: str) -> None:
    txn = MessageTransaction(ENVELOPE, b"", 0)
    with pytest.raises(ValueError):
        txn.add_field(name, value)
    assert txn.added_fields == []
