"""What ``mailwright sendmail`` makes of its standard input: pure functions, no I/O.

**Reading** (``to_wire``).  Local programs write text with LF line ends; the spool
holds the message in its wire form, so every line ends in CRLF.  A line's trailing CRs
are dropped first (``\\r\\r\\n`` is what a CRLF text run through one more LF->CRLF
conversion looks like), and a CR anywhere else ends a line as well (old Mac text):
our relay refuses bare CRs outside BINARYMIME (DESIGN, "DATA framing, sending side"),
so one left in would turn into a bounce later.  Without ``-i`` a line holding only
"." ends the message, as sendmail's; the rest of the input is not read.  NUL bytes
are refused: no SMTP transfer without BINARYMIME may carry them (RFC 5321 §4.5.2).

**Completing** (``complete``), as Postfix's pickup and cleanup do for local mail:

* a leading mbox ``From `` line is dropped;
* ``Bcc:`` and ``Resent-Bcc:`` fields are removed — always, not only with ``-t``: a
  Bcc field names recipients who must stay hidden from the others (RFC 5322 §3.6.3);
* ``From:``, ``Date:`` and ``Message-ID:`` are added at the end of the header section
  when missing (RFC 5322 §3.6 requires the first two; RFC 6409 §8 lets a submission
  server add them, ``policy.builtin.missing_headers`` does it for port 587);
* a ``Received:`` field goes first: ``Received: by HOST (mailwright, from userid
  UID) id QUEUE-ID; DATE`` (RFC 5321 §4.4; Postfix's form for local submission).

A first line that is not a header field (a script that writes only a body) starts the
body: the added fields and an empty line go before it.

**Recipients from the header** (``header_recipients``, ``-t``): ``To``, ``Cc`` and
``Bcc``, or, when the message has ``Resent-`` fields, only ``Resent-To``,
``Resent-Cc`` and ``Resent-Bcc`` (RFC 5322 §3.6.6: a resent message goes to the
resent recipients), parsed with the standard library's RFC 5322 address parser
(groups, comments, quoted display names).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, getaddresses

from mailwright.policy.builtin.missing_headers import missing_fields

CRLF = b"\r\n"
# A field name: printable US-ASCII except ":" and space (RFC 5322 §3.6.8 ``ftext``).
_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
_BCC_FIELDS = frozenset({b"bcc", b"resent-bcc"})
_RCPT_FIELDS = (b"to", b"cc", b"bcc")
_RESENT_FIELDS = (b"resent-to", b"resent-cc", b"resent-bcc")


class InputError(ValueError):
    """The input cannot be a message (a NUL byte); the text says why."""


def to_wire(data: bytes, *, dot_ends: bool) -> bytes:
    """Standard input -> CRLF lines (see the module docstring)."""
    if b"\0" in data:
        raise InputError("the message contains a NUL byte")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the input's last line end
    out: list[bytes] = []
    for raw in lines:
        for line in raw.rstrip(b"\r").split(b"\r"):
            if dot_ends and line == b".":
                return CRLF.join(out) + CRLF if out else b""
            out.append(line)
    return CRLF.join(out) + CRLF if out else b""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A wire-form message split into header fields and body."""

    fields: list[tuple[bytes, bytes]]  # (lower-cased name, whole field incl. CRLFs)
    body: bytes  # after the empty line (b"" if none)
    had_separator: bool  # the header section ended with an empty line


def parse(message: bytes) -> Parsed:
    fields: list[tuple[bytes, bytes]] = []
    pos = 0
    if message.startswith(b"From "):  # an mbox postmark, not a header field
        end = message.find(CRLF)
        pos = len(message) if end < 0 else end + 2
    while pos < len(message):
        end = message.find(CRLF, pos)
        end = len(message) if end < 0 else end + 2
        line = message[pos:end]
        if line == CRLF:
            return Parsed(fields, message[end:], True)
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line)
        elif _FIELD.match(line):
            name = line.split(b":", 1)[0].rstrip(b" \t").lower()
            fields.append((name, line))
        else:
            break  # not a field: the body starts here
        pos = end
    return Parsed(fields, message[pos:], False)


def _unfold(field: bytes) -> str:
    value = field.split(b":", 1)[1]
    return value.replace(CRLF, b"").decode("utf-8", "replace").strip()


def header_recipients(parsed: Parsed) -> list[str]:
    """The addresses ``-t`` sends to, in header order, each once (case-insensitive)."""
    names = {name for name, _ in parsed.fields}
    wanted = _RESENT_FIELDS if names & set(_RESENT_FIELDS) else _RCPT_FIELDS
    values = [_unfold(text) for name, text in parsed.fields if name in wanted]
    seen: set[str] = set()
    found = []
    for _display, address in getaddresses(values):
        if address and address.lower() not in seen:
            seen.add(address.lower())
            found.append(address)
    return found


@dataclass(frozen=True, slots=True)
class Identity:
    """Who submits: the login (for ``Received``'s userid) and the From: to add."""

    uid: int
    from_address: str  # address for an added From: field
    full_name: str  # display name for it ("" for none)


def received_field(hostname: str, uid: int, queue_id: str, now: float) -> bytes:
    date = format_datetime(datetime.fromtimestamp(int(now), UTC))
    return (
        f"Received: by {hostname} (mailwright, from userid {uid})\r\n\tid {queue_id}; {date}\r\n"
    ).encode()


def complete(
    parsed: Parsed, *, hostname: str, queue_id: str, who: Identity, now: float | None = None
) -> bytes:
    """The message as stored (see the module docstring)."""
    when = time.time() if now is None else now
    kept = [text for name, text in parsed.fields if name not in _BCC_FIELDS]
    section = b"".join(kept)
    added = b""
    if b"from" not in {name for name, _ in parsed.fields}:
        value = formataddr((who.full_name, who.from_address)) if who.full_name else who.from_address
        added += f"From: {value}\r\n".encode()
    added += missing_fields(section, hostname=hostname, queue_id=queue_id, now=when)
    received = received_field(hostname, who.uid, queue_id, when)
    return received + section + added + CRLF + parsed.body
