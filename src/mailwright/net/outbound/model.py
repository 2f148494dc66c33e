"""The values of the outbound session API: what goes in (peer, settings, message) and
what comes out (replies per recipient, the transcript, the session failure).

Plain frozen dataclasses, no behaviour beyond small derived properties, so the relay,
the bounce code and ``mailwright send`` can build and inspect them without a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from mailwright.net.outbound.tlspolicy import TlsPolicy
from mailwright.smtp import Reply
from mailwright.spool.model import BodyType

# RFC 5321 §4.5.3.2 gives every timeout but the connect one; Postfix's
# smtp_connect_timeout is 30 s.
CONNECT_TIMEOUT = 30.0
GREETING_TIMEOUT = 300.0  # §4.5.3.2.1 initial 220 message: 5 minutes
# EHLO/HELO, STARTTLS, AUTH: the RFC names none; Postfix's smtp_helo_timeout and
# smtp_starttls_timeout are 300 s.
COMMAND_TIMEOUT = 300.0
MAIL_TIMEOUT = 300.0  # §4.5.3.2.2 MAIL command: 5 minutes
RCPT_TIMEOUT = 300.0  # §4.5.3.2.3 RCPT command: 5 minutes
DATA_INIT_TIMEOUT = 120.0  # §4.5.3.2.4 DATA initiation: 2 minutes
DATA_BLOCK_TIMEOUT = 180.0  # §4.5.3.2.5 data block (each write, each BDAT reply): 3 minutes
DATA_END_TIMEOUT = 600.0  # §4.5.3.2.6 DATA termination: 10 minutes
# RSET and QUIT: Postfix's smtp_rset_timeout is 20 s; nothing waits on QUIT's reply, so
# the same short bound serves it (Postfix's smtp_quit_timeout is 300 s).
RSET_TIMEOUT = 20.0
QUIT_TIMEOUT = 20.0
# How long the TLS handshake after the 220 to STARTTLS may take; Postfix's
# smtp_starttls_timeout is 300 s, our server side allows 60 (net.tls).
TLS_HANDSHAKE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Seconds; defaults per RFC 5321 §4.5.3.2 (see the constants).  Tests shrink them."""

    connect: float = CONNECT_TIMEOUT
    greeting: float = GREETING_TIMEOUT
    command: float = COMMAND_TIMEOUT
    mail: float = MAIL_TIMEOUT
    rcpt: float = RCPT_TIMEOUT
    data_init: float = DATA_INIT_TIMEOUT
    data_block: float = DATA_BLOCK_TIMEOUT
    data_end: float = DATA_END_TIMEOUT
    rset: float = RSET_TIMEOUT
    quit: float = QUIT_TIMEOUT
    tls_handshake: float = TLS_HANDSHAKE_TIMEOUT


@dataclass(frozen=True, slots=True)
class Peer:
    """One next hop.  ``host`` is its name (MX or smarthost): SNI, certificate checks
    and logs use it.  ``address`` is an IP literal, or for LMTP the path of a unix
    socket (then ``port`` is ignored)."""

    host: str
    address: str
    port: int = 25


@dataclass(frozen=True, slots=True)
class Credentials:
    """SMTP AUTH (RFC 4954) credentials for a smarthost or an LMTP server."""

    username: str
    password: str = field(repr=False)
    authzid: str = ""
    # Only these mechanisms, in this order of preference; () = the strongest offered.
    mechanisms: tuple[str, ...] = ()


# A tap on the wire, for a client that shows the dialog (``mailwright send``): called
# with (outgoing, octets, inside TLS) for every write and every read, in order; the
# octets are the plaintext (decrypted) ones.  AUTH secrets are in them: the caller
# redacts.
WireTrace = Callable[[bool, bytes, bool], None]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    helo_name: str
    lmtp: bool = False  # RFC 2033: LHLO, one reply per recipient after the data
    timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    auth: Credentials | None = None
    ca_file: Path | None = None  # extra trust anchors for VERIFY (tests, private CAs)
    # AUTH over a connection without TLS exposes the password (RFC 4954 §4); only for
    # a next hop on a trusted link (a local LMTP socket, a loopback smarthost).
    allow_plaintext_auth: bool = False
    # Use these ESMTP extensions when offered; a test client may switch one off.
    use_pipelining: bool = True
    use_chunking: bool = True
    # For a test client (``mailwright send``); the relay leaves them at their defaults.
    trace: WireTrace | None = field(default=None, compare=False)
    implicit_tls: bool = False  # TLS from the first octet (RFC 8314 §3.3, port 465)
    # Stop after this stage's reply (CONNECT: before the greeting is read; DATA: after
    # the 354, dropping the connection without the message) and QUIT where SMTP allows.
    stop_after: Stage | None = None
    bdat_chunk_size: int = 0  # octets per BDAT chunk; 0 = transaction.BDAT_CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class OutgoingRecipient:
    address: str  # "local@domain", as in the envelope (no angle brackets)
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY: () = not given
    orcpt: str | None = None  # RFC 3461 ORCPT "addr-type;address", decoded


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    mail_from: str  # "" is the null reverse-path <>
    recipients: tuple[OutgoingRecipient, ...]
    body: bytes  # the message as stored: CRLF line ends, not dot-stuffed
    body_type: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False  # RFC 6531: the envelope or header section needs it
    ret: str | None = None  # RFC 3461 RET=FULL|HDRS
    envid: str | None = None  # RFC 3461 ENVID, decoded


class Stage(StrEnum):
    """Where in the session a reply came (or a failure happened)."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"  # also LHLO
    HELO = "helo"
    STARTTLS = "starttls"
    TLS = "tls"  # the handshake and the certificate/peer checks
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the reply to DATA (354 or a refusal)
    BDAT = "bdat"  # the reply to a BDAT chunk that is not the last
    MESSAGE = "message"  # the reply after the last octet (final dot, BDAT LAST, LMTP)
    RSET = "rset"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One reply received, in order, with the command it answered (AUTH data never
    appears: the command is "AUTH PLAIN", not its argument)."""

    stage: Stage
    command: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who we talked to and how; the same object for every transaction of a session
    after the last EHLO."""

    host: str
    address: str
    port: int
    greeting: Reply | None = None
    extensions: dict[str, str] = field(default_factory=dict)  # EHLO keyword -> params
    esmtp: bool = True  # False when the peer only answered HELO
    tls_version: str | None = None  # "TLSv1.3", None without TLS
    tls_cipher: str | None = None
    policy: TlsPolicy | None = None  # the TLS policy applied
    authenticated_as: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's outcome: the RCPT reply when refused, else the reply after the
    data (LMTP: its own reply, RFC 2033 §4.2), or a local/synthesised reply
    (``smtp.codes.R451_*``) when the peer never answered for it."""

    recipient: OutgoingRecipient
    reply: Reply
    # NOTIFY/ORCPT went to the next hop (it offered DSN, RFC 3461 §4): a DSN for this
    # recipient is now the next hop's to send ("relayed" when it did not, §5.2.2).
    dsn_passed: bool = False
    # ``reply`` is one the peer sent (in the transcript); False: we made it (a local
    # refusal, a timeout, a lost connection): a DSN must not say the peer said it.
    from_peer: bool = False

    @property
    def delivered(self) -> bool:
        return self.reply.is_positive

    @property
    def permanent(self) -> bool:
        return self.reply.is_permanent


@dataclass(frozen=True, slots=True)
class TransactionResult:
    recipients: tuple[RecipientResult, ...]  # in the message's recipient order
    mail_reply: Reply | None  # None when nothing was sent (a local refusal)
    usable: bool  # the connection may carry the next message
    info: SessionInfo
    transcript: tuple[TranscriptEntry, ...]  # this transaction's replies, in order
    reason: str = ""  # why, in words, when the transaction failed as a whole
    # ``reset_first``: the RSET that opened it got no 250 (a cached connection the peer
    # closed meanwhile).  No final dot was sent, so the peer took nothing: send the
    # message again on another connection.
    stale: bool = False


class SessionError(Exception):
    """A session could not be opened (or used): connect, greeting, EHLO/HELO, STARTTLS,
    TLS, AUTH.  ``temporary`` says whether to retry (another host, later); ``reply`` is
    the peer's reply when there was one, else ``result_reply`` gives a fixed one."""

    def __init__(
        self,
        stage: Stage,
        reason: str,
        *,
        temporary: bool,
        reply: Reply | None = None,
        result_reply: Reply,
        peer: Peer,
        transcript: tuple[TranscriptEntry, ...] = (),
    ) -> None:
        super().__init__(f"{peer.host}[{peer.address}] {stage.value}: {reason}")
        self.stage = stage
        self.reason = reason
        self.temporary = temporary
        self.reply = reply
        self.result_reply = result_reply  # the reply to record for every recipient
        self.peer = peer
        self.transcript = transcript
