"""The dialog of ``mailwright send`` as its user reads it.

Lines are recorded from the wire tap (``ClientSettings.trace``), so what is shown is
what was written and read, pipelined groups and the message body included, each line
with the seconds since the start.  Markers as swaks prints them: ``<-`` from the
server, ``->`` to it, ``<~``/``~>`` the same inside TLS, ``===`` what the client did,
``***`` what went wrong.

AUTH secrets never reach a line unless asked (``--show-secrets``): the AUTH command's
initial response and every client line of the SASL exchange (until the server's
reply is no longer 334, RFC 4954 §4) are replaced by ``********``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

REDACTED = "********"


class Kind(StrEnum):
    RECV = "recv"
    SEND = "send"
    INFO = "info"
    ERROR = "error"


MARKERS = {
    (Kind.RECV, False): "<- ",
    (Kind.SEND, False): " ->",
    (Kind.RECV, True): "<~ ",
    (Kind.SEND, True): " ~>",
    (Kind.INFO, False): "===",
    (Kind.ERROR, False): "***",
}
STYLES = {Kind.RECV: "cyan", Kind.SEND: "green", Kind.INFO: "dim", Kind.ERROR: "bold red"}


@dataclass(frozen=True, slots=True)
class Line:
    at: float  # seconds since the recorder started
    kind: Kind
    tls: bool
    text: str

    @property
    def marker(self) -> str:
        return MARKERS[(self.kind, self.tls and self.kind in (Kind.RECV, Kind.SEND))]

    def render(self, timings: bool = True) -> str:
        prefix = f"{self.at:8.3f} " if timings else ""
        line = f"{prefix}{self.marker} {self.text}"
        return line if self.text else line.rstrip(" ")  # no trailing blank

    def as_json(self) -> dict[str, object]:
        return {"t": round(self.at, 6), "dir": self.kind.value, "tls": self.tls, "line": self.text}


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", "replace")


class Recorder:
    """Collects lines; ``on_line`` (if set) sees each as it is complete (live output)."""

    def __init__(
        self,
        *,
        show_secrets: bool = False,
        on_line: Callable[[Line], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lines: list[Line] = []
        self.show_secrets = show_secrets
        self.on_line = on_line
        self._clock = clock
        self._start = clock()
        self._partial = {True: b"", False: b""}
        self._in_auth = False
        self._chunk_left = 0  # octets of the current BDAT chunk still to come

    def _add(self, kind: Kind, tls: bool, text: str) -> None:
        line = Line(self._clock() - self._start, kind, tls, text)
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def note(self, text: str) -> None:
        self._add(Kind.INFO, False, text)

    def error(self, text: str) -> None:
        self._add(Kind.ERROR, False, text)

    def trace(self, outgoing: bool, data: bytes, tls: bool) -> None:
        """``ClientSettings.trace``: split into lines, redact, record."""
        if outgoing:
            self._outgoing(data, tls)
            return
        buf = self._partial[False] + data
        *complete, rest = buf.split(b"\n")
        self._partial[False] = rest
        for raw in complete:
            text = _text(raw)
            self._reply_line(text)
            self._add(Kind.RECV, tls, text)

    def _outgoing(self, data: bytes, tls: bool) -> None:
        """Commands line by line; a BDAT chunk (RFC 3030 §2) is exactly its announced
        octets, shown as its lines, its last partial line ending with the chunk."""
        while data:
            if self._chunk_left:
                take = data[: self._chunk_left]
                data = data[len(take) :]
                self._chunk_left -= len(take)
                *complete, rest = (self._partial[True] + take).split(b"\n")
                for raw in complete:
                    self._add(Kind.SEND, tls, _text(raw))
                if not self._chunk_left and rest:
                    self._add(Kind.SEND, tls, _text(rest))
                    rest = b""
                self._partial[True] = rest
                continue
            buf = self._partial[True] + data
            end = buf.find(b"\n")
            if end < 0:
                self._partial[True] = buf
                return
            line, data = buf[:end], buf[end + 1 :]
            self._partial[True] = b""
            text = _text(line)
            self._add(Kind.SEND, tls, self._redact(text))
            words = text.split()
            if len(words) >= 2 and words[0].upper() == "BDAT" and words[1].isdigit():
                self._chunk_left = int(words[1])

    def flush(self) -> None:
        """A last line without its line end (a peer that closed mid-line)."""
        for outgoing, rest in self._partial.items():
            if rest:
                self._partial[outgoing] = b""
                self._add(
                    Kind.SEND if outgoing else Kind.RECV, False, rest.decode("utf-8", "replace")
                )

    def _redact(self, text: str) -> str:
        if self._in_auth:
            return text if self.show_secrets else REDACTED
        words = text.split(" ")
        if words[0].upper() == "AUTH":
            self._in_auth = True
            if len(words) > 2 and not self.show_secrets:
                return " ".join([*words[:2], REDACTED])
        return text

    def _reply_line(self, text: str) -> None:
        # The last line of a reply ("334 ..." or "235 ...") ends the step; only 334
        # keeps the SASL exchange going.
        if self._in_auth and (len(text) < 4 or text[3] != "-") and not text.startswith("334"):
            self._in_auth = False
