"""The AUTH exchange of an inbound session (RFC 4954), over the core's SASL machines.

Decisions, in order (each a reply, none written here):

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
from typing import TYPE_CHECKING

from mailwright.accounts.users import UsersUnavailable
from mailwright.net.authqueue import QueueFull
from mailwright.smtp import Auth, AuthResponse, Reply
from mailwright.smtp._sasl import (
    CRAM_MD5,
    SERVER_MECHANISMS,
    Authenticated,
    Challenge,
    CheckPassword,
    Failed,
    SaslServer,
    SaslStep,
    TooWeak,
    may_authorize,
    server_mechanism,
)

if TYPE_CHECKING:
    from mailwright.accounts.users import UserStore
    from mailwright.net.inbound.session import InboundSession

log = logging.getLogger(__name__)

R = Reply.of
R235_OK = R(235, "2.7.0", "Authentication successful")
R454_BANNED = R(454, "4.7.0", "Too many authentication failures, try again later")
R454_TEMPORARY = R(454, "4.7.0", "Temporary authentication failure")
R501_CANCELLED = R(501, "5.7.0", "Authentication cancelled")
R501_MALFORMED = R(501, "5.5.2", "Malformed authentication response")
R503_NOT_ENABLED = R(503, "5.5.1", "Error: authentication not enabled")
R504_UNKNOWN_MECHANISM = R(504, "5.5.4", "Unrecognized authentication mechanism")
R534_TOO_WEAK = R(534, "5.7.9", "Authentication mechanism is too weak for this user")
R535_BAD_CREDENTIALS = R(535, "5.7.8", "Authentication credentials invalid")
R538_ENCRYPTION_REQUIRED = R(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)


def offered_mechanisms(session: InboundSession) -> tuple[str, ...]:
    """Mechanisms to advertise in EHLO now (none before TLS unless allowed).

    CRAM-MD5 is offered only while at least one user has opted in: offering a
    mechanism nobody can use would cost every smtplib login (which tries CRAM-MD5
    first whenever it is offered) a round trip.  The other users' CRAM-MD5 attempts
    end in 534 5.7.9 at once, without counting as a failure (``AuthExchange``).
    """
    users = session.services.users
    if users is None:
        return ()
    if not session.conn.tls_active and not session.listener_config.allow_plaintext_auth:
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
    def __init__(self, session: InboundSession) -> None:
        self.s = session
        self.mechanism: SaslServer | None = None

    async def start(self, event: Auth) -> Reply:
        s = self.s
        users = s.services.users
        if users is None:
            return R503_NOT_ENABLED
        if not s.conn.tls_active and not s.listener_config.allow_plaintext_auth:
            s.reject_reason = "AUTH before TLS"
            return R538_ENCRYPTION_REQUIRED
        if s.services.auth_guard.banned(s.ctx.peer_ip):
            s.reject_reason = "AUTH from a banned IP"
            return R454_BANNED
        try:
            users.ensure_readable()  # fail closed: no account is verifiable now
        except UsersUnavailable:  # the store logged which file and why
            s.reject_reason = "AUTH while the users file is unreadable"
            return R454_TEMPORARY
        mechanism = server_mechanism(event.mechanism, users, hostname=s.hostname)
        if mechanism is None:
            return R504_UNKNOWN_MECHANISM
        self.mechanism = mechanism
        return await self._answer(mechanism.start(event.initial_response))

    async def respond(self, event: AuthResponse) -> Reply:
        mechanism = self.mechanism
        if mechanism is None:  # pragma: no cover - the core only yields this in AUTH
            return R501_MALFORMED
        if event.data is None:
            self.mechanism = None
            return R501_CANCELLED
        s = self.s
        if s.services.auth_guard.banned(s.ctx.peer_ip):
            # Banned since the exchange began (its parallel sessions failed): the
            # response would be a guess (LOGIN's password, a CRAM-MD5 digest, a SCRAM
            # proof), so it is not checked.
            self.mechanism = None
            s.reject_reason = "AUTH from a banned IP"
            return R454_BANNED
        return await self._answer(mechanism.step(event.data))

    async def _answer(self, step: SaslStep) -> Reply:
        s = self.s
        match step:
            case Challenge(data):
                return Reply(334, "", (base64.b64encode(data).decode("ascii"),))
            case CheckPassword(authcid, password, authzid):
                return await self._check_password(authcid, password, authzid)
            case Authenticated(authcid, authzid, _):
                if may_authorize(authcid, authzid):
                    return self._success(authcid)
                return await self._failure(authcid, "authorization identity refused")
            case TooWeak(authcid):
                name = self.mechanism.mechanism if self.mechanism is not None else "?"
                self.mechanism = None
                s.reject_reason = f"AUTH {name} refused for {authcid}: no {name} secret"
                return R534_TOO_WEAK
            case Failed(reason, malformed, authcid):
                self.mechanism = None
                if malformed:
                    s.reject_reason = f"AUTH malformed: {reason}"
                    return R501_MALFORMED
                return await self._failure(authcid, reason)
        raise TypeError(f"unexpected SASL step {step!r}")  # pragma: no cover

    async def _check_password(self, authcid: str, password: str, authzid: str) -> Reply:
        s = self.s
        users = s.services.users
        assert users is not None
        checks = s.services.password_checks
        ip = s.ctx.peer_ip
        try:
            async with checks.turn(ip):
                if s.services.auth_guard.banned(ip):
                    # Its other attempts reached the failure limit while this one waited.
                    self.mechanism = None
                    s.reject_reason = "AUTH from a banned IP"
                    return R454_BANNED
                try:
                    ok = await checks.run(users.verify_password, authcid, password)
                except Exception:
                    log.exception("user store failed during AUTH")
                    self.mechanism = None
                    return R454_TEMPORARY
                if ok and may_authorize(authcid, authzid):
                    return self._success(authcid)
                # Counted before the turn passes on, so the next waiter sees the ban.
                delay = self._record_failure(authcid, "bad password")
        except QueueFull:
            self.mechanism = None
            s.reject_reason = "AUTH refused: too many password checks waiting"
            return R454_TEMPORARY
        return await _tarpit(delay)

    def _success(self, login: str) -> Reply:
        s = self.s
        mechanism = self.mechanism.mechanism if self.mechanism is not None else "?"
        self.mechanism = None
        s.ctx.auth_user = login
        s.services.auth_guard.success(s.ctx.peer_ip)
        s.services.maillog.authenticated(s.ctx.session_id, s.ctx.peer_ip, login, mechanism)
        return R235_OK

    async def _failure(self, login: str, reason: str) -> Reply:
        return await _tarpit(self._record_failure(login, reason))

    def _record_failure(self, login: str, reason: str) -> float:
        """Count the failure against the client IP; how long to delay the 535."""
        self.mechanism = None
        s = self.s
        s.reject_reason = f"AUTH failed for {login or '?'}: {reason}"
        return s.services.auth_guard.failure(s.ctx.peer_ip)


async def _tarpit(delay: float) -> Reply:
    if delay > 0:
        # Tarpit the guesser before it may try again (RFC 4954 §15 advises it).
        await asyncio.sleep(delay)
    return R535_BAD_CREDENTIALS
