"""SMTP replies: a validated value type and the named replies the server uses.

RFC 5321 §4.2 gives the reply grammar; RFC 3463 / RFC 2034 the enhanced status codes
that every reply we send carries (ENHANCEDSTATUSCODES is always advertised).
Handlers return a ``Reply``; only the session loop serialises it (DESIGN principle 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.smtp.limits import MAX_REPLY_LINE


def _valid_enhanced(code: int, enhanced: str) -> bool:
    # RFC 3463 §2: class.subject.detail, class matching the reply's first digit.
    parts = enhanced.split(".")
    if len(parts) != 3 or not all(p.isdigit() and 0 < len(p) <= 3 for p in parts):
        return False
    return parts[0] == str(code // 100) and parts[0] in ("2", "4", "5")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply.  ``lines`` are the text lines without code or CRLF.

    ``enhanced`` is "" only for the greeting/1xx-3xx replies where RFC 2034 §3 does not
    use one (220, 221 may still carry one; 354 never does).

    ``counts_as_error`` is False for the few refusals that are a well-behaved client's
    normal flow rather than a mistake, so the session neither counts them towards its
    error limit nor tarpits them (see ``codes.R452_TOO_MANY_RECIPIENTS``).
    """

    code: int
    enhanced: str
    lines: tuple[str, ...]
    # The server's own judgement, not part of the wire form: a reply parsed back from
    # the wire equals the one that was sent.
    counts_as_error: bool = field(default=True, kw_only=True, compare=False)
    # The wire form, built on first use and kept: most replies the server sends are
    # module constants sent many times; most the client parses are never re-sent.
    _wire: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code {self.code} out of range")
        if self.enhanced and not _valid_enhanced(self.code, self.enhanced):
            raise ValueError(f"enhanced code {self.enhanced!r} does not match {self.code}")
        if not self.lines:
            raise ValueError("a reply needs at least one line of text")
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not contain CR or LF")
            if len(line.encode("utf-8")) > MAX_REPLY_LINE - 16:
                raise ValueError("reply line too long")

    @classmethod
    def of(cls, code: int, enhanced: str, *lines: str, counts_as_error: bool = True) -> Reply:
        return cls(code, enhanced, tuple(lines) or ("",), counts_as_error=counts_as_error)

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def to_bytes(self) -> bytes:
        wire = self._wire
        if not wire:  # never empty once built: every reply ends with CRLF
            wire = self._serialise()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _serialise(self) -> bytes:
        out = []
        last = len(self.lines) - 1
        prefix = f"{self.enhanced} " if self.enhanced else ""
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            # RFC 2034 §4: the enhanced code is repeated on every line of a multiline
            # reply, except for EHLO capability lists (no prefix there by convention).
            text = f"{self.code}{sep}{prefix}{line}"
            # RFC 4954 §4: an empty SASL challenge is "334 " (with the space).
            out.append((text if self.code == 334 else text.rstrip(" ")) + "\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        prefix = f"{self.enhanced} " if self.enhanced else ""
        return f"{self.code} {prefix}{self.text}"
