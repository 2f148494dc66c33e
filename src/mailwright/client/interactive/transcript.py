"""The session's transcript: every line on the wire, in order, with its direction.

The markers are swaks' (which its users read at a glance): ``->`` what we sent,
``<-`` what the server sent, ``~>`` and ``<~`` the same inside TLS, and ``==`` for what
the session did locally (connected, TLS started, raw mode on).  AUTH lines are kept
redacted: the transcript is written to be shared, and a base64 PLAIN or LOGIN line
is the password.

Lines are recorded from the octets the core wrote and the replies it read, so the
transcript is the wire, not what was typed (``mail from:<a>`` is sent, and recorded,
as ``MAIL FROM:<a>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mailwright.smtp import Reply

REDACTED = "<redacted>"


class Direction(Enum):
    SENT = "sent"
    RECEIVED = "received"
    LOCAL = "local"


_MARKERS = {
    (Direction.SENT, False): "->",
    (Direction.SENT, True): "~>",
    (Direction.RECEIVED, False): "<-",
    (Direction.RECEIVED, True): "<~",
}


@dataclass(frozen=True, slots=True)
class Line:
    direction: Direction
    tls: bool
    text: str

    def render(self) -> str:
        marker = _MARKERS.get((self.direction, self.tls), "==")
        return f"{marker} {self.text}"


def wire_lines(data: bytes) -> list[str]:
    """``data`` as written, one entry per line: CRLF ends a line; a bare CR or LF
    (raw mode) is shown as ``\\r``/``\\n`` so the transcript says what was sent."""
    lines: list[str] = []
    for part in data.split(b"\r\n"):
        text = part.decode("utf-8", "replace")
        lines.append(text.replace("\r", "\\r").replace("\n", "\\n"))
    if lines and lines[-1] == "":
        lines.pop()  # the CRLF that ended the last line
    elif lines:
        lines[-1] += "  (no line end)"
    return lines


def reply_lines(reply: Reply) -> list[str]:
    """A reply as the server wrote it: ``250-first``, ..., ``250 last``."""
    prefix = f"{reply.code}"
    enhanced = f"{reply.enhanced} " if reply.enhanced else ""
    last = len(reply.lines) - 1
    return [
        f"{prefix}{' ' if i == last else '-'}{enhanced}{line}".rstrip()
        for i, line in enumerate(reply.lines)
    ]


class Transcript:
    def __init__(self) -> None:
        self.lines: list[Line] = []

    def sent(self, data: bytes, tls: bool) -> list[Line]:
        return self._add(Direction.SENT, tls, wire_lines(data))

    def sent_text(self, text: str, tls: bool) -> list[Line]:
        """A line recorded as given (a redacted AUTH line)."""
        return self._add(Direction.SENT, tls, [text])

    def received(self, reply: Reply, tls: bool) -> list[Line]:
        return self._add(Direction.RECEIVED, tls, reply_lines(reply))

    def received_text(self, text: str, tls: bool) -> list[Line]:
        """A line as it came in raw mode, not (necessarily) a reply."""
        return self._add(Direction.RECEIVED, tls, [text])

    def local(self, text: str) -> list[Line]:
        return self._add(Direction.LOCAL, False, [text])

    def _add(self, direction: Direction, tls: bool, texts: list[str]) -> list[Line]:
        new = [Line(direction, tls, text) for text in texts]
        self.lines.extend(new)
        return new

    def render(self) -> str:
        return "".join(line.render() + "\n" for line in self.lines)

    def save(self, path: Path) -> None:
        """Write the transcript so far to ``path`` (OSError for the caller to word)."""
        path.write_text(self.render(), "utf-8")
