"""Raw mode's escapes, byte for byte: what is typed is what goes on the wire."""

from __future__ import annotations

import pytest

from mailwright.client.interactive.escapes import EscapeError, decode_raw


@pytest.mark.parametrize(
    ("typed", "wire"),
    [
        ("NOOP", b"NOOP\r\n"),  # no line-end escape: CRLF added, as telnet sends
        ("", b"\r\n"),
        ("hello\\n.\\n", b"hello\n.\n"),  # the bare-LF smuggling ending, nothing added
        ("a\\r\\n.\\r\\n", b"a\r\n.\r\n"),
        ("x\\r", b"x\r"),  # a bare CR, nothing added
        ("tab\\there", b"tab\there\r\n"),
        ("back\\\\slash", b"back\\slash\r\n"),
        ("nul\\x00 high\\xff", b"nul\x00 high\xff\r\n"),
        (
            "hex \\x0A counts as data, not as a line end",
            b"hex \n counts as data, not as a line end\r\n",
        ),
        ("üñí", "üñí".encode() + b"\r\n"),
    ],
)
def test_decode_raw_is_byte_exact(typed: str, wire: bytes) -> None:
    assert decode_raw(typed) == wire


@pytest.mark.parametrize(
    ("typed", "named"),
    [("a\\qb", "'\\\\q'"), ("end\\", "'\\\\'"), ("\\x4", "'\\\\x4'"), ("\\xZZ", "'\\\\xZZ'")],
)
def test_unknown_escape_is_refused_with_its_column(typed: str, named: str) -> None:
    with pytest.raises(EscapeError) as caught:
        decode_raw(typed)
    message = str(caught.value)
    assert named in message and "column" in message
