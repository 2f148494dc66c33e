"""SASL mechanisms for SMTP AUTH (RFC 4954), server and client side, sans-IO.

Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195)
and SCRAM-SHA-256 (RFC 5802, RFC 7677; the SCRAM arithmetic is scramp's).  The
``-PLUS`` variant is not offered: channel binding needs the TLS layer, which this
package must not touch.

Server side.  ``server_mechanism(name, credentials)`` returns a state machine;
``start(initial)`` and ``step(response)`` take *decoded* SASL data (the core already
parsed the base64 and the ``*`` cancel, so cancelling never reaches this module) and
return one ``SaslStep``:

* ``Challenge(data)``: answer ``334 base64(data)`` and feed the next line to ``step``;
* ``CheckPassword(authcid, password, authzid)``: PLAIN and LOGIN end here.  The caller
  verifies (argon2 is deliberately slow, so it runs in a thread) and answers 235 or 535;
* ``Authenticated(authcid, authzid, final_data)``: CRAM-MD5 and SCRAM verified the
  client themselves; answer 235 2.7.0;
* ``TooWeak(authcid)``: CRAM-MD5 for a login that has no CRAM-MD5 secret (it did not
  opt in, or does not exist): answer 534 5.7.9 (RFC 4954 §6, "the selected mechanism
  is weaker than server policy permits for that user"; the client should try another
  mechanism).  Not a credential failure: the exchange could never have succeeded,
  whatever the password, so it proves nothing wrong;
* ``Failed(reason, malformed, authcid)``: ``malformed`` -> 501 5.5.2, else 535 5.7.8.
  ``reason`` is for the log; it never contains a secret and is not meant for the peer.
  ``authcid`` is the login the client claimed, when the mechanism got that far.

SCRAM's server-final message ("additional data with success", RFC 4422 §5 item 7).
SMTP has no way to put it into the 235 reply, so, as RFC 4954 §4 requires, the server
sends it as one more ``334`` challenge and waits for an empty client response; only
then does the mechanism return ``Authenticated`` (so ``final_data`` is always ``None``
here; the field exists for profiles that allow data with success).  A client that
answers that challenge with ``*`` cancels and is *not* authenticated.  The client side
mirrors this: it verifies the server signature when the server-final arrives as a
challenge, answers with an empty response, and ``complete`` tells the caller whether
a 235 may be believed (a 235 before a verified server-final means the server did not
prove it knows the password: treat it as a failure).

Identities.  ``authzid`` is ``""`` when the client sent none.  The mechanisms do not
decide whether ``authcid`` may act as ``authzid``; ``may_authorize`` is the default
policy (no proxy authorisation: the authzid must be empty or equal the authcid).
SCRAM with an ``a=`` authzid is refused (scramp does not support it).

Username normalisation (``normalize_username``, used here and by the user store, so
both agree): Unicode NFC, and the whole address folded to lower case, the domain also
to its IDNA A-label form.  RFC 5321 lets local parts be case-sensitive, but
``mailwright.accounts.directory`` already folds local-part case for mailboxes, and a
login is its user's primary mailbox: ``Alice@Example.COM`` and ``alice@example.com``
must be the same account, never two.  Passwords are compared after SASLprep
(RFC 4013) by the user store, which is what SCRAM does anyway, so all mechanisms agree
on non-ASCII passwords.

Timing and user enumeration.  SCRAM runs the whole exchange with per-process fake
keys (a stable salt per name) for unknown users, and fails at the proof exactly like a
wrong password (RFC 5802 §5.1 suggests this).  CRAM-MD5 answers ``TooWeak`` for every
login without a CRAM-MD5 secret, unknown or not, so it does not tell whether a login
exists; it does tell a prober which logins have a CRAM-MD5 secret.  We accept that:
clients such as Python's smtplib try CRAM-MD5 first whenever it is offered and fall
back to PLAIN after any error, so answering those exchanges with 535 counted a failure
(and a tarpit delay) against every correct login of every other user, until parallel
correct logins banned their own address.  The opted-in logins are the only ones this
reveals, a guess against them is still a counted, tarpitted failure, and a guess
against any other login through CRAM-MD5 can never succeed, so it learns nothing about
a password.

scramp imports ``ssl`` at module level, so it is imported lazily, only when a SCRAM
exchange starts: importing ``mailwright.smtp`` stays free of I/O modules.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from mailwright.smtp._address import to_ascii_domain

# RFC 4616 §2: authzid, authcid and passwd are each 1-255 octets of UTF-8.
# The same bound applies to LOGIN (which has no RFC) so both hit the same limits.
MAX_SASL_FIELD = 255
# RFC 7677 §4: the iteration count SHOULD be at least 4096.  Only the client pays for
# the iterations at each login (the server stores derived keys), while an attacker who
# steals the user file pays them per guess: we default well above the minimum.
MIN_SCRAM_ITERATIONS = 4096
DEFAULT_SCRAM_ITERATIONS = 100_000
SCRAM_SALT_BYTES = 16  # RFC 5802 leaves it open; scramp requires >= 12

PLAIN, LOGIN, CRAM_MD5, SCRAM_SHA_256 = "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"
SERVER_MECHANISMS = (SCRAM_SHA_256, PLAIN, LOGIN, CRAM_MD5)
# Client preference.  Over TLS (which AUTH requires) PLAIN is as strong as CRAM-MD5 and
# does not need a plaintext-equivalent secret on the server; CRAM-MD5 comes last.
CLIENT_PREFERENCE = (SCRAM_SHA_256, PLAIN, LOGIN, CRAM_MD5)

LOGIN_USERNAME_CHALLENGE = b"Username:"
LOGIN_PASSWORD_CHALLENGE = b"Password:"


# -- steps ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``334 base64(data)`` and feed the client's answer to ``step``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """PLAIN/LOGIN: verify ``password`` for ``authcid`` (normalised), then 235 or 535."""

    authcid: str
    password: str = field(repr=False)
    authzid: str = ""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The mechanism verified the client itself (CRAM-MD5, SCRAM): answer 235."""

    authcid: str
    authzid: str = ""
    final_data: bytes | None = None  # always None over SMTP (see module docstring)


@dataclass(frozen=True, slots=True)
class TooWeak:
    """The login has no secret this mechanism can use: 534 5.7.9, not a failure."""

    authcid: str


@dataclass(frozen=True, slots=True)
class Failed:
    """``malformed`` -> 501 5.5.2; otherwise 535 5.7.8.  ``reason`` is for the log;
    ``authcid`` is the claimed login ("" if the exchange ended before one was sent)."""

    reason: str
    malformed: bool = False
    authcid: str = ""


SaslStep = Challenge | CheckPassword | Authenticated | TooWeak | Failed


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What a SCRAM server stores (RFC 5802 §3): never the password itself."""

    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    iterations: int


class CredentialLookup(Protocol):
    """Synchronous, in-memory secret lookups by normalised user name."""

    def cram_secret(self, user: str) -> str | None: ...

    def scram_keys(self, user: str) -> ScramKeys | None: ...


class SaslServer(Protocol):
    mechanism: str

    def start(self, initial: bytes | None) -> SaslStep: ...

    def step(self, response: bytes) -> SaslStep: ...


class SaslClient(Protocol):
    mechanism: str

    def initial(self) -> bytes | None: ...

    def respond(self, challenge: bytes) -> bytes: ...

    @property
    def complete(self) -> bool: ...


class SaslError(ValueError):
    """Client side: the server's challenge is unusable or failed verification."""


class _Malformed(Exception):
    pass


# -- helpers -------------------------------------------------------------------------


def normalize_username(name: str) -> str:
    """The canonical form of a login (see the module docstring)."""
    name = unicodedata.normalize("NFC", name).lower()
    local, at, domain = name.rpartition("@")
    if not at:
        return name
    domain = domain.rstrip(".")
    # Not a valid IDN: keep the lower-cased form, which simply matches nothing.
    with contextlib.suppress(UnicodeError, ValueError):
        domain = to_ascii_domain(domain)
    return f"{local}@{domain}"


def may_authorize(authcid: str, authzid: str) -> bool:
    """Default policy: no proxy authorisation (authzid empty or the user itself)."""
    return not authzid or normalize_username(authzid) == authcid


def _text(raw: bytes, what: str, *, allow_empty: bool = False) -> str:
    if not raw and not allow_empty:
        raise _Malformed(f"empty {what}")
    if len(raw) > MAX_SASL_FIELD:
        raise _Malformed(f"{what} longer than {MAX_SASL_FIELD} octets")
    if b"\0" in raw:
        raise _Malformed(f"NUL in {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not UTF-8") from None


def make_scram_keys(
    password: str, *, iterations: int = DEFAULT_SCRAM_ITERATIONS, salt: bytes | None = None
) -> ScramKeys:
    """Derive SCRAM-SHA-256 keys (scramp applies SASLprep to the password)."""
    from scramp import ScramMechanism

    if iterations < MIN_SCRAM_ITERATIONS:
        raise ValueError(f"SCRAM iterations must be at least {MIN_SCRAM_ITERATIONS}")
    salt_out, stored, server, count = ScramMechanism(SCRAM_SHA_256).make_auth_info(
        password,
        iteration_count=iterations,
        salt=salt if salt is not None else secrets.token_bytes(SCRAM_SALT_BYTES),
    )
    return ScramKeys(salt_out, stored, server, count)


def cram_md5_digest(secret: str, challenge: bytes) -> str:
    """RFC 2195: lower-case hex HMAC-MD5 of the challenge keyed with the secret."""
    return hmac.new(secret.encode("utf-8"), challenge, hashlib.md5).hexdigest()


def make_cram_challenge(hostname: str) -> bytes:
    """RFC 2195 §2: a unique ``<random.timestamp@hostname>`` msg-id."""
    return f"<{secrets.randbelow(10**12)}.{time.time_ns() // 1000}@{hostname}>".encode()


# Per-process stand-in for unknown SCRAM users (timing and enumeration, see docstring).
_FAKE_SCRAM_SECRET = secrets.token_bytes(32)


def _fake_scram_keys(user: str) -> ScramKeys:
    salt = hmac.new(_FAKE_SCRAM_SECRET, user.encode("utf-8"), hashlib.sha256).digest()
    return ScramKeys(
        salt[:SCRAM_SALT_BYTES],
        secrets.token_bytes(32),
        secrets.token_bytes(32),
        DEFAULT_SCRAM_ITERATIONS,
    )


class _Exchange:
    """Shared bookkeeping: refuse to be driven after the exchange has ended."""

    mechanism = ""

    def __init__(self) -> None:
        self._state = "new"

    def _advance(self, expected: str) -> None:
        if self._state != expected:
            raise RuntimeError(f"{self.mechanism}: not expecting this call ({self._state})")

    def _end(self, result: SaslStep) -> SaslStep:
        self._state = "done"
        return result


# -- server side ---------------------------------------------------------------------


class PlainServer(_Exchange):
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` in one message."""

    mechanism = PLAIN

    def start(self, initial: bytes | None) -> SaslStep:
        self._advance("new")
        if initial is None:
            self._state = "message"
            return Challenge(b"")  # RFC 4954 §4: empty challenge asks for the message
        return self._end(self._check(initial))

    def step(self, response: bytes) -> SaslStep:
        self._advance("message")
        return self._end(self._check(response))

    @staticmethod
    def _check(message: bytes) -> SaslStep:
        parts = message.split(b"\0")
        if len(parts) != 3:
            return Failed("PLAIN message is not authzid NUL authcid NUL passwd", True)
        try:
            authzid = _text(parts[0], "authzid", allow_empty=True)
            authcid = _text(parts[1], "authcid")
            password = _text(parts[2], "password")
        except _Malformed as exc:
            return Failed(f"PLAIN: {exc}", True)
        return CheckPassword(normalize_username(authcid), password, normalize_username(authzid))


class LoginServer(_Exchange):
    """LOGIN: ``Username:`` then ``Password:`` challenges.  An initial response, which
    some clients send, is taken as the username."""

    mechanism = LOGIN

    def __init__(self) -> None:
        super().__init__()
        self._username = ""

    def start(self, initial: bytes | None) -> SaslStep:
        self._advance("new")
        if initial is None:
            self._state = "username"
            return Challenge(LOGIN_USERNAME_CHALLENGE)
        self._state = "username"
        return self.step(initial)

    def step(self, response: bytes) -> SaslStep:
        if self._state == "username":
            try:
                self._username = normalize_username(_text(response, "username"))
            except _Malformed as exc:
                return self._end(Failed(f"LOGIN: {exc}", True))
            self._state = "password"
            return Challenge(LOGIN_PASSWORD_CHALLENGE)
        self._advance("password")
        try:
            password = _text(response, "password")
        except _Malformed as exc:
            return self._end(Failed(f"LOGIN: {exc}", True))
        return self._end(CheckPassword(self._username, password, ""))


class CramMd5Server(_Exchange):
    """RFC 2195.  Server-first: an initial response is a protocol error."""

    mechanism = CRAM_MD5

    def __init__(
        self,
        credentials: CredentialLookup,
        *,
        hostname: str = "localhost",
        challenge: bytes | None = None,
    ) -> None:
        super().__init__()
        self._credentials = credentials
        self._challenge = challenge if challenge is not None else make_cram_challenge(hostname)

    def start(self, initial: bytes | None) -> SaslStep:
        self._advance("new")
        if initial:  # RFC 4422 §5: no initial response for server-first mechanisms
            return self._end(Failed("CRAM-MD5 does not take an initial response", True))
        self._state = "response"
        return Challenge(self._challenge)

    def step(self, response: bytes) -> SaslStep:
        self._advance("response")
        try:
            text = _text(response, "response")
        except _Malformed as exc:
            return self._end(Failed(f"CRAM-MD5: {exc}", True))
        username, _, digest = text.rpartition(" ")
        digest = digest.lower()
        if not username or len(digest) != 32 or not all(c in "0123456789abcdef" for c in digest):
            return self._end(Failed("CRAM-MD5 response is not 'user hex-digest'", True))
        user = normalize_username(username)
        secret = self._credentials.cram_secret(user)
        if secret is None:  # no password was tried: see "Timing and user enumeration"
            return self._end(TooWeak(user))
        expected = cram_md5_digest(secret, self._challenge)
        if hmac.compare_digest(expected.encode(), digest.encode()):
            return self._end(Authenticated(user))
        return self._end(Failed("CRAM-MD5: bad credentials", authcid=user))


class ScramSha256Server(_Exchange):
    """RFC 5802/7677 via scramp, without channel binding; ``nonce`` is for tests."""

    mechanism = SCRAM_SHA_256

    def __init__(self, credentials: CredentialLookup, *, nonce: str | None = None) -> None:
        super().__init__()
        from scramp import ScramMechanism

        self._credentials = credentials
        self._server = ScramMechanism(SCRAM_SHA_256).make_server(self._auth_fn, s_nonce=nonce)
        self._user = ""

    def _auth_fn(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self._user = normalize_username(username)
        keys = self._credentials.scram_keys(self._user) or _fake_scram_keys(self._user)
        return keys.salt, keys.stored_key, keys.server_key, keys.iterations

    def start(self, initial: bytes | None) -> SaslStep:
        self._advance("new")
        self._state = "client-first"
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> SaslStep:
        if self._state == "ack":  # the empty response to our server-final challenge
            if response:
                return self._end(Failed("SCRAM: non-empty response after server-final", True))
            return self._end(Authenticated(self._user))
        if self._state not in ("client-first", "client-final"):
            self._advance("client-first")
        try:
            text = response.decode("utf-8")
        except UnicodeDecodeError:
            return self._end(Failed("SCRAM message is not UTF-8", True))
        if self._state == "client-first":
            refused = _refuse_gs2_header(text)
            if refused is not None:
                return self._end(refused)
        return self._scram_step(text)

    def _scram_step(self, text: str) -> SaslStep:
        from scramp import ScramException
        from scramp.utils import ServerError

        try:
            if self._state == "client-first":
                self._server.set_client_first(text)
                data = self._server.get_server_first()
                self._state = "client-final"
            else:
                self._server.set_client_final(text)
                data = self._server.get_server_final()
                self._state = "ack"
        except ScramException as exc:
            if exc.server_error is ServerError.INVALID_PROOF:
                return self._end(Failed("SCRAM: bad credentials", authcid=self._user))
            return self._end(Failed(f"SCRAM: {exc}", True))
        return Challenge(data.encode("utf-8"))


def _refuse_gs2_header(client_first: str) -> Failed | None:
    flag, _, rest = client_first.partition(",")
    if flag.startswith("p="):
        return Failed("SCRAM: client requires channel binding (-PLUS is not offered)")
    if rest.startswith("a="):
        return Failed("SCRAM: authorization identity (a=) is not supported")
    return None


def server_mechanism(
    name: str, credentials: CredentialLookup, *, hostname: str = "localhost"
) -> SaslServer | None:
    """A fresh server state machine for ``name`` (any case), or None if unsupported."""
    match name.upper():
        case "PLAIN":
            return PlainServer()
        case "LOGIN":
            return LoginServer()
        case "CRAM-MD5":
            return CramMd5Server(credentials, hostname=hostname)
        case "SCRAM-SHA-256":
            return ScramSha256Server(credentials)
    return None
