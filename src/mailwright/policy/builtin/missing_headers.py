"""Submission completes the message: ``Date:`` and ``Message-ID:`` when missing.

RFC 6409 §8.2 and §8.3 let a submission server add the two fields RFC 5322 §3.6
requires (``Date:``) or expects (``Message-ID:``) when the client left them out, as
Postfix does (``always_add_missing_headers``) and most providers' submission servers
do.  Only on the submission roles: a message relayed to port 25 is never changed
(RFC 5321 §4.4 lets a relay add trace fields only).

The fields are computed from the header section alone (``missing_fields``), a pure
function, so an end-of-message stage that stores a prepended header block with the
spool row (DESIGN, seam "end of message") can call it as is.  Until that stage
exists the body file is the only place to put them, and it is write-once: the
session holds the header section (``HeaderSectionHold``) until its end is seen,
then writes the missing fields and the section, and streams the rest as before.
The hold is bounded by ``MAX_HEADER_SECTION``; a header section longer than that is
streamed unchanged and nothing is added (a message with 64 KiB of header fields is
no hand-written submission to complete).

* Date: RFC 5322 §3.3 ``date-time`` in the server's local zone with its numeric
  offset, as a mail client would write it.
* Message-ID: ``<YYYYmmddHHMMSS.<queue id>@<smtp.hostname>>`` (RFC 5322 §3.6.4: the
  right side a domain the server names, the left side unique within it; the queue
  id is unique, the time keeps ids apart across spool resets), Postfix's shape.
"""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import format_datetime

from mailwright.policy.builtin.from_header import MAX_HEADER_SECTION

_CRLF = b"\r\n"
_END_OF_HEADERS = b"\r\n\r\n"


def field_names(header_section: bytes) -> set[bytes]:
    """Lower-cased names of the fields in ``header_section`` (CRLF-separated lines;
    continuation lines start with white space; RFC 5322 §3.6.8 obs: WSP before ":")."""
    names = set()
    for line in header_section.split(_CRLF):
        if not line or line[:1] in (b" ", b"\t"):
            continue
        name, colon, _value = line.partition(b":")
        if colon:
            names.add(name.rstrip(b" \t").lower())
    return names


def missing_fields(
    header_section: bytes, *, hostname: str, queue_id: str, now: float | None = None
) -> bytes:
    """The ``Date:`` and ``Message-ID:`` lines ``header_section`` lacks (CRLF-ended)."""
    names = field_names(header_section)
    when = time.time() if now is None else now
    out = b""
    if b"date" not in names:
        date = format_datetime(datetime.fromtimestamp(when).astimezone())
        out += f"Date: {date}\r\n".encode("ascii")
    if b"message-id" not in names:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
        out += f"Message-ID: <{stamp}.{queue_id}@{hostname}>\r\n".encode()
    return out


class HeaderSectionHold:
    """Holds a message's first octets until its header section is complete, then
    releases the missing fields followed by what it held (see the module docstring).

    ``feed`` returns what may be written now; ``finish`` (at the end of the body)
    whatever is still held.  The output does not depend on how the body was split.
    """

    __slots__ = ("_held", "_hostname", "_now", "_queue_id", "done")

    def __init__(self, *, hostname: str, queue_id: str, now: float | None = None) -> None:
        self._hostname = hostname
        self._queue_id = queue_id
        self._now = now  # the Date: instant; None: the time of the release
        self._held = bytearray()
        self.done = False  # released: everything from now on passes straight through

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        start = max(len(self._held) - 3, 0)
        self._held += chunk
        if self._held.startswith(_CRLF):
            return self._release(0)  # an empty header section: the body comes first
        end = self._held.find(_END_OF_HEADERS, start)
        if end >= 0:
            return self._release(end + 2)
        # Not found, so a terminator can start no earlier than 3 octets from the end:
        # beyond this the section is sure to be longer than the limit, however the
        # input was split.
        if len(self._held) >= MAX_HEADER_SECTION + 2:
            return self._release(len(self._held))
        return b""

    def finish(self) -> bytes:
        """The end of the body: a message with no blank line is all header section."""
        if self.done:
            return b""
        return self._release(len(self._held))

    def _release(self, header_end: int) -> bytes:
        """Write out what is held, after the missing fields if the header section
        (``header_end`` octets) is within ``MAX_HEADER_SECTION``."""
        self.done = True
        if header_end > MAX_HEADER_SECTION:
            out = bytes(self._held)  # too long to be a submission we complete: as is
            self._held.clear()
            return out
        added = missing_fields(
            bytes(self._held[:header_end]),
            hostname=self._hostname,
            queue_id=self._queue_id,
            now=self._now,
        )
        out = added + bytes(self._held)
        self._held.clear()
        return out
