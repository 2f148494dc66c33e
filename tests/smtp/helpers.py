"""Drivers for the sans-IO SMTP core, used by every test in this folder.

``Driver`` feeds a ``ServerConnection`` bytes and answers each event with a policy
(default: the natural positive reply).  It has two feeding modes, as h11's test_io:

* ``"whole"``: each ``feed(data)`` is one ``receive_data`` call;
* ``"bytewise"``: each ``feed(data)`` is delivered one byte at a time.  A bytewise
  driver also runs a *shadow* whole-mode driver on the same input and asserts, after
  every ``feed``, that events (consecutive DataChunks merged), wire output, state and
  buffered size are identical.  So any test written against ``Driver(mode)`` and
  parametrized over ``MODES`` checks segmentation independence for free.

Policies are called as ``policy(conn, event) -> Reply | None`` (None = default reply).
They must be pure functions of their arguments: the shadow driver calls them too.

``ClientDriver`` does the same for a ``ClientConnection`` (server replies fed whole or
one byte at a time, with the whole-mode shadow); ``ConnectionPair`` wires one to a
server ``Driver`` in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailwright.smtp import (
    NEED_DATA,
    PAUSED,
    Auth,
    AuthResponse,
    Bdat,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataError,
    Ehlo,
    EndOfData,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    ServerOptions,
    StartTls,
    State,
    Vrfy,
    codes,
    ehlo_reply,
)

MODES = ("whole", "bytewise")
HOSTNAME = "mx.example"

# Replies the core has no named constant for (they are the application's choice).
GREETING = Reply.of(220, "", f"{HOSTNAME} ESMTP mailwright")
HELO_OK = Reply.of(250, "", HOSTNAME)
STARTTLS_READY = Reply.of(220, "2.0.0", "Ready to start TLS")
AUTH_CONTINUE = Reply.of(334, "", "")
AUTH_CANCELLED = Reply.of(501, "5.7.0", "Authentication cancelled")
AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication credentials invalid")
HELP_REPLY = Reply.of(
    214,
    "2.0.0",
    "Commands: "
    + " ".join(["HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "HELP"]),
)
QUEUED = Reply.of(250, "2.0.0", "Ok: queued")

Policy = Callable[[ServerConnection, Event], "Reply | None"]


def default_reply(conn: ServerConnection, event: Event) -> Reply:
    """The natural positive answer to ``event`` (errors answered with their own reply)."""
    match event:
        case CommandError(reply):
            return reply
        case Ehlo():
            return ehlo_reply(HOSTNAME, conn.extensions, max_size=conn.options.max_message_size)
        case Helo():
            return HELO_OK
        case MailFrom():
            return codes.R250_SENDER_OK
        case RcptTo():
            return codes.R250_RECIPIENT_OK
        case Data():
            return codes.R354_START_DATA
        case EndOfData(error=DataError.BARE_LINE_ENDING) | Bdat(error=DataError.BARE_LINE_ENDING):
            return codes.R521_BARE_LINE_ENDING
        case EndOfData(error=DataError.NUL) | Bdat(error=DataError.NUL):
            return codes.R554_NUL_IN_DATA
        case EndOfData(error=DataError.TOO_BIG) | Bdat(error=DataError.TOO_BIG):
            return codes.R552_TOO_BIG
        case EndOfData():
            return QUEUED
        case Bdat(last=True):
            return QUEUED
        case Bdat():
            return codes.R250_OK
        case Rset():
            return codes.R250_RESET
        case Noop():
            return codes.R250_OK
        case Quit():
            return codes.R221_BYE
        case Help():
            return HELP_REPLY
        case Vrfy():
            return codes.R252_CANNOT_VRFY
        case Expn():
            return codes.R502_EXPN_DISABLED
        case StartTls():
            return STARTTLS_READY
        case Auth(initial_response=None):
            return AUTH_CONTINUE
        case Auth():
            return codes.R235_AUTH_OK
        case AuthResponse(data=None):
            return AUTH_CANCELLED
        case AuthResponse():
            return codes.R235_AUTH_OK
    raise AssertionError(f"no default reply for {event!r}")


def merge_chunks(events: Iterable[object]) -> list[object]:
    """Merge consecutive DataChunks: how input is split must not matter beyond that."""
    out: list[object] = []
    for event in events:
        if isinstance(event, DataChunk) and out and isinstance(out[-1], DataChunk):
            out[-1] = DataChunk(out[-1].data + event.data)
        else:
            out.append(event)
    return out


@dataclass
class Answer:
    event: Event
    reply: Reply
    state_before: State
    state_after: State


class Driver:
    """Feeds a ServerConnection and answers its events; see the module docstring."""

    def __init__(
        self,
        mode: str = "whole",
        *,
        options: ServerOptions | None = None,
        policy: Policy | None = None,
        extensions: Iterable[str] | None = None,
        greet: bool = True,
        auto_tls: bool = True,
    ) -> None:
        """``auto_tls``: complete the TLS handshake as soon as STARTTLS is accepted (so
        bytes fed later count as encrypted); off, call ``handshake()`` yourself."""
        assert mode in MODES, mode
        self.mode = mode
        self.conn = ServerConnection(options)
        if extensions is not None:
            self.conn.extensions = frozenset(extensions)
        self.policy = policy
        self.auto_tls = auto_tls
        self.events: list[Event] = []
        self.answers: list[Answer] = []
        self.output = bytearray()
        self.max_buffered = 0
        self.tls_handshakes = 0
        self.last_output = b""
        self.shadow = (
            Driver(
                "whole",
                options=options,
                policy=policy,
                extensions=extensions,
                greet=greet,
                auto_tls=auto_tls,
            )
            if mode == "bytewise"
            else None
        )
        if greet:
            self.greet()

    # -- driving ---------------------------------------------------------------

    def greet(self, reply: Reply = GREETING) -> bytes:
        """Send the greeting (separately only for early-talker tests)."""
        out = self.conn.send(reply)
        self.output += out
        if self.shadow is not None and self.shadow.conn.state is State.GREETING:
            self.shadow.greet(reply)
        self.pump()
        self._compare()
        return out

    def feed(self, data: bytes) -> Driver:
        """Deliver ``data`` (never EOF: b"" is a no-op here; use ``eof()``)."""
        start = len(self.output)
        if not data:
            self.last_output = b""
            return self
        if self.mode == "whole":
            self._receive(data)
        else:
            for i in range(len(data)):
                self._receive(data[i : i + 1])
            assert self.shadow is not None
            self.shadow.feed(data)
            self._compare()
        self.last_output = bytes(self.output[start:])
        return self

    def handshake(self) -> Driver:
        """The transport completes TLS (for ``auto_tls=False`` drivers)."""
        self.conn.tls_established()
        self.tls_handshakes += 1
        self.pump()
        if self.shadow is not None:
            self.shadow.handshake()
            self._compare()
        return self

    def eof(self) -> Driver:
        self.conn.receive_data(b"")
        self.pump()
        if self.shadow is not None:
            self.shadow.eof()
            self._compare()
        return self

    def _receive(self, chunk: bytes) -> None:
        self.conn.receive_data(chunk)
        self.max_buffered = max(self.max_buffered, self.conn.buffered)
        self.pump()

    def pump(self) -> None:
        """Answer events until the core needs data (or is closed)."""
        conn = self.conn
        while True:
            event = conn.next_event()
            self.max_buffered = max(self.max_buffered, conn.buffered)
            if event is NEED_DATA:
                return
            if event is PAUSED:
                if conn.state is State.TLS and self.auto_tls:
                    conn.tls_established()
                    self.tls_handshakes += 1
                    continue
                return
            if isinstance(event, ConnectionClosed):
                if not self.events or not isinstance(self.events[-1], ConnectionClosed):
                    self.events.append(event)
                return
            self.events.append(event)
            if isinstance(event, DataChunk):
                continue
            reply = None if self.policy is None else self.policy(conn, event)
            if reply is None:
                reply = default_reply(conn, event)
            before = conn.state
            self.output += conn.send(reply)
            self.answers.append(Answer(event, reply, before, conn.state))

    def _compare(self) -> None:
        if self.shadow is None:
            return
        shadow = self.shadow
        assert merge_chunks(self.events) == merge_chunks(shadow.events), "events differ"
        assert bytes(self.output) == bytes(shadow.output), "output differs"
        assert self.conn.state is shadow.conn.state
        # Leftovers are moot once closed, and dropped anyway by tls_established().
        if self.conn.state not in (State.CLOSED, State.TLS):
            assert self.conn.buffered == shadow.conn.buffered
        assert self.conn.transaction == shadow.conn.transaction

    # -- views -----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def replies(self) -> list[Reply]:
        return [a.reply for a in self.answers]

    def replies_to(self, event_type: type) -> list[Reply]:
        return [a.reply for a in self.answers if isinstance(a.event, event_type)]

    def of_type(self, event_type: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, event_type)]

    @property
    def merged(self) -> list[object]:
        return merge_chunks(self.events)

    @property
    def content(self) -> bytes:
        """All DataChunk bytes received so far."""
        return b"".join(e.data for e in self.events if isinstance(e, DataChunk))

    @property
    def command_errors(self) -> list[Reply]:
        return [e.reply for e in self.events if isinstance(e, CommandError)]

    @property
    def wire(self) -> bytes:
        """Everything written after the greeting."""
        return bytes(self.output).split(b"\r\n", 1)[1] if self.output else b""


def run(data: bytes, mode: str = "whole", **kwargs: object) -> Driver:
    """A greeted session fed ``data`` in one ``feed``."""
    return Driver(mode, **kwargs).feed(data)  # type: ignore[arg-type]


def lines(*commands: str | bytes) -> bytes:
    """Join command lines with CRLF (and end with one)."""
    return b"".join((c.encode() if isinstance(c, str) else c) + b"\r\n" for c in commands)


EHLO = lines("EHLO client.example")
ENVELOPE = lines("EHLO client.example", "MAIL FROM:<alice@a.example>", "RCPT TO:<bob@b.example>")


def reject(
    event_type: type, reply: Reply, when: Callable[[Event], bool] = lambda e: True
) -> Policy:
    """A policy answering events of ``event_type`` (that match ``when``) with ``reply``."""

    def policy(conn: ServerConnection, event: Event) -> Reply | None:
        if isinstance(event, event_type) and when(event):
            return reply
        return None

    return policy


# -- the client role ----------------------------------------------------------------


class ClientDriver:
    """Feeds a ClientConnection server bytes and reads its replies, as ``Driver`` does
    for the server: ``"whole"`` feeds each ``feed(data)`` in one call, ``"bytewise"``
    one byte at a time, reading after every byte, and runs a whole-mode shadow on the
    same input, asserting after every call that replies, the state after each reply,
    the bytes written and the replies owed are identical."""

    def __init__(self, mode: str = "whole", *, lmtp: bool = False) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.conn = ClientConnection(lmtp=lmtp)
        self.replies: list[Reply] = []
        self.states: list[State] = []  # the client's state after each reply
        self.output = bytearray()
        self.closed = False
        self.shadow = ClientDriver("whole", lmtp=lmtp) if mode == "bytewise" else None

    def send(self, *events: Event) -> bytes:
        out = b"".join(self.conn.send(e) for e in events)
        self.output += out
        if self.shadow is not None:
            self.shadow.send(*events)
            self._compare()
        return out

    def feed(self, data: bytes) -> list[Reply]:
        """Deliver server bytes; returns the replies they completed."""
        start = len(self.replies)
        if self.mode == "whole":
            self.conn.receive_data(data)
            self.pump()
        else:
            for i in range(len(data)):
                self.conn.receive_data(data[i : i + 1])
                self.pump()
            assert self.shadow is not None
            self.shadow.feed(data)
            self._compare()
        return self.replies[start:]

    def eof(self) -> ClientDriver:
        self.conn.receive_data(b"")
        self.pump()
        if self.shadow is not None:
            self.shadow.eof()
            self._compare()
        return self

    def tls_established(self) -> ClientDriver:
        self.conn.tls_established()
        self.pump()
        if self.shadow is not None:
            self.shadow.tls_established()
            self._compare()
        return self

    def pump(self) -> None:
        while True:
            event = self.conn.next_event()
            if isinstance(event, ConnectionClosed):
                self.closed = True
                return
            if not isinstance(event, Reply):  # NEED_DATA, or PAUSED for the handshake
                return
            self.replies.append(event)
            self.states.append(self.conn.state)

    def _compare(self) -> None:
        shadow = self.shadow
        assert shadow is not None
        assert self.replies == shadow.replies, "replies differ"
        assert self.states == shadow.states, "states differ"
        assert bytes(self.output) == bytes(shadow.output), "output differs"
        assert self.conn.state is shadow.conn.state
        assert self.conn.pending == shadow.conn.pending
        assert self.closed == shadow.closed

    @property
    def state(self) -> State:
        return self.conn.state


# -- client <-> server ------------------------------------------------------------


class ConnectionPair:
    """A ClientConnection talking to a server Driver through memory.  ``mode`` is how
    the server's bytes reach the client (see ``ClientDriver``); the server is fed each
    write whole (its own bytewise suite is the Driver's)."""

    def __init__(self, mode: str = "whole", **server_kwargs: object) -> None:
        self.driver = ClientDriver(mode)
        self.client = self.driver.conn
        self.server = Driver("whole", greet=True, **server_kwargs)  # type: ignore[arg-type]
        self.client_bytes = bytearray()
        self._delivered = 0
        self.greeting = self.replies()[0]

    def _deliver(self) -> list[Reply]:
        out = bytes(self.server.output[self._delivered :])
        self._delivered = len(self.server.output)
        return self.driver.feed(out) if out else []

    def replies(self) -> list[Reply]:
        """Every complete reply the client can read now."""
        return self._deliver()

    def write(self, *events: Event) -> bytes:
        data = self.driver.send(*events)
        self.client_bytes += data
        self.server.feed(data)
        return data

    def send(self, *events: Event) -> list[Reply]:
        """Write all ``events`` in one go (pipelined) and return the replies."""
        self.write(*events)
        return self.replies()

    def command(self, event: Event) -> Reply:
        (reply,) = self.send(event)
        return reply

    def starttls(self) -> Reply:
        """STARTTLS, and TLS up on both ends (the server driver's auto_tls)."""
        reply = self.command(StartTls())
        self.driver.tls_established()
        return reply
