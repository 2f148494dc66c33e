"""Raw mode's escape syntax: what the user types -> the exact octets to send.

Raw mode exists to send what no well-behaved client would (bare LF, bare CR, a lone
``.`` ended by LF -- the SMTP smuggling variants of CVE-2023-51764), so line endings
are the user's to choose:

* ``\\r`` CR, ``\\n`` LF, ``\\t`` TAB, ``\\\\`` a backslash, ``\\xHH`` any octet;
* a line that contains a ``\\r`` or ``\\n`` escape is sent exactly as written, with
  nothing added: the user has taken charge of the line ends;
* any other line is sent followed by CRLF, as telnet sends it (RFC 5321 §2.3.8).

Any other backslash sequence is an error naming it (nothing is sent), so a typo never
puts octets on the wire the user did not mean.  Text is sent as UTF-8.
"""

from __future__ import annotations

_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}
_HEX = "0123456789abcdefABCDEF"


class EscapeError(ValueError):
    """A backslash sequence raw mode does not know."""


def decode_raw(line: str) -> bytes:
    """The octets to write for ``line`` typed in raw mode (see the module docstring)."""
    out = bytearray()
    explicit_line_end = False
    i = 0
    while i < len(line):
        char = line[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        code = line[i + 1 : i + 2]
        if code in _SIMPLE:
            out += _SIMPLE[code]
            explicit_line_end |= code in ("r", "n")
            i += 2
        elif (
            code == "x"
            and len(digits := line[i + 2 : i + 4]) == 2
            and all(d in _HEX for d in digits)
        ):
            out.append(int(digits, 16))
            i += 4
        else:
            shown = line[i : i + 4] if code == "x" else line[i : i + 2]
            raise EscapeError(
                f"unknown escape {shown!r} at column {i + 1} "
                "(raw mode knows \\r \\n \\t \\\\ and \\xHH)"
            )
    if not explicit_line_end:
        out += b"\r\n"
    return bytes(out)
