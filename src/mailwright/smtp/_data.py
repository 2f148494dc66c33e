"""The DATA body reader: dot-unstuffing, end-of-data detection, smuggling defence.

RFC 5321 §4.1.1.4: the body ends with ``CRLF . CRLF``; §4.5.2: a line beginning with
"." has had one extra "." added, which we remove.  §2.3.8: lines end with CRLF and
nothing else.

SMTP smuggling (CVE-2023-51764 Postfix, CVE-2023-51765 sendmail, CVE-2023-51766 Exim)
works because servers disagree about other end-of-data forms (``\\n.\\n``,
``\\r\\n.\\r``, ...).  Here only ``CRLF.CRLF`` ends DATA, and *any* bare CR or LF in
the body stops the reader at once with ``DataError.BARE_LINE_ENDING``.  We reject
rather than normalise: normalising means guessing which end-of-data the sender
meant, the very ambiguity the attack exploits.  The session then answers 521 5.5.2
and closes (as chasquid does, and Postfix 3.9 with ``smtpd_forbid_bare_newline=yes``):
whatever the client pipelined after its idea of end-of-data is never read as commands,
so one message can never be split into two.

A NUL octet is refused too (``DataError.NUL``, 554 5.6.0): text bodies exclude it
(RFC 2045 §2.7-2.8, RFC 6152 §3), and a next hop that drops NUL or ends a line at it
would read a different message, so a relayed message could smuggle through it.  The
stream is still in step, so the reader reads on to ``CRLF.CRLF`` (handing nothing more
over) and the session continues after the reply, as for a message that is too big.

BDAT bodies are framed by their count, not by lines, but once relayed over DATA they
are lines again: ``ChunkRules`` applies the same bare CR/LF and NUL rules to them
unless the transaction is ``BODY=BINARYMIME`` (RFC 3030 §3), which stays octet-exact
(Postfix's ``smtpd_forbid_bare_newline`` treats BDAT the same way).

The reader works on whole buffers with ``bytes.find``/``count``/``replace`` (C speed)
instead of line by line, holding back at most the four bytes that could start a
terminator split across reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.smtp._buffer import ReceiveBuffer
from mailwright.smtp._events import DataChunk, DataError, EndOfData

_TERMINATOR = b"\r\n.\r\n"
# Suffixes that may be the start of a terminator still arriving; longest first.
_HOLD_BACK = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")


def has_bare_line_ending(data: bytes) -> bool:
    """True if ``data`` holds a CR not followed by LF or an LF not preceded by CR."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def _first_bare_line_ending(data: bytes) -> int:
    """Index of the first bare CR or LF in ``data`` (error path only), or -1."""
    for i, byte in enumerate(data):
        if byte == 13 and data[i + 1 : i + 2] != b"\n":
            return i
        if byte == 10 and (i == 0 or data[i - 1] != 13):
            return i
    return -1


def _held_back(data: bytes) -> int:
    """How many trailing octets of ``data`` could start a terminator still arriving."""
    for suffix in _HOLD_BACK:
        if data.endswith(suffix):
            return len(suffix)
    return 0


class DataReader:
    """Reads one DATA body out of a ReceiveBuffer, a piece at a time."""

    __slots__ = ("_at_start", "_finished", "_max_size", "nul", "size", "too_big")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._at_start = True  # the body's first line may be "." or ".."
        self._finished = False  # terminator consumed, EndOfData still to be returned
        self.size = 0
        self.too_big = False
        self.nul = False  # a NUL was seen: nothing from it on is handed over

    def read(self, buf: ReceiveBuffer) -> DataChunk | EndOfData | None:
        """Next DataChunk, the EndOfData, or None when more input is needed."""
        while True:
            if self._finished:
                return self._end()
            data = buf.peek()
            if not data:
                return None
            if self._at_start:
                if data.startswith(b".\r\n"):
                    buf.skip(3)
                    return self._end()
                if data in (b".", b".\r"):
                    return None
            index = data.find(_TERMINATOR)
            if index >= 0:
                body_end, consumed = index + 2, index + len(_TERMINATOR)
            else:
                body_end = consumed = len(data) - _held_back(data)
            if consumed == 0:
                return None
            body = data[:body_end]
            if has_bare_line_ending(body):
                # Stop at the offending byte: nothing from it on is consumed or
                # interpreted.  The clean text before it is delivered first (less what
                # could begin a line end), exactly as if the input had stopped there,
                # so the events do not depend on how the input was split into reads.
                clean = body[: _first_bare_line_ending(body)]
                body_end = consumed = len(clean) - _held_back(clean)
                if consumed == 0:
                    return EndOfData(self.size, DataError.BARE_LINE_ENDING)
                body, index = clean[:body_end], -1
            buf.skip(consumed)
            self._finished = index >= 0
            if self._at_start:
                self._at_start = False
                if body.startswith(b"."):
                    body = body[1:]
            body = body.replace(b"\r\n.", b"\r\n")
            if body:
                # ``size`` counts every octet (the log wants the real size); only the
                # first ``max_size`` octets are handed over, however the input was split.
                room = self._max_size - self.size
                self.size += len(body)
                if self.nul:
                    continue  # refused already: read on to the end, hand nothing over
                nul = body.find(b"\0")
                if nul >= 0:
                    self.nul = True
                    body = body[:nul]
                if len(body) > room:
                    # RFC 5321 §4.2.5: read on to the end of DATA and answer 552 there.
                    self.too_big = True
                    body = body[: max(room, 0)]
                if body:
                    return DataChunk(body)

    def _end(self) -> EndOfData:
        if self.nul:
            return EndOfData(self.size, DataError.NUL)
        return EndOfData(self.size, DataError.TOO_BIG if self.too_big else None)


@dataclass(slots=True)
class ChunkRules:
    """DATA's content rules for the octets of BDAT chunks (not BODY=BINARYMIME).

    A byte-by-byte state machine (is the previous octet a CR?), so the verdict and the
    point where it is reached do not depend on how chunks or reads split the body: a
    CRLF may straddle two chunks, a CR that ends the message is bare.
    """

    cr_pending: bool = False  # the last octet checked was a CR still waiting for its LF

    def check(self, piece: bytes) -> tuple[int, DataError | None]:
        """(octets of ``piece`` before the one that shows an error, that error), or
        (``len(piece)``, None) when all of it is clean."""
        cr = self.cr_pending
        if not piece:
            return 0, None
        # Fast path (C speed): the piece without the LF that completes a pending CR
        # and without a trailing CR whose LF may be in the next piece.
        start = 1 if cr and piece[0] == 10 else 0
        end = len(piece) - 1 if piece[-1] == 13 else len(piece)
        if (start or not cr) and b"\0" not in piece and not has_bare_line_ending(piece[start:end]):
            self.cr_pending = end < len(piece)
            return len(piece), None
        for i, byte in enumerate(piece):
            if (cr and byte != 10) or (byte == 10 and not cr):
                return i, DataError.BARE_LINE_ENDING
            if byte == 0:
                return i, DataError.NUL
            cr = byte == 13
        raise AssertionError("the fast path and the octet loop disagree")  # pragma: no cover

    def finish(self) -> DataError | None:
        """At the end of the body (BDAT LAST): a CR left waiting is bare."""
        return DataError.BARE_LINE_ENDING if self.cr_pending else None
