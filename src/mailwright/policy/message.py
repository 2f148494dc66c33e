"""The typed transaction of the MESSAGE stage: what end-of-message hooks see and may
change.

The stage runs after the last body byte and before the spool commit (DESIGN, seam
"end of message").  A hook reads the envelope, the header section as received and
the size, leaves what it found in ``results`` (SPF, DKIM, DMARC, a filter's score)
for the hooks after it, and may add header fields with ``add_field``.  The body file
is write-once: added fields are not written into it but stored with the spool row
and prepended when the message is read back for delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.spool.model import Envelope

# Fields parsed out of the header section for hooks; the rest are not listed (RFC
# 5322 sets no limit; Postfix's header_size_limit bounds a header's octets, this
# bounds how many (name, value) pairs a session may hold).
MAX_HEADER_FIELDS = 1000

# RFC 5322 §2.1.1: a line is at most 998 characters; a field a hook adds is folded
# by the hook, and each of its lines is kept within this.
MAX_ADDED_LINE = 998


@dataclass(slots=True)
class MessageTransaction:
    envelope: Envelope
    # The header section as the client sent it (CRLF line ends, without our Received
    # and without fields added at submission), bounded by
    # ``from_header.MAX_HEADER_SECTION``.
    header_section: bytes
    size: int  # octets of the body as received (SIZE / BDAT sum)
    # What hooks found, keyed by the check's name ("spf", "dkim", ...), for the
    # hooks after them and for Authentication-Results.
    results: dict[str, object] = field(default_factory=dict)
    # Whole header fields (name, colon, value, CRLF) in the order added.  Each is
    # prepended as a trace field is (RFC 5321 §4.4), so the last added ends up on top:
    # a DKIM-Signature added after an Authentication-Results sits above it.
    added_fields: list[bytes] = field(default_factory=list)
    _fields: list[tuple[str, str]] | None = None

    @property
    def header_block(self) -> bytes:
        """The added fields as they go above the message: the last added first."""
        return b"".join(reversed(self.added_fields))

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The header section as (name, unfolded value) pairs, at most
        ``MAX_HEADER_FIELDS``; parsed on first use, so a stage whose hooks never ask
        costs nothing."""
        if self._fields is None:
            self._fields = parse_fields(self.header_section)
        return self._fields

    def add_field(self, name: str, value: str) -> None:
        """Add ``name: value`` above the message's header section (RFC 8601 §5 and
        RFC 7208 §9.1: trace and authentication fields go at the top).  ``value`` may
        be folded (CRLF followed by white space); anything that could end the header
        section or smuggle another field is refused."""
        line = f"{name}: {value}".encode()
        if not name or not name.isascii() or any(c in name for c in ": \t\r\n"):
            raise ValueError(f"not a header field name: {name!r}")
        for part in line.split(b"\r\n"):
            if b"\r" in part or b"\n" in part or len(part) > MAX_ADDED_LINE:
                raise ValueError(f"not a header field line: {part[:40]!r}")
        if any(p[:1] not in (b" ", b"\t") or not p.strip() for p in line.split(b"\r\n")[1:]):
            raise ValueError(f"a continuation line must start with white space: {name}")
        self.added_fields.append(line + b"\r\n")


def parse_fields(header_section: bytes) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in header_section.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:  # a continuation (RFC 5322 §2.2.3): unfold into the last field
                name, value = fields[-1]
                fields[-1] = (name, value + line.decode("utf-8", "replace"))
            continue
        if len(fields) >= MAX_HEADER_FIELDS:
            break
        raw_name, colon, raw_value = line.partition(b":")
        if not colon:
            continue  # not a field; the parser of the mail client would skip it too
        name_text = raw_name.decode("ascii", "replace").strip()
        fields.append((name_text, raw_value.decode("utf-8", "replace").strip()))
    return fields
