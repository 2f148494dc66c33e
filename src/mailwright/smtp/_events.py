"""Events: what the server core reads from a client and the client core writes.

Commands are the same objects on both sides: the server's reader produces them from
bytes and the client's writer turns them into bytes, so the two cannot disagree about
the wire (DESIGN, seam smtp <-> net).  All are frozen, slotted dataclasses.

Every command event the server yields owes exactly one reply, given with
``ServerConnection.send(reply)``; ``DataChunk`` is the only event that owes none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from mailwright.smtp._address import Address
from mailwright.smtp._params import MailParams, RcptParams
from mailwright.smtp._replies import Reply


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Helo(Event):
    domain: str


@dataclass(frozen=True, slots=True)
class Ehlo(Event):
    domain: str


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    """``address`` is None for the null reverse-path ``<>`` (RFC 5321 §4.5.5)."""

    address: Address | None
    params: MailParams = field(default_factory=MailParams)


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    address: Address
    params: RcptParams = field(default_factory=RcptParams)


@dataclass(frozen=True, slots=True)
class Data(Event):
    pass


@dataclass(frozen=True, slots=True)
class Rset(Event):
    pass


@dataclass(frozen=True, slots=True)
class Noop(Event):
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    pass


@dataclass(frozen=True, slots=True)
class Vrfy(Event):
    argument: str


@dataclass(frozen=True, slots=True)
class Expn(Event):
    argument: str


@dataclass(frozen=True, slots=True)
class Help(Event):
    argument: str = ""


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    pass


@dataclass(frozen=True, slots=True)
class Auth(Event):
    """RFC 4954 AUTH.  ``initial_response`` is None when absent, b"" for ``=``."""

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """A client line during a SASL exchange; ``data`` is None for ``*`` (cancel)."""

    data: bytes | None


class DataError(Enum):
    """Why a DATA or BDAT body cannot be accepted; the core has consumed it regardless."""

    TOO_BIG = "too big"  # reply 552 5.3.4 (RFC 5321 §4.5.3.1.7, RFC 3463)
    # A bare CR or LF in DATA, or in a BDAT body that is not BODY=BINARYMIME: the SMTP
    # smuggling defence (CVE-2023-51764 and relatives).  Reply 521 5.5.2; the core
    # closes after it (in DATA it stops reading at that byte).
    BARE_LINE_ENDING = "bare line ending"
    # A NUL octet outside BODY=BINARYMIME: 7bit and 8bit data exclude NUL (RFC 2045
    # §2.7, §2.8; RFC 6152 §3), and a next hop that drops or ends lines at NUL would
    # read another message than we did.  Reply 554 5.6.0; the session goes on.
    NUL = "NUL"


@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    """Message bytes, already dot-unstuffed.  Owes no reply."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData(Event):
    """The final ``CRLF.CRLF`` of DATA (or a fatal DATA error).  ``size`` counts the
    unstuffed body octets read, all of them even when ``error`` is TOO_BIG."""

    size: int
    error: DataError | None = None


@dataclass(frozen=True, slots=True)
class Bdat(Event):
    """RFC 3030 BDAT.  The server yields it once the chunk's bytes were consumed
    (its DataChunk events come first), so the reply follows the data as §2 requires."""

    size: int
    last: bool = False
    error: DataError | None = None


@dataclass(frozen=True, slots=True)
class CommandError(Event):
    """A command the core refused on its own (syntax, sequence, limit).  Send ``reply``
    (or a stricter one); the session state is unchanged."""

    reply: Reply
    line: bytes = b""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed its side (EOF)."""
