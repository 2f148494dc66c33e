"""EHLO capabilities: building the server's reply and reading the client's view of it.

RFC 5321 §4.1.1.1: the first line of the 250 is the greeting, each following line one
extension keyword with optional parameters.  No enhanced status code is used on EHLO
lines (RFC 2034 §3 leaves them out, as Postfix does).
"""

from __future__ import annotations

from collections.abc import Iterable

from mailwright.smtp._replies import Reply

# The advertisement order Postfix uses, which clients and humans recognise.
_ORDER = (
    "PIPELINING",
    "SIZE",
    "VRFY",
    "ETRN",
    "STARTTLS",
    "AUTH",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
    "BINARYMIME",
)


def ehlo_reply(
    hostname: str,
    extensions: Iterable[str],
    *,
    max_size: int = 0,
    auth_mechanisms: Iterable[str] = (),
) -> Reply:
    """The multi-line 250 answering EHLO."""
    present = set(extensions)
    lines = [hostname]
    for keyword in sorted(present, key=lambda k: (_ORDER.index(k) if k in _ORDER else 99, k)):
        if keyword == "SIZE":
            lines.append(f"SIZE {max_size}" if max_size else "SIZE")
        elif keyword == "AUTH":
            mechanisms = " ".join(auth_mechanisms)
            if mechanisms:
                lines.append(f"AUTH {mechanisms}")
        else:
            lines.append(keyword)
    return Reply(250, "", tuple(lines))


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """Keyword -> parameters ("" when none) from an EHLO reply, keywords upper-cased."""
    out: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out
