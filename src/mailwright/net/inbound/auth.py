"""The AUTH exchange of an inbound session (RFC 4954), over the core's SASL machines.

Decisions, in order (each an ``Outcome``: a reply and the reason to log, none
written here):

1. AUTH not enabled (no user store) -> 503 5.5.1.
2. Not under TLS and the listener does not allow plaintext AUTH -> 538 5.7.11
   (RFC 4954 §6 "encryption required"); we never offer AUTH there either.
3. The client IP is banned for brute force -> 454 4.7.0, without checking anything;
   also for a response within an exchange that began before the ban.
   A password check (PLAIN, LOGIN) also waits for its turn (``net.authqueue``: a few
   at once per address, fair across addresses): if the address got banned while it
   waited, 454 4.7.0 without checking; if too many checks wait already, 454 4.7.0
   ("temporary authentication failure") at once.
4. Unknown mechanism -> 504 5.5.4.
5. Then the mechanism runs: 334 challenges, ``*`` cancels with 501 5.7.0, a malformed
   response is 501 5.5.2, bad credentials 535 5.7.8 after a growing delay, success
   235 2.7.0.  Password hashing (argon2, deliberately slow) runs in a thread so one
   login never stalls the other sessions.  CRAM-MD5 for a login without a CRAM-MD5
   secret is 534 5.7.9 at once ("mechanism too weak for that user", RFC 4954 §6):
   no password was tried, so it is neither counted nor tarpitted (``smtp._sasl``
   explains the trade-off).

Secrets never reach a log: this module logs only the login name and the outcome.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from mailwright.accounts.users import UserStore, UsersUnavailable
from mailwright.net.authqueue import QueueFull
from mailwright.net.inbound.outcome import Outcome
from mailwright.net.inbound.view import SessionView
from mailwright.smtp import (
    CRAM_MD5,
    SERVER_MECHANISMS,
    Auth,
    Authenticated,
    AuthResponse,
    Challenge,
    CheckPassword,
    Failed,
    Reply,
    SaslServer,
    SaslStep,
    TooWeak,
    codes,
    may_authorize,
    server_mechanism,
)

log = logging.getLogger(__name__)


# Outcomes of fixed replies (and fixed reasons), built once.
_OK = Outcome(codes.R235_AUTH_OK)
_NOT_ENABLED = Outcome(codes.R503_AUTH_NOT_ENABLED)
_UNKNOWN_MECHANISM = Outcome(codes.R504_UNKNOWN_MECHANISM)
_CANCELLED = Outcome(codes.R501_AUTH_CANCELLED)
_MALFORMED = Outcome(codes.R501_AUTH_MALFORMED)
_TEMPORARY = Outcome(codes.R454_AUTH_TEMPORARY)
_BANNED = Outcome(codes.R454_AUTH_BANNED, "AUTH from a banned IP")


def offered_mechanisms(view: SessionView) -> tuple[str, ...]:
    """Mechanisms to advertise in EHLO now (none before TLS unless allowed).

    CRAM-MD5 is offered only while at least one user has opted in: offering a
    mechanism nobody can use would cost every smtplib login (which tries CRAM-MD5
    first whenever it is offered) a round trip.  The other users' CRAM-MD5 attempts
    end in 534 5.7.9 at once, without counting as a failure (``AuthExchange``).
    """
    users = view.services.users
    if users is None:
        return ()
    if not view.core.tls_active and not view.listener.allow_plaintext_auth:
        return ()
    if _anyone_uses_cram_md5(users):
        return SERVER_MECHANISMS
    return tuple(m for m in SERVER_MECHANISMS if m != CRAM_MD5)


def _anyone_uses_cram_md5(users: UserStore) -> bool:
    try:
        return any(CRAM_MD5 in info.mechanisms for info in users.list())
    except Exception:  # an unreadable user file: AUTH itself answers 454 then
        log.exception("user store failed while building the EHLO reply")
        return False


class AuthExchange:
    def __init__(self, view: SessionView) -> None:
        self.v = view
        self.mechanism: SaslServer | None = None

    async def start(self, event: Auth) -> Outcome:
        v = self.v
        users = v.services.users
        if users is None:
            return _NOT_ENABLED
        if not v.core.tls_active and not v.listener.allow_plaintext_auth:
            return Outcome(codes.R538_ENCRYPTION_REQUIRED, "AUTH before TLS")
        if v.services.auth_guard.banned(v.ctx.peer_ip):
            return _BANNED
        try:
            users.ensure_readable()  # fail closed: no account is verifiable now
        except UsersUnavailable:  # the store logged which file and why
            return Outcome(codes.R454_AUTH_TEMPORARY, "AUTH while the users file is unreadable")
        mechanism = server_mechanism(event.mechanism, users, hostname=v.hostname)
        if mechanism is None:
            return _UNKNOWN_MECHANISM
        self.mechanism = mechanism
        return await self._answer(mechanism.start(event.initial_response))

    async def respond(self, event: AuthResponse) -> Outcome:
        mechanism = self.mechanism
        if mechanism is None:  # pragma: no cover - the core only yields this in AUTH
            return _MALFORMED
        if event.data is None:
            self.mechanism = None
            return _CANCELLED
        if self.v.services.auth_guard.banned(self.v.ctx.peer_ip):
            # Banned since the exchange began (its parallel sessions failed): the
            # response would be a guess (LOGIN's password, a CRAM-MD5 digest, a SCRAM
            # proof), so it is not checked.
            self.mechanism = None
            return _BANNED
        return await self._answer(mechanism.step(event.data))

    async def _answer(self, step: SaslStep) -> Outcome:
        match step:
            case Challenge(data):
                return Outcome(Reply(334, "", (base64.b64encode(data).decode("ascii"),)))
            case CheckPassword(authcid, password, authzid):
                return await self._check_password(authcid, password, authzid)
            case Authenticated(authcid, authzid, _):
                if may_authorize(authcid, authzid):
                    return self._success(authcid)
                return await self._failure(authcid, "authorization identity refused")
            case TooWeak(authcid):
                name = self.mechanism.mechanism if self.mechanism is not None else "?"
                self.mechanism = None
                return Outcome(
                    codes.R534_AUTH_TOO_WEAK, f"AUTH {name} refused for {authcid}: no {name} secret"
                )
            case Failed(reason, malformed, authcid):
                self.mechanism = None
                if malformed:
                    return Outcome(codes.R501_AUTH_MALFORMED, f"AUTH malformed: {reason}")
                return await self._failure(authcid, reason)
        raise TypeError(f"unexpected SASL step {step!r}")  # pragma: no cover

    async def _check_password(self, authcid: str, password: str, authzid: str) -> Outcome:
        v = self.v
        users = v.services.users
        assert users is not None
        checks = v.services.password_checks
        ip = v.ctx.peer_ip
        try:
            async with checks.turn(ip):
                if v.services.auth_guard.banned(ip):
                    # Its other attempts reached the failure limit while this one waited.
                    self.mechanism = None
                    return _BANNED
                try:
                    ok = await checks.run(users.verify_password, authcid, password)
                except Exception:
                    log.exception("user store failed during AUTH")
                    self.mechanism = None
                    return _TEMPORARY
                if ok and may_authorize(authcid, authzid):
                    return self._success(authcid)
                # Counted before the turn passes on, so the next waiter sees the ban.
                failure = self._record_failure(authcid, "bad password")
        except QueueFull:
            self.mechanism = None
            return Outcome(
                codes.R454_AUTH_TEMPORARY, "AUTH refused: too many password checks waiting"
            )
        return await _tarpit(*failure)

    def _success(self, login: str) -> Outcome:
        v = self.v
        mechanism = self.mechanism.mechanism if self.mechanism is not None else "?"
        self.mechanism = None
        v.ctx.auth_user = login
        v.services.auth_guard.success(v.ctx.peer_ip)
        v.services.maillog.authenticated(v.ctx.session_id, v.ctx.peer_ip, login, mechanism)
        return _OK

    async def _failure(self, login: str, reason: str) -> Outcome:
        return await _tarpit(*self._record_failure(login, reason))

    def _record_failure(self, login: str, reason: str) -> tuple[float, Outcome]:
        """Count the failure against the client IP: how long to delay the 535, and
        the 535 with its reason."""
        self.mechanism = None
        delay = self.v.services.auth_guard.failure(self.v.ctx.peer_ip)
        return delay, Outcome(
            codes.R535_BAD_CREDENTIALS, f"AUTH failed for {login or '?'}: {reason}"
        )


async def _tarpit(delay: float, outcome: Outcome) -> Outcome:
    if delay > 0:
        # Tarpit the guesser before it may try again (RFC 4954 §15 advises it).
        await asyncio.sleep(delay)
    return outcome
