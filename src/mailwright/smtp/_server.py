"""ServerConnection: the server role of the sans-IO core.

I/O contract (after h11)::

    conn.receive_data(bytes)      # b"" means EOF
    conn.next_event()             # an Event, NEED_DATA or PAUSED
    conn.send(reply) -> bytes     # the answer to the event that paused the connection

Every event except ``DataChunk`` pauses the connection until ``send`` answers it; that
is how the reply decides the state (see ``_state``) and how pipelined replies stay in
order.  The core answers nothing by itself: protocol problems arrive as
``CommandError`` events whose ``reply`` the application sends (and counts, and logs),
so exactly one place writes to the wire (DESIGN principle 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.smtp import codes
from mailwright.smtp._buffer import ReceiveBuffer
from mailwright.smtp._commands import (
    EXTENDED_VERBS,
    ParseContext,
    parse_auth_response,
    parse_command,
)
from mailwright.smtp._data import ChunkRules, DataReader
from mailwright.smtp._errors import LocalProtocolError
from mailwright.smtp._events import (
    Auth,
    AuthResponse,
    Bdat,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataError,
    Ehlo,
    EndOfData,
    Event,
    Helo,
    MailFrom,
    RcptTo,
    Rset,
    StartTls,
)
from mailwright.smtp._replies import Reply
from mailwright.smtp._state import ALLOWED, State, next_state, sequence_error
from mailwright.smtp.limits import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECIPIENTS,
    MAX_AUTH_LINE,
    MAX_COMMAND_LINE,
    MAX_EXTENDED_COMMAND_LINE,
)

_NO_EXTENSIONS: frozenset[str] = frozenset()  # HELO sessions: no ESMTP parameters


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")  # feed more bytes with receive_data()
PAUSED = _Sentinel("PAUSED")  # a reply is owed (or the TLS handshake is)
_GREETING = _Sentinel("GREETING")  # the owed "event" before the 220
# A command line that was dropped while it arrived because it outgrew the limit.  A
# sentinel, not marker bytes: no input a client sends can be mistaken for it.
_LINE_TOO_LONG = _Sentinel("LINE_TOO_LONG")

# Every extension the core knows how to parse.  RFC 2920, 1870, 6152, 6531, 2034, 3030,
# 3461; BINARYMIME (RFC 3030 §3) rides on CHUNKING.
DEFAULT_EXTENSIONS = frozenset(
    {
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
    }
)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    extensions: frozenset[str] = DEFAULT_EXTENSIONS


@dataclass(slots=True)
class Transaction:
    """The envelope so far: only what the application answered positively."""

    mail: MailFrom | None = None
    rcpts: list[RcptTo] = field(default_factory=list)
    bdat_size: int = 0  # octets received by BDAT so far
    bdat_too_big: bool = False
    # Bare CR/LF and NUL rules for BDAT bodies that are not BINARYMIME (see _data).
    bdat_rules: ChunkRules = field(default_factory=ChunkRules)
    bdat_error: DataError | None = None  # the first rule broken; nothing more is kept


class ServerConnection:
    """The server side of one SMTP session, without any I/O."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.state = State.GREETING
        self.transaction = Transaction()
        self.helo: str | None = None
        self.esmtp = False
        self.authenticated = False
        self.tls_active = False
        self.early_talker = False  # bytes arrived before the greeting was sent
        self.extensions = self.options.extensions  # the net layer adds STARTTLS / AUTH
        self._buf = ReceiveBuffer()
        self._eof = False
        self._owed: object | None = _GREETING
        self._data: DataReader | None = None
        self._discarding_line = False
        # BDAT chunk being read: remaining octets and what to yield when it is done.
        self._bdat_remaining = 0
        self._bdat_event: Event | None = None
        self._close_after_reply = False  # set when the stream can no longer be framed
        # The transport has handed the connection to TLS (begin_tls): input from now
        # on came through TLS, even before the handshake is reported complete.
        self._tls_begun = False
        self._parse_context = ParseContext(_NO_EXTENSIONS)

    # -- input -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self.state is State.CLOSED:
            return
        if self.state is State.GREETING:
            self.early_talker = True
        if self.state is State.TLS and not self._tls_begun:
            # RFC 3207 §4.2 / CVE-2011-0411: plaintext sent after STARTTLS and before
            # the handshake must never be read as commands.
            return
        self._buf.extend(data)

    @property
    def peer_closed(self) -> bool:
        """The peer sent EOF (``receive_data(b"")``)."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Unprocessed input octets; the transport stops reading above a limit."""
        return len(self._buf)

    def begin_tls(self) -> None:
        """The transport hands the connection to TLS now, after our 220 to STARTTLS.

        What is buffered is plaintext that followed STARTTLS: discarded (CVE-2011-0411).
        What is fed from now on came through TLS and is kept: a client's EHLO can end
        the same read as its last handshake message, so it reaches us before the
        transport reports the handshake complete (``tls_established``).  Discarding
        it then lost the EHLO of busy clients, who waited for a reply until they
        timed out.
        """
        if self.state is not State.TLS:
            raise LocalProtocolError("begin_tls() without an accepted STARTTLS")
        self._buf.clear()
        self._tls_begun = True

    def tls_established(self) -> None:
        """The transport finished the TLS handshake after our 220 to STARTTLS."""
        if self.state is not State.TLS:
            raise LocalProtocolError("tls_established() without an accepted STARTTLS")
        if not self._tls_begun:
            self._buf.clear()  # no begin_tls(): all that is buffered is plaintext
        self._tls_begun = False
        self.tls_active = True
        self.helo = None
        self.esmtp = False
        self.authenticated = False  # RFC 3207 §4.2: forget all pre-TLS knowledge
        self.transaction = Transaction()
        self.state = State.NEED_HELO  # RFC 3207 §4.2: the client must EHLO again

    def start_tls_direct(self) -> None:
        """Mark an implicit-TLS session (RFC 8314) before the greeting."""
        self.tls_active = True

    # -- events ------------------------------------------------------------------

    def next_event(self) -> Event | _Sentinel:
        if self.state is State.CLOSED:
            return ConnectionClosed()
        if self._owed is not None or self.state is State.TLS:
            return PAUSED
        if self.state is State.DATA:
            assert self._data is not None
            event: Event | None = self._data.read(self._buf)
            if event is None:
                return ConnectionClosed() if self._eof else NEED_DATA
            if isinstance(event, EndOfData):
                self._owed = event
            return event
        if self._bdat_event is not None:
            return self._read_bdat()
        line = self._read_line()
        if line is None:
            return ConnectionClosed() if self._eof else NEED_DATA
        event = self._parse(line)
        if isinstance(event, Bdat):
            return self._start_bdat(event)
        if (
            isinstance(event, CommandError)
            and isinstance(line, bytes)
            and line[:4].upper() == b"BDAT"
        ):
            # No usable chunk size: we cannot know where the chunk ends, so we cannot
            # stay in step with the client (RFC 3030 §2).  Answer, then close.
            self._close_after_reply = True
        self._owed = event
        return event

    def _read_line(self) -> bytes | _Sentinel | None:
        """The next line without its line end, ``_LINE_TOO_LONG`` for a line that was
        dropped while it arrived, or None when no complete line is buffered."""
        buf = self._buf
        index = buf.find(b"\n")
        if index < 0:
            # RFC 4954 §4: AUTH (with an initial response) and SASL lines may be longer.
            auth = self.state is State.AUTH or buf.peek(5).upper() == b"AUTH "
            limit = MAX_AUTH_LINE if auth else MAX_EXTENDED_COMMAND_LINE
            if len(buf) > limit:
                # Too long: drop what we have and keep dropping to the end of the line,
                # so an endless line costs no memory (RFC 5321 §4.5.3.1.4).
                buf.clear()
                self._discarding_line = True
            return None
        line = buf.take_line(index)
        if self._discarding_line:
            self._discarding_line = False
            return _LINE_TOO_LONG
        return line

    def _parse(self, line: bytes | _Sentinel) -> Event:
        # A too-long line is reported without its text, whether it was dropped while
        # arriving (_read_line) or seen whole, so the event does not depend on reads.
        if line is _LINE_TOO_LONG:
            return CommandError(codes.R500_LINE_TOO_LONG)
        assert isinstance(line, bytes)
        if self.state is State.AUTH:
            if len(line) + 2 > MAX_AUTH_LINE:
                return CommandError(codes.R500_LINE_TOO_LONG)
            return parse_auth_response(line)
        verb = line[:5].split(b" ", 1)[0].upper()
        if len(line) + 2 > MAX_COMMAND_LINE:  # only then does the verb's own limit matter
            limit = (
                MAX_AUTH_LINE
                if verb == b"AUTH"
                else MAX_EXTENDED_COMMAND_LINE
                if verb.decode("ascii", "replace") in EXTENDED_VERBS
                else MAX_COMMAND_LINE
            )
            if len(line) + 2 > limit:
                return CommandError(codes.R500_LINE_TOO_LONG)
        if verb == b"BDAT" and "CHUNKING" not in self.extensions:
            return CommandError(codes.R500_UNRECOGNIZED, line)
        extensions = self.extensions if self.esmtp else _NO_EXTENSIONS
        if self._parse_context.extensions is not extensions:  # rebuilt only on change
            self._parse_context = ParseContext(extensions)
        event = parse_command(line, self._parse_context)
        if isinstance(event, Bdat):
            return event  # checked by _start_bdat, after its chunk is consumed
        return self._check(event)

    def _check(self, event: Event) -> Event:
        """Sequence and limit checks that need session state (answers per RFC 5321)."""
        if isinstance(event, CommandError):
            return event
        if isinstance(event, StartTls) and self.tls_active:
            return CommandError(codes.R503_TLS_ACTIVE)
        if isinstance(event, Auth) and self.authenticated:
            return CommandError(codes.R503_ALREADY_AUTHENTICATED)
        allowed = ALLOWED.get(type(event))
        if allowed is not None and self.state not in allowed:
            return CommandError(sequence_error(type(event), self.state))
        if isinstance(event, MailFrom):
            size = event.params.size
            if size is not None and size > self.options.max_message_size:
                return CommandError(codes.R552_TOO_BIG)
        elif isinstance(event, RcptTo):
            if len(self.transaction.rcpts) >= self.options.max_recipients:
                return CommandError(codes.R452_TOO_MANY_RECIPIENTS)
            mail = self.transaction.mail
            if event.address.is_utf8 and not (mail and mail.params.smtputf8):
                return CommandError(codes.R553_UTF8_NOT_ALLOWED)
        elif isinstance(event, Data):
            mail = self.transaction.mail
            if mail is not None and mail.params.body == "BINARYMIME":
                return CommandError(codes.R503_BINARYMIME_NEEDS_BDAT)
        return event

    # -- BDAT (RFC 3030) -----------------------------------------------------------

    def _start_bdat(self, event: Bdat) -> Event | _Sentinel:
        checked = self._check(event)
        self._bdat_remaining = event.size
        self._bdat_event = checked
        return self._read_bdat()

    def _read_bdat(self) -> Event | _Sentinel:
        accepting = isinstance(self._bdat_event, Bdat)
        txn = self.transaction
        if self._bdat_remaining:
            if not self._buf:
                return ConnectionClosed() if self._eof else NEED_DATA
            chunk = self._buf.take(min(self._bdat_remaining, len(self._buf)))
            self._bdat_remaining -= len(chunk)
            if accepting:
                # As for DATA: count every octet, hand over at most the limit, however
                # the input was split into reads.
                room = self.options.max_message_size - txn.bdat_size
                txn.bdat_size += len(chunk)
                if txn.bdat_error is not None:
                    chunk = b""  # refused already: consume the chunk, keep nothing
                elif not self._binarymime:
                    clean, txn.bdat_error = txn.bdat_rules.check(chunk)
                    chunk = chunk[:clean]
                if len(chunk) > room:
                    txn.bdat_too_big = True
                    chunk = chunk[: max(room, 0)]
                if chunk:
                    return DataChunk(chunk)
            if self._bdat_remaining:
                return self._read_bdat()
        event = self._bdat_event
        assert event is not None
        self._bdat_event = None
        if isinstance(event, Bdat):
            if event.last and txn.bdat_error is None and not self._binarymime:
                txn.bdat_error = txn.bdat_rules.finish()
            error = txn.bdat_error or (DataError.TOO_BIG if txn.bdat_too_big else None)
            if error is not None:
                event = Bdat(event.size, event.last, error)
        self._owed = event
        return event

    @property
    def _binarymime(self) -> bool:
        """RFC 3030 §3: a BODY=BINARYMIME body is octets, kept exactly as sent."""
        mail = self.transaction.mail
        return mail is not None and mail.params.body == "BINARYMIME"

    # -- output ------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Answer the owed event; returns the bytes to write."""
        event = self._owed
        if event is None:
            raise LocalProtocolError("send() without an event that owes a reply")
        self._owed = None
        state = self.state
        if event is _GREETING:
            new_state = next_state(State.GREETING, None, reply)
        elif isinstance(event, CommandError):
            new_state = State.CLOSED if reply.code in (221, 421, 521) else state
            if new_state is State.AUTH:
                # RFC 4954 §4: a malformed response (bad base64, too long) is answered
                # 501 and ends the exchange; staying in AUTH would read every later
                # command as a SASL response.
                new_state = State.READY
        else:
            new_state = next_state(state, event, reply)
            self._record(event, reply, state)
        if isinstance(event, (EndOfData, Bdat)) and event.error is DataError.BARE_LINE_ENDING:
            # DATA: the stream is out of step (see _data).  BDAT: still in step, but a
            # client that sends bare line endings gets the same answer as in DATA.
            self._close_after_reply = True
        if self._close_after_reply:
            new_state = State.CLOSED
        if new_state is State.DATA:
            self._data = DataReader(self.options.max_message_size)
        elif state is State.DATA:
            self._data = None
        self.state = new_state
        return reply.to_bytes()

    def _record(self, event: object, reply: Reply, state: State) -> None:
        """Update the envelope and session facts the reply has confirmed."""
        positive = reply.is_positive
        if isinstance(event, (Helo, Ehlo)) and positive:
            self.helo = event.domain
            self.esmtp = isinstance(event, Ehlo)
            self.transaction = Transaction()
        elif isinstance(event, MailFrom) and positive:
            self.transaction = Transaction(mail=event)
        elif isinstance(event, RcptTo) and positive:
            self.transaction.rcpts.append(event)
        elif isinstance(event, Rset) and positive:
            self.transaction = Transaction()
        elif isinstance(event, (Auth, AuthResponse)) and reply.code == 235:
            self.authenticated = True
        elif isinstance(event, EndOfData) or (
            isinstance(event, Bdat) and (event.last or not positive)
        ):
            self.transaction = Transaction()

    def close_with(self, reply: Reply) -> bytes:
        """An unsolicited closing reply: 421 on timeout or shutdown (RFC 5321 §3.8,
        §4.5.3.2), whatever is owed.  The connection is CLOSED afterwards."""
        if reply.code != 421 and reply.code < 500:
            raise LocalProtocolError("close_with() takes a 421 or 5xx reply")
        self._owed = None
        self.state = State.CLOSED
        return reply.to_bytes()
