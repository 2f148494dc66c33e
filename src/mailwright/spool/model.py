"""What the spool stores: the envelope as received and per-recipient delivery state."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT TO, with its RFC 3461 DSN parameters."""

    address: str  # as given by the client (IDNA/UTF-8 domain normalised to lower case)
    notify: tuple[str, ...] = ()  # NEVER | SUCCESS, FAILURE, DELAY; () = not given
    orcpt: str | None = None  # "addr-type;address", xtext-decoded once by smtp._params


class BodyType(StrEnum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"  # RFC 6152
    BINARY_MIME = "BINARYMIME"  # RFC 3030, only with BDAT


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one accepted message."""

    mail_from: str  # "" is the null reverse-path <>
    recipients: tuple[Recipient, ...]
    body_type: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # RFC 3461 RET=FULL|HDRS
    envid: str | None = None  # RFC 3461 ENVID, xtext-decoded
    client_address: str = ""
    client_helo: str = ""
    auth_user: str | None = None


class RecipientStatus(StrEnum):
    PENDING = "pending"  # not yet delivered; retried until expiry
    DELIVERED = "delivered"
    FAILED = "failed"  # permanent failure (or expired); a bounce was produced


@dataclass(frozen=True, slots=True)
class RemoteReply:
    """A delivery reply as stored: kept structured, so nobody parses it back from text
    (a DSN's Status field is ``enhanced``, its Diagnostic-Code ``str(reply)``)."""

    code: int  # RFC 5321 reply code, 200..599
    enhanced: str  # RFC 3463 enhanced status code, "" if the reply had none
    text: str  # the reply text, lines joined by a space

    def __str__(self) -> str:
        prefix = f"{self.enhanced} " if self.enhanced else ""
        return f"{self.code} {prefix}{self.text}"


@dataclass(slots=True)
class RecipientState:
    recipient: Recipient
    status: RecipientStatus = RecipientStatus.PENDING
    attempts: int = 0
    last_reply: RemoteReply | None = None  # the reply of the last delivery attempt
    # A delay DSN (RFC 3464 "Action: delayed") was queued for this recipient: stored,
    # so that a restarted runner does not warn the sender a second time.
    delay_warned: bool = False


@dataclass(frozen=True, slots=True)
class SessionReply:
    """One reply of the session an attempt ran in, with the command it answered."""

    stage: str  # where it came: "greeting", "ehlo", "starttls", "mail", "rcpt", "data"...
    command: str  # as sent ("" for the greeting; AUTH never shows its data)
    reply: RemoteReply


@dataclass(frozen=True, slots=True)
class RemoteSession:
    """The remote end of an attempt's SMTP/LMTP session: who answered, over what TLS,
    under which TLS policy, and the replies that concern one recipient (the session's
    opening, MAIL, that recipient's RCPT, DATA and the reply after the data)."""

    host: str  # its name (MX host, smarthost): a DSN's Remote-MTA (RFC 3464 §2.3.5)
    address: str  # the IP address connected to, or an LMTP unix socket's path
    port: int
    tls_version: str | None = None  # "TLSv1.3"; None: no TLS
    tls_cipher: str | None = None
    tls_mode: str | None = None  # the policy that applied: none, may, encrypt, verify, dane
    tls_source: str | None = None  # the rule that chose it: default, transport, mta-sts, dane
    tls_reason: str = ""  # why, in words
    replies: tuple[SessionReply, ...] = ()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt for one recipient: a row of the per-recipient history
    (``SpoolStore.attempts``), oldest first; the API's timeline reads these."""

    position: int  # the recipient's index in the envelope
    at: float  # unix time the attempt ended
    status: RecipientStatus  # the recipient's state after this attempt
    reply: RemoteReply
    remote_host: str | None = None  # the host that gave the reply; None: delivered locally
    session: RemoteSession | None = None  # the session that gave it (relay attempts)


@dataclass(slots=True)
class SpooledMessage:
    """A message in the queue.  ``recipients`` is the mutable per-recipient state."""

    queue_id: str
    envelope: Envelope
    size: int
    received_at: float  # unix time
    next_attempt: float  # unix time of the next delivery attempt
    attempts: int = 0
    recipients: list[RecipientState] = field(default_factory=list)
    # Header fields the MESSAGE stage added (whole CRLF lines), stored with the row
    # and prepended on read: the body stays write-once.  Counted in ``size``.
    header_block: bytes = b""

    @property
    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.status is RecipientStatus.PENDING]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A due message leased to one runner (``SpoolStore.claim``) until ``lease_until``.

    ``body`` is the stored body if the backend read it in the same round trip (the
    embedded store's inline bodies), else None: the runner then calls ``read_body``."""

    message: SpooledMessage
    body: bytes | None
    lease_until: float


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A message as the queue administration sees it (``SpoolStore.scan``/``entry``):
    its delivery state plus what only an operator cares about.  No body."""

    message: SpooledMessage
    held_since: float | None = None  # unix time of ``hold``; None: not held
    lease_owner: str | None = None  # the runner that claimed it, if a lease was taken
    lease_until: float | None = None  # as stored: a lease <= now has run out

    def leased(self, now: float) -> bool:
        """A runner holds it right now (being attempted, or claimed to be)."""
        return self.lease_until is not None and self.lease_until > now
