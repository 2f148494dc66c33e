"""The line protocol of ``mailwright session``: typed lines in, octets out; octets
in, replies out.  No I/O: the terminal (``terminal``) owns the socket and the prompt.

Three modes, as the session's prompt shows them:

* ``smtp>`` -- each line is parsed as a command with the core's own parser (the
  server's, so a line the core cannot read is refused here, with the reason, and
  nothing is sent) and written by ``smtp.ClientConnection``, whose state moves by the
  replies it reads.  ``STARTTLS`` and ``auth MECH USER`` are helpers the terminal runs;
  ``raw``, ``save FILE`` and ``?`` are local.
* ``data>`` -- from the 354 on, lines are message lines (``data``), a lone ``.`` ends.
* ``raw>`` -- lines are sent exactly as typed (``escapes``), past the core; what comes
  back is shown line by line.  Leaving raw mode starts a fresh core that has read
  the session's greeting: the next command must be EHLO or HELO, which RFC 5321
  §4.1.4 allows at any time and which resets whatever raw mode left half done.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from mailwright.client.interactive.auth import MECHANISMS, USAGE
from mailwright.client.interactive.data import frame_body_line
from mailwright.client.interactive.escapes import EscapeError, decode_raw
from mailwright.client.interactive.transcript import REDACTED, Line, Transcript
from mailwright.smtp import (
    Auth,
    AuthResponse,
    Bdat,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Ehlo,
    Event,
    Helo,
    LocalProtocolError,
    ParseContext,
    ProtocolError,
    Quit,
    Reply,
    StartTls,
    State,
    parse_command,
    parse_ehlo,
)

HELP = """\
Type SMTP commands as you would in telnet; each reply comes with what it means.
  EHLO name, MAIL FROM:<a@b>, RCPT TO:<c@d>, DATA, RSET, NOOP, VRFY, QUIT ...
  after DATA's 354: the message lines; a line with a lone . ends it (dots are doubled
                    for you, RFC 5321 §4.5.2)
  starttls          STARTTLS and the TLS handshake; EHLO again afterwards (RFC 3207)
  auth MECH USER    AUTH plain|login|cram-md5|scram-sha-256; the password is asked for
  raw               toggle raw mode: lines go out exactly as typed, with \\r \\n \\t \\\\
                    \\xHH escapes; a line with a \\r or \\n escape gets no CRLF added
  save FILE         write the transcript so far to FILE
  ?                 this help;  Tab completes;  Ctrl-D sends QUIT and ends the session"""

_RAW_REPLY = re.compile(r"^([2-5]\d\d)(?: (\d\.\d{1,3}\.\d{1,3}))?(?: (.*))?$")


class Mode(Enum):
    COMMAND = "smtp"
    DATA = "data"
    RAW = "raw"


# -- what a typed line asks the terminal to do -------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``data``; ``lines`` are what the transcript recorded for it."""

    data: bytes
    lines: list[Line] = field(default_factory=list)
    ended_data: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    """Nothing is sent; show ``text``."""

    text: str


@dataclass(frozen=True, slots=True)
class StartTlsRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthRequest:
    mechanism: str
    username: str


@dataclass(frozen=True, slots=True)
class SaveRequest:
    path: str


Action = Write | Note | StartTlsRequest | AuthRequest | SaveRequest


# -- what came in --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A reply (``reply`` None for a raw-mode line that is not one) and its lines."""

    reply: Reply | None
    lines: list[Line]


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str
    protocol_error: bool = False


class LineProtocol:
    """One interactive session's protocol state (see the module docstring)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.conn = ClientConnection()
        self.transcript = Transcript()
        self.tls = tls  # the transport is TLS (implicit, or after STARTTLS)
        self.raw = False
        self.extensions: dict[str, str] = {}  # from the last EHLO reply
        self.greeting: Reply | None = None
        self.closed = False
        self.quit_sent = False  # the session ends as the user asked once this is answered
        self.last_reply: Reply | None = None
        self._owed: deque[Event | None] = deque([None])  # None: the greeting
        self._raw_buffer = b""

    @property
    def mode(self) -> Mode:
        if self.raw:
            return Mode.RAW
        if self.conn.state is State.DATA and not self.conn.pending:
            # From the 354 until the final dot; once the dot is written the state
            # stays DATA until its reply, but what is typed then is no body line.
            return Mode.DATA
        return Mode.COMMAND

    @property
    def waiting(self) -> bool:
        """Replies are owed to commands already written (never in raw mode)."""
        return not self.raw and not self.closed and self.conn.pending > 0

    # -- typed lines ----------------------------------------------------------------

    def typed(self, line: str) -> Action:
        if self.raw:
            if line.strip().lower() == "raw":
                return Note(self.leave_raw())
            try:
                data = decode_raw(line)
            except EscapeError as exc:
                return Note(f"not sent: {exc}")
            self.quit_sent |= data[:4].upper() == b"QUIT"
            return Write(data, self.transcript.sent(data, self.tls))
        if self.closed:
            return Note("the connection is closed")
        if self.mode is Mode.DATA:
            data, ended = frame_body_line(self.conn, line)
            if ended:
                self._owed.append(None)
            return Write(data, self.transcript.sent(data, self.tls), ended_data=ended)
        return self._command(line)

    def _command(self, line: str) -> Action:
        words = line.split()
        if not words:
            return Note("")
        verb = words[0].lower()
        if verb == "?":
            return Note(HELP)
        if verb == "raw" and len(words) == 1:
            return Note(self.enter_raw())
        if verb == "save":
            if len(words) != 2:
                return Note("usage: save FILE")
            return SaveRequest(words[1])
        if verb == "auth":
            if len(words) != 3 or words[1].upper() not in MECHANISMS:
                return Note(USAGE)
            return AuthRequest(words[1].upper(), words[2])
        if self.conn.pending:
            return Note(f"not sent: {self.conn.pending} reply(ies) still owed")
        event = parse_command(line.encode("utf-8"), ParseContext(frozenset(self.extensions)))
        if isinstance(event, CommandError):
            return Note(f"not sent: {event.reply.text}; type raw to send lines exactly as typed")
        if isinstance(event, StartTls):
            return StartTlsRequest()
        if isinstance(event, Bdat):
            return Note(
                "not sent: BDAT chunks cannot be typed; use raw mode, or mailwright send --bdat"
            )
        try:
            return self.send(event)
        except (LocalProtocolError, ValueError) as exc:
            # Not reached while the terminal waits for every reply before the next
            # line; if it were, the core is now unusable and the session ends.
            return Note(f"not sent: {exc}")

    def send(self, event: Event) -> Write:
        """Write ``event`` through the core; AUTH lines are recorded redacted."""
        data = self.conn.send(event)
        self._owed.append(event)
        self.quit_sent |= isinstance(event, Quit)
        if isinstance(event, Auth):
            shown = f"AUTH {event.mechanism}"
            if event.initial_response is not None:
                shown += f" {REDACTED}"
            lines = self.transcript.sent_text(shown, self.tls)
        elif isinstance(event, AuthResponse):
            text = "*" if event.data is None else REDACTED
            lines = self.transcript.sent_text(text, self.tls)
        else:
            lines = self.transcript.sent(data, self.tls)
        return Write(data, lines)

    # -- raw mode -------------------------------------------------------------------

    def enter_raw(self) -> str:
        self.raw = True
        self.transcript.local("raw mode on")
        return (
            "raw mode: lines are sent exactly as typed (\\r \\n \\t \\\\ \\xHH escapes); "
            "type raw to leave"
        )

    def leave_raw(self) -> str:
        self.raw = False
        if self._raw_buffer:
            self._raw_buffer = b""
        conn = ClientConnection()
        if self.greeting is not None:
            conn.receive_data(self.greeting.to_bytes())
            conn.next_event()
        self.conn = conn
        self._owed = deque() if self.greeting is not None else deque([None])
        self.extensions = {}
        self.transcript.local("raw mode off")
        return "raw mode off: send EHLO or HELO next (RFC 5321 §4.1.4)"

    # -- input ----------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Received | Closed]:
        """What ``data`` (b"" for the end of the stream) completed."""
        if self.raw:
            return self._receive_raw(data)
        self.conn.receive_data(data)
        out: list[Received | Closed] = []
        while not self.closed:
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                self.closed = True
                out.append(Closed(f"protocol error: {exc}", protocol_error=True))
                break
            if isinstance(event, Reply):
                out.append(Received(event, self._received(event)))
            elif isinstance(event, ConnectionClosed):
                self.closed = True
                out.append(Closed("connection closed by the server"))
            else:  # NEED_DATA, or PAUSED: the TLS handshake is owed
                break
        return out

    def _received(self, reply: Reply) -> list[Line]:
        answered = self._owed.popleft() if self._owed else None
        self.last_reply = reply
        if answered is None and self.greeting is None:
            self.greeting = reply
        if isinstance(answered, Ehlo) and reply.is_positive:
            self.extensions = parse_ehlo(reply)
        elif isinstance(answered, Helo) and reply.is_positive:
            self.extensions = {}
        return self.transcript.received(reply, self.tls)

    def _receive_raw(self, data: bytes) -> list[Received | Closed]:
        out: list[Received | Closed] = []
        self._raw_buffer += data
        *complete, self._raw_buffer = self._raw_buffer.split(b"\n")
        if not data and self._raw_buffer:
            complete.append(self._raw_buffer)
            self._raw_buffer = b""
        for raw_line in complete:
            text = raw_line.removesuffix(b"\r").decode("utf-8", "replace")
            out.append(Received(raw_reply(text), self.transcript.received_text(text, self.tls)))
        if not data:
            self.closed = True
            out.append(Closed("connection closed by the server"))
        return out

    # -- TLS ------------------------------------------------------------------------

    def tls_started(self, description: str) -> Line:
        """The handshake after the 220 to STARTTLS is done: the core drops what came
        behind the 220 and needs EHLO again (RFC 3207 §4.2)."""
        if not self.raw:
            self.conn.tls_established()
        self.tls = True
        self.extensions = {}
        return self.transcript.local(f"TLS started: {description}")[0]


def raw_reply(text: str) -> Reply | None:
    """The reply a raw-mode line ends, if it is the last line of one (``250 ...``),
    so raw mode can explain it too; None for anything else."""
    match = _RAW_REPLY.match(text)
    if match is None:
        return None
    code, enhanced, rest = match.groups()
    try:
        return Reply(int(code), enhanced or "", (rest or "",))
    except ValueError:  # an enhanced code of the wrong class: keep it as text
        return Reply(int(code), "", (f"{enhanced} {rest or ''}".rstrip(),))
