"""xtext (RFC 3461 §4): the one codec for ENVID, ORCPT and AUTH= (RFC 4954 §5) values.

    xtext   = *( xchar / hexchar )
    xchar   = any ASCII from "!" (33) to "~" (126) except "+" and "="
    hexchar = "+" 2(%x30-39 / %x41-46)   ; "+" and two upper-case hex digits

xtext exists only on the wire.  The parser decodes each value exactly once, when it
reads the command (``_params``), and everything after it (the envelope, the spool,
the DSN) holds the decoded text; the writer encodes it again when the value goes
back on the wire (``_commands.write_command``).  Decoding a decoded value a second
time is a bug, not a safety net: ``user+2B41@x`` is ``user+41@x``, never ``userA@x``.
"""

from __future__ import annotations

_HEX = "0123456789ABCDEF"


class XtextError(ValueError):
    """A value is not valid xtext (or its octets are not UTF-8)."""


def decode_xtext(value: str) -> str:
    """RFC 3461 §4: "+XX" hex escapes; other characters must be printable ASCII.

    The escapes are octets, read as UTF-8 (the inverse of ``encode_xtext``)."""
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "+":
            hexpair = value[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(c in _HEX for c in hexpair):
                raise XtextError("invalid xtext escape")
            out.append(int(hexpair, 16))
            i += 3
            continue
        if not ("!" <= ch <= "~") or ch == "=":
            raise XtextError("invalid character in xtext")
        out.append(ord(ch))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise XtextError("xtext is not UTF-8") from None


def encode_xtext(value: str) -> str:
    """The xtext form of ``value``: "+", "=", controls, space and non-ASCII as "+XX"."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in value
    )
