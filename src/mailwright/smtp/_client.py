"""ClientConnection: the client role of the sans-IO core (relay and `mailwright send`).

Mirror of ``ServerConnection``::

    data = conn.send(event)       # a command, DataChunk or EndOfData -> bytes to write
    conn.receive_data(bytes)      # b"" means EOF
    conn.next_event()             # a Reply, NEED_DATA, PAUSED or ConnectionClosed
    conn.tls_established()        # after the 220 to STARTTLS, once TLS is up

The reply decides the state (DESIGN principle 2), on this side as on the server's:
``state`` moves only when a reply is *received*, through the same ``_state.next_state``
the server moves by when it sends one (``client_next_state`` adds what only a client
can meet), so both ends agree after every reply.  What
the client may write is looked up in ``_state.CLIENT_WRITES``: message data only after
the 354 (a DATA answered 554 leaves the session where it was, and the next DataChunk
is refused, not sent as a body), nothing after DATA, STARTTLS, AUTH or QUIT until
their reply is in, and the octets a BDAT announced, counted, never framed (RFC 3030
§2).  Other commands may be pipelined (RFC 2920); replies are matched to them in
order (``pending`` counts the replies still owed).

After the 220 to STARTTLS, ``next_event`` answers PAUSED and input is dropped until
``tls_established()``, which also discards whatever was buffered behind the 220: a
man in the middle can append replies to it in plaintext, to be read as if they came
through TLS (response injection, the client half of CVE-2011-0411; "NO STARTTLS",
USENIX Security 2021).  The session then needs EHLO again (RFC 3207 §4.2).

A protocol error poisons the connection (h11's ERROR state): ``state`` becomes
``State.ERROR`` and every later call raises the first error's class.

LMTP (RFC 2033), with ``ClientConnection(lmtp=True)``: an ``Ehlo`` event is written as
LHLO (§4.1; HELO and EHLO do not exist in LMTP, so ``Helo`` is refused), and the end
of the data (the final dot, or BDAT LAST) is answered by one reply per recipient whose
RCPT was accepted, in RCPT order (§4.2).  The core counts the accepted recipients from
the replies it reads; once the first reply after the data is in, ``pending`` includes
the others still owed.

Commands are written by ``_commands.write_command``, the same module the server's
parser lives in.  Message data is dot-stuffed (RFC 5321 §4.5.2) and every bare CR or
LF is turned into CRLF, so a message we relay can never carry an ambiguous line end
to the next hop (the sending half of the smuggling defence).
"""

from __future__ import annotations

from collections import deque

from mailwright.smtp._buffer import ReceiveBuffer
from mailwright.smtp._commands import write_command
from mailwright.smtp._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailwright.smtp._events import (
    AuthResponse,
    Bdat,
    ConnectionClosed,
    DataChunk,
    Ehlo,
    EndOfData,
    Event,
    Helo,
    RcptTo,
)
from mailwright.smtp._replies import Reply, _valid_enhanced
from mailwright.smtp._server import NEED_DATA, PAUSED, _Sentinel
from mailwright.smtp._state import (
    CLIENT_GROUP_ENDERS,
    CLOSING_CODES,
    State,
    client_may_write,
    client_next_state,
    next_state,
)

# RFC 5321 §4.5.3.1.5 says 512; real servers send longer EHLO and error lines, so we
# accept up to the text-line limit before calling the reply broken.
MAX_REPLY_LINE_READ = 1000
MAX_REPLY_LINES = 100

_GREETING = _Sentinel("GREETING")  # what the first reply answers
# LMTP: the replies after the first one that answers the end of the data (RFC 2033 §4.2).
_LMTP_RECIPIENT = _Sentinel("LMTP_RECIPIENT")


def normalize_line_endings(data: bytes) -> bytes:
    """Turn CRLF, bare CR and bare LF into CRLF."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class _BodyWriter:
    """Frames one DATA body: CRLF line ends, dot-stuffed, however it is split."""

    __slots__ = ("_at_line_start", "_held_cr")

    def __init__(self) -> None:
        self._at_line_start = True
        self._held_cr = False  # a CR at the end of a chunk whose LF may come next

    def write(self, data: bytes, final: bool = False) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r") and not final:
            data = data[:-1]
            self._held_cr = True
        if not data:
            return b""
        data = normalize_line_endings(data)
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._at_line_start = data.endswith(b"\r\n")
        return data

    def finish(self) -> bytes:
        out = self.write(b"", final=True)
        if not self._at_line_start:
            out += b"\r\n"  # RFC 5321 §4.1.1.4: the body must end with CRLF
        return out + b".\r\n"


def read_reply(buf: ReceiveBuffer) -> Reply | None:
    """Take the next complete reply from ``buf``; None if it is not all there yet.
    Raises RemoteProtocolError on a malformed one."""
    lines: list[str] = []
    code = 0
    offset = 0
    while True:
        index = buf.find(b"\n", offset)
        if index < 0:
            if len(buf) - offset > MAX_REPLY_LINE_READ:
                raise RemoteProtocolError("reply line too long")
            return None
        raw = buf.peek(index)[offset:].rstrip(b"\r")
        offset = index + 1
        text = raw.decode("utf-8", "replace")
        if len(raw) < 3 or not raw[:3].isdigit() or (len(raw) > 3 and raw[3:4] not in b" -"):
            raise RemoteProtocolError(f"malformed reply line {text[:80]!r}")
        line_code = int(raw[:3])
        if code and line_code != code:
            raise RemoteProtocolError("reply lines with different codes")
        code = line_code
        lines.append(text[4:])
        if len(lines) > MAX_REPLY_LINES:
            raise RemoteProtocolError("reply has too many lines")
        if raw[3:4] != b"-":
            break
    buf.skip(offset)
    if not 200 <= code <= 599:
        raise RemoteProtocolError(f"reply code {code} out of range")
    return _make_reply(code, lines)


class ClientConnection:
    """The client side of one SMTP session, without any I/O."""

    def __init__(self, *, lmtp: bool = False) -> None:
        self.state = State.GREETING
        self.lmtp = lmtp
        self.tls_active = False
        # RCPTs answered positively in the current transaction (the LMTP reply count).
        self.accepted_recipients = 0
        self._buf = ReceiveBuffer()
        self._eof = False
        self._owed: deque[object] = deque([_GREETING])  # what each coming reply answers
        self._body: _BodyWriter | None = None  # open from the 354 to EndOfData
        self._chunk_left = 0  # octets the last BDAT announced and not yet written
        self._error: ProtocolError | None = None

    @property
    def pending(self) -> int:
        """Replies still owed to us (the greeting first), in the order they will come."""
        return len(self._owed)

    # -- output ------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes to write for ``event``.  LocalProtocolError (and the connection
        poisoned) when the event may not be written now."""
        self._check_usable()
        try:
            return self._write(event)
        except LocalProtocolError as exc:
            self._poison(exc)
            raise

    def _write(self, event: Event) -> bytes:
        name = type(event).__name__
        if self._chunk_left:
            # RFC 3030 §2: exactly the announced octets, before anything else.
            if not isinstance(event, DataChunk):
                raise LocalProtocolError(
                    f"{name} inside a BDAT chunk: {self._chunk_left} octets still owed"
                )
            if len(event.data) > self._chunk_left:
                raise LocalProtocolError(
                    f"DataChunk of {len(event.data)} octets, the BDAT chunk has "
                    f"{self._chunk_left} left"
                )
            self._chunk_left -= len(event.data)
            return event.data
        if isinstance(event, (DataChunk, EndOfData)):
            if self._body is None or not client_may_write(self.state, type(event)):
                raise LocalProtocolError(
                    f"{name} outside a message body (DATA not answered 354, or ended)"
                )
            if isinstance(event, DataChunk):
                return self._body.write(event.data)
            out = self._body.finish()
            self._body = None
            self._owed.append(event)
            return out
        if self._body is not None:
            raise LocalProtocolError(f"{name} inside the message body; send EndOfData first")
        if self._owed and type(self._owed[-1]) in CLIENT_GROUP_ENDERS:
            raise LocalProtocolError(
                f"{name} before the reply to {type(self._owed[-1]).__name__} "
                "(it ends a pipelined group)"
            )
        state = self.state
        if state is State.DATA:
            # The body has ended (we are past the branch above), and any reply to it
            # ends the transaction (ON_POSITIVE and ON_NEGATIVE agree): write as in
            # the state it will be in.
            state = State.READY
        if not client_may_write(state, type(event)) or (
            isinstance(event, AuthResponse) and self._owed
        ):
            raise LocalProtocolError(f"{name} may not be written in state {self.state.value}")
        if self.lmtp and isinstance(event, Helo):
            raise LocalProtocolError("HELO does not exist in LMTP (RFC 2033 §4.1): send LHLO")
        out = write_command(event)  # ValueError for text it cannot write: nothing changed
        if self.lmtp and isinstance(event, Ehlo):
            out = b"LHLO" + out[4:]  # same syntax, another verb (RFC 2033 §4.1)
        self._owed.append(event)
        if isinstance(event, Bdat):
            self._chunk_left = event.size
        return out

    # -- input -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self.state in (State.TLS, State.CLOSED, State.ERROR):
            # TLS: plaintext behind the 220 to STARTTLS is an injection, never a reply.
            return
        self._buf.extend(data)

    def next_event(self) -> Reply | _Sentinel | ConnectionClosed:
        """The next complete reply, NEED_DATA, PAUSED (the TLS handshake is owed) or
        ConnectionClosed.  RemoteProtocolError (and the connection poisoned) on a
        reply that is malformed or answers nothing."""
        self._check_usable()
        if self.state is State.CLOSED:
            return ConnectionClosed()
        if self.state is State.TLS:
            return PAUSED
        try:
            reply = read_reply(self._buf)
            if reply is not None:
                self._receive(reply)
        except RemoteProtocolError as exc:
            self._poison(exc)
            raise
        if reply is None:
            return ConnectionClosed() if self._eof else NEED_DATA
        return reply

    def _receive(self, reply: Reply) -> None:
        """Move the state by ``reply``, the answer to the oldest command owed one."""
        if not self._owed:
            if reply.code != 421:
                raise RemoteProtocolError(f"reply {reply.code} to no command")
            # RFC 5321 §3.8: a server may send 421 at any time before it closes.
            state = State.CLOSED
        else:
            event = self._owed.popleft()
            if event is _GREETING:
                state = next_state(State.GREETING, None, reply)
            elif event is _LMTP_RECIPIENT:
                state = State.CLOSED if reply.code in CLOSING_CODES else self.state
            else:
                state = client_next_state(self.state, event, reply)
                self._count_recipients(event, reply, state)
        if state is State.DATA and self.state is not State.DATA:
            self._body = _BodyWriter()
        elif state is State.CLOSED:
            self._body = None
            self._chunk_left = 0
        self.state = state

    def _count_recipients(self, event: object, reply: Reply, state: State) -> None:
        """Keep ``accepted_recipients`` for the reply to ``event`` that moved the
        session from ``self.state`` to ``state``."""
        ends_message = isinstance(event, EndOfData) or (
            isinstance(event, Bdat) and event.last and self.state in (State.RCPT, State.BDAT)
        )
        if isinstance(event, RcptTo) and reply.is_positive and state is State.RCPT:
            self.accepted_recipients += 1
        elif ends_message and self.lmtp and state is not State.CLOSED:
            # RFC 2033 §4.2: this was the first recipient's reply; the others follow.
            self._owed.extendleft([_LMTP_RECIPIENT] * (self.accepted_recipients - 1))
        if state not in (State.MAIL, State.RCPT, State.BDAT, State.DATA):
            self.accepted_recipients = 0  # no transaction (any more)

    def tls_established(self) -> None:
        """The transport finished the TLS handshake after the server's 220 to STARTTLS.

        Whatever was buffered behind the 220 came in plaintext: discarded, so an
        injected reply can never be read as the answer to a command sent over TLS.
        RFC 3207 §4.2: all knowledge from before TLS is void; EHLO again."""
        self._check_usable()
        if self.state is not State.TLS:
            exc = LocalProtocolError("tls_established() without a 220 to STARTTLS")
            self._poison(exc)
            raise exc
        self._buf.clear()
        self.tls_active = True
        self.state = State.NEED_HELO

    # -- errors ------------------------------------------------------------------

    def _poison(self, exc: ProtocolError) -> None:
        if self._error is None:
            self._error = exc
        self.state = State.ERROR
        self._body = None
        self._chunk_left = 0

    def _check_usable(self) -> None:
        if self._error is not None:
            raise type(self._error)(f"connection unusable after an earlier error: {self._error}")


def _make_reply(code: int, lines: list[str]) -> Reply:
    # An enhanced code leads every line of the reply when the server uses them
    # (RFC 2034 §4); keep it once, apart from the text.
    first, _, _ = lines[0].partition(" ")
    enhanced = first if _valid_enhanced(code, first) else ""
    if enhanced:
        lines = [line[len(enhanced) + 1 :] if line.startswith(enhanced) else line for line in lines]
    clean = tuple(line.replace("\r", "") for line in lines) or ("",)
    try:
        return Reply(code, enhanced, clean)
    except ValueError:
        # Over-long text from the peer: keep it readable rather than failing the session.
        # Cut by octets (Reply's limit is on the UTF-8 form), not by characters.
        return Reply(
            code,
            enhanced,
            tuple(line.encode()[:400].decode("utf-8", "ignore") for line in clean),
        )
