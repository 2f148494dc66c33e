"""The user store: who may authenticate, with which secrets, owning which addresses.

A user has a login, which is its primary address, and optionally more addresses
(aliases it may use as sender: sender-login matching asks ``owns_address``).  An
address belongs to at most one user, so ``user_for_address`` is unambiguous.  Logins
and addresses are normalised with ``mailwright.smtp.normalize_username`` (NFC,
lower case, IDNA A-label domain) so the store and the SASL mechanisms agree.

Secrets, per user (nothing here is the plaintext password, except the opt-in CRAM-MD5
secret):

* ``password_hash``: argon2id in PHC string format (argon2-cffi ``PasswordHasher``;
  the default parameters are RFC 9106's second recommended option, t=3, m=64 MiB,
  p=4).  Used by PLAIN and LOGIN.  The password is SASLprep'ed (RFC 4013) before
  hashing and before verifying, as SCRAM does, so every mechanism accepts the same
  password.
* ``scram_sha_256``: the keys SCRAM needs (RFC 5802 §3: salt, StoredKey, ServerKey,
  iteration count), in the RFC 5803 / PostgreSQL text form
  ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 fields).
* ``cram_md5_secret``: **only for users who opted in.**  CRAM-MD5 (RFC 2195) needs a
  secret the server can compute HMAC-MD5 with, which is the password itself: anyone
  who reads this file can log in as that user with any mechanism.  Keep it off unless
  a client cannot do anything better.

File format: ``<data_dir>/users.json``, mode 0600::

    {"version": 1,
     "users": {"alice@example.com": {"addresses": ["a.smith@example.com"],
                                     "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$...",
                                     "scram_sha_256": "SCRAM-SHA-256$100000:...$...:...",
                                     "cram_md5_secret": "..."}}}

Why one JSON file: user lists are small (hundreds, not millions), the file is
human-inspectable and diffable, its secret formats are the ones Dovecot (``{ARGON2ID}``)
and PostgreSQL/LDAP (RFC 5803) read, and rewriting it whole through
``mailwright.fs.durable.write_atomic`` gives atomic, durable updates with no
database.  Writers (``mailwright user ...``) serialise through an ``flock`` on
``users.json.lock`` and re-read the file under the lock, so two concurrent commands
cannot lose each other's change.  The running server calls ``_refresh`` before each
lookup: one ``stat`` (inode, mtime, size; ``write_atomic`` renames, so the inode
changes on every write), and a re-read only when that changed, so ``mailwright user
add`` and ``del`` take effect at the next AUTH, without a restart.

If the file cannot be read (a hand edit broke the JSON, it belongs to another user),
the store fails closed: it forgets every account and every lookup raises
``UsersUnavailable`` (AUTH answers 454 4.7.0), with an error in the log naming the
file and the problem at each attempt, until the file is readable again.  Keeping a
"last good copy" instead would keep honouring accounts that were deleted or whose
password was changed since, which is what an operator deleting an account fears most.

Rewrites keep the file's owner, group and mode (the server usually runs as an
unprivileged ``[process] user`` while ``mailwright user`` runs as root): the new file
is handed over before it is renamed into place.  A new file gets ``new_file_owner``.

Unknown users: ``verify_password`` verifies against a dummy argon2 hash made with the
same parameters, so the time taken does not reveal whether the login exists.
Secrets are never logged or included in exception messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailwright.fs.durable import FILE_MODE, ensure_dir, write_atomic
from mailwright.smtp import (
    CRAM_MD5,
    DEFAULT_SCRAM_ITERATIONS,
    LOGIN,
    MAX_SASL_FIELD,
    PLAIN,
    SCRAM_SHA_256,
    AddressError,
    ScramKeys,
    make_scram_keys,
    normalize_username,
    parse_path,
)

log = logging.getLogger(__name__)

USERS_FILE = "users.json"
FORMAT_VERSION = 1
_SCRAM_PREFIX = "SCRAM-SHA-256$"


class UserError(Exception):
    """A user-store operation failed; the message is one line, fit for the CLI."""


class UsersUnavailable(UserError):
    """The users file cannot be read: no account can be verified (fail closed)."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What may be shown about a user: no secrets."""

    login: str
    addresses: tuple[str, ...]  # primary (the login) first
    mechanisms: tuple[str, ...]


@dataclass(slots=True)
class _User:
    login: str
    addresses: tuple[str, ...]  # extra addresses, not including the login
    password_hash: str = field(repr=False)
    scram: ScramKeys = field(repr=False)
    cram_secret: str | None = field(default=None, repr=False)

    def all_addresses(self) -> tuple[str, ...]:
        return (self.login, *self.addresses)

    def info(self) -> UserInfo:
        mechs = (PLAIN, LOGIN, SCRAM_SHA_256) + ((CRAM_MD5,) if self.cram_secret else ())
        return UserInfo(self.login, self.all_addresses(), mechs)


def users_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / USERS_FILE


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def format_scram(keys: ScramKeys) -> str:
    """RFC 5803 form: ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey``."""
    return (
        f"{_SCRAM_PREFIX}{keys.iterations}:{_b64(keys.salt)}"
        f"${_b64(keys.stored_key)}:{_b64(keys.server_key)}"
    )


def parse_scram(text: str) -> ScramKeys:
    try:
        if not text.startswith(_SCRAM_PREFIX):
            raise ValueError("not SCRAM-SHA-256")
        params, keys = text[len(_SCRAM_PREFIX) :].split("$")
        iterations, salt = params.split(":")
        stored, server = keys.split(":")
        dec = base64.b64decode
        return ScramKeys(
            dec(salt, validate=True),
            dec(stored, validate=True),
            dec(server, validate=True),
            int(iterations),
        )
    except (ValueError, binascii.Error):
        raise ValueError("malformed SCRAM-SHA-256 entry") from None


def canonical_address(address: str, what: str = "address") -> str:
    """Validate an address (RFC 5321 mailbox syntax) and return its normalised form."""
    try:
        parsed = parse_path(f"<{address.strip()}>", allow_null=False)
    except AddressError as exc:
        raise UserError(f"invalid {what} {address!r}: {exc}") from None
    if parsed is None or not parsed.domain:
        raise UserError(f"invalid {what} {address!r}: a domain is required")
    canonical = normalize_username(str(parsed))
    if len(canonical.encode("utf-8")) > MAX_SASL_FIELD:
        raise UserError(f"invalid {what} {address!r}: too long")
    return canonical


def _prepare_password(password: str) -> str:
    """SASLprep (RFC 4013), as SCRAM applies it; raises ValueError if prohibited."""
    from scramp.utils import saslprep  # scramp's own, so the keys and hashes agree

    try:
        prepared: str = saslprep(password)  # scramp is untyped
    except Exception:  # scramp raises ScramException (not a ValueError)
        raise ValueError("password contains characters SASLprep prohibits") from None
    if not prepared:
        raise ValueError("password is empty after SASLprep")
    return prepared


class UserStore:
    """Users in one JSON file; implements ``CredentialLookup`` for the SASL mechanisms.

    ``hasher`` and ``scram_iterations`` exist so tests can use cheap parameters; the
    defaults are the strong ones.  Thread-safe: the server verifies passwords in
    worker threads while the event loop looks up SCRAM keys.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hasher: PasswordHasher | None = None,
        scram_iterations: int = DEFAULT_SCRAM_ITERATIONS,
        new_file_owner: tuple[int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        self._new_file_owner = new_file_owner  # (uid, gid) for a file created here
        self._hasher = hasher or PasswordHasher()
        self._scram_iterations = scram_iterations
        self._users: dict[str, _User] = {}
        self._by_address: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str], **kwargs: Any) -> UserStore:
        return cls(users_path(data_dir), **kwargs)

    # -- reading -------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self, *, force: bool = False) -> None:
        with self._lock:
            try:
                stamp = self._stat()
                if self._loaded and stamp == self._stamp and not force:
                    return
                users = self._read() if stamp is not None else {}
            except (OSError, ValueError) as exc:
                # Fail closed (module docstring): forget every account, and try again
                # at the next lookup.
                self._users, self._by_address, self._loaded = {}, {}, False
                problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                log.error(
                    "users file %s unreadable, refusing every login until it is fixed: %s",
                    self.path,
                    problem,
                )
                raise UsersUnavailable(f"cannot read {self.path}: {problem}") from None
            self._users = users
            self._by_address = {a: u.login for u in users.values() for a in u.all_addresses()}
            self._stamp, self._loaded = stamp, True

    def _read(self) -> dict[str, _User]:
        doc = json.loads(self.path.read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version {FORMAT_VERSION} users file")
        users: dict[str, _User] = {}
        for login, entry in doc.get("users", {}).items():
            try:
                users[login] = _User(
                    login=login,
                    addresses=tuple(entry.get("addresses", ())),
                    password_hash=entry["password_hash"],
                    scram=parse_scram(entry["scram_sha_256"]),
                    cram_secret=entry.get("cram_md5_secret"),
                )
            except (KeyError, TypeError, AttributeError, ValueError):
                raise ValueError(f"malformed entry for user {login!r}") from None
        return users

    def ensure_readable(self) -> None:
        """Raise ``UsersUnavailable`` if the users file cannot be read now (one
        ``stat`` when nothing changed).  AUTH asks first, so every mechanism refuses
        alike with 454 4.7.0 rather than each failing its own way."""
        self._refresh()

    def _get(self, login: str) -> _User | None:
        self._refresh()
        return self._users.get(normalize_username(login))

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, _User]]:
        """Lock, re-read from disk, let the caller modify, write back atomically."""
        ensure_dir(self.path.parent)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._refresh(force=True)
            users = dict(self._users)
            yield users
            self._write(users)
            self._refresh(force=True)
        finally:
            os.close(fd)  # releases the lock

    def _write(self, users: dict[str, _User]) -> None:
        doc: dict[str, Any] = {"version": FORMAT_VERSION, "users": {}}
        for login in sorted(users):
            user = users[login]
            entry: dict[str, Any] = {
                "addresses": list(user.addresses),
                "password_hash": user.password_hash,
                "scram_sha_256": format_scram(user.scram),
            }
            if user.cram_secret is not None:
                entry["cram_md5_secret"] = user.cram_secret
            doc["users"][login] = entry
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            mode, owner = FILE_MODE, self._new_file_owner
        else:  # keep who may read it: the server may run as another user than we do
            mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
        write_atomic(self.path, data, mode, owner=owner)

    def _secrets(self, password: str) -> tuple[str, ScramKeys]:
        if len(password.encode("utf-8")) > MAX_SASL_FIELD:
            raise UserError(f"password longer than {MAX_SASL_FIELD} octets")
        try:
            prepared = _prepare_password(password)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        keys = make_scram_keys(password, iterations=self._scram_iterations)
        return self._hasher.hash(prepared), keys

    # -- public API ----------------------------------------------------------------

    def add(
        self,
        login: str,
        password: str,
        *,
        addresses: Iterable[str] = (),
        cram_md5: bool = False,
    ) -> UserInfo:
        """Create a user; ``UserError`` if the login or an address is taken or invalid."""
        login = canonical_address(login, "login")
        extra = []
        for address in addresses:
            canonical = canonical_address(address)
            if canonical != login and canonical not in extra:
                extra.append(canonical)
        password_hash, keys = self._secrets(password)
        with self._writing() as users:
            taken = {a: u.login for u in users.values() for a in u.all_addresses()}
            if login in users:
                raise UserError(f"user {login} already exists")
            for address in (login, *extra):
                if address in taken:
                    raise UserError(f"address {address} already belongs to {taken[address]}")
            user = _User(login, tuple(extra), password_hash, keys, password if cram_md5 else None)
            users[login] = user
        return user.info()

    def set_password(self, login: str, password: str, *, cram_md5: bool | None = None) -> None:
        """Replace all secrets; ``cram_md5`` None keeps the user's current choice."""
        password_hash, keys = self._secrets(password)
        with self._writing() as users:
            user = users.get(normalize_username(login))
            if user is None:
                raise UserError(f"no such user: {login}")
            keep_cram = user.cram_secret is not None if cram_md5 is None else cram_md5
            users[user.login] = _User(
                user.login,
                user.addresses,
                password_hash,
                keys,
                password if keep_cram else None,
            )

    def delete(self, login: str) -> None:
        with self._writing() as users:
            if users.pop(normalize_username(login), None) is None:
                raise UserError(f"no such user: {login}")

    def list(self) -> list[UserInfo]:
        self._refresh()
        return [self._users[login].info() for login in sorted(self._users)]

    def get(self, login: str) -> UserInfo | None:
        user = self._get(login)
        return user.info() if user else None

    def verify_password(self, login: str, password: str) -> bool:
        """argon2 verification; unknown users cost the same (a dummy hash is verified)."""
        user = self._get(login)
        try:
            prepared = _prepare_password(password)
        except ValueError:
            prepared = None
        target = user.password_hash if user is not None else self._dummy()
        try:
            ok: bool = self._hasher.verify(target, prepared if prepared is not None else password)
        except (VerificationError, InvalidHashError):
            ok = False
        return ok and user is not None and prepared is not None

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def owns_address(self, login: str, address: str) -> bool:
        """Whether ``address`` is the user's login or one of its extra addresses."""
        user = self._get(login)
        return user is not None and normalize_username(address) in user.all_addresses()

    def user_for_address(self, address: str) -> str | None:
        self._refresh()
        return self._by_address.get(normalize_username(address))

    # -- CredentialLookup ----------------------------------------------------------

    def cram_secret(self, user: str) -> str | None:
        found = self._get(user)
        return found.cram_secret if found else None

    def scram_keys(self, user: str) -> ScramKeys | None:
        found = self._get(user)
        return found.scram if found else None
