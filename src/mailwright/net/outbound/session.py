"""``OutboundSession``: open one connection to one peer, send messages over it, quit.

Opening (``open``) runs, in order: connect; the greeting (RFC 5321 §3.1; 5xx is a
permanent refusal of this host, 4xx temporary); EHLO, or HELO when EHLO is answered
5xx (§3.2), or LHLO for LMTP (RFC 2033 §4.1); STARTTLS as the ``TlsPolicy`` says;
EHLO again over TLS (RFC 3207 §4.2); AUTH when credentials are set (RFC 4954).

TLS, per policy mode:

* NONE: never STARTTLS.
* OPPORTUNISTIC (RFC 7435): STARTTLS when offered, certificate not checked.  A STARTTLS
  answered with an error leaves the session in plaintext, in step (as Postfix's "may").
  A *failed handshake* fails the session (temporary): the connection is half-way into
  TLS and cannot be trusted to carry plaintext; the caller may retry or try another
  host (a caller that wants plaintext then asks again with NONE).
* ENCRYPT, VERIFY, DANE: TLS required; not offered, refused or failed -> SessionError
  (temporary, 4.7.4 / 4.7.5 as Postfix defers), never a plaintext fallback.  VERIFY
  checks the chain (system CAs + ``settings.ca_file``) and the name against
  ``policy.match_names`` (``peer.host`` when empty): host names, matched against the
  certificate's DNS-IDs, whose wildcards follow RFC 6125 §6.4.3 (a policy's own MX
  patterns, as MTA-STS has them, are the caller's to resolve into names).  Then, for any
  mode, ``policy.peer_check(ssl_object)`` when set: a reason fails the session.

AUTH: the strongest mechanism both sides know.  Over TLS that is the core's order
(SCRAM-SHA-256, PLAIN, LOGIN, CRAM-MD5: CRAM-MD5 forces the server to keep a
password equivalent); without TLS, where it is allowed at all
(``allow_plaintext_auth``), the mechanisms that do not put the password on the wire
come first (SCRAM-SHA-256, CRAM-MD5).  A 535 is permanent for this host (the caller
decides whether that defers the mail, as Postfix's smtp_sasl_auth_soft_bounce does).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import ssl
from dataclasses import replace

from mailwright.net.outbound.channel import Channel, ChannelError
from mailwright.net.outbound.model import (
    ClientSettings,
    OutgoingMessage,
    Peer,
    SessionError,
    SessionInfo,
    Stage,
    TransactionResult,
    TranscriptEntry,
)
from mailwright.net.outbound.tlspolicy import OPPORTUNISTIC, TlsMode, TlsPolicy
from mailwright.net.outbound.transaction import describe_command, run_transaction
from mailwright.net.tls import certificate_names_match, client_context
from mailwright.smtp import (
    Auth,
    AuthResponse,
    Ehlo,
    Event,
    Helo,
    Quit,
    Reply,
    Rset,
    SaslError,
    StartTls,
    State,
    choose_mechanism,
    client_mechanism,
    codes,
    parse_ehlo,
)

log = logging.getLogger("mailwright.outbound")

# Without TLS, prefer what keeps the password off the wire (RFC 4954 §4, RFC 7677).
_PLAINTEXT_PREFERENCE = ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _context(policy: TlsPolicy, settings: ClientSettings) -> ssl.SSLContext:
    return client_context(verify=policy.mode is TlsMode.VERIFY, ca_file=settings.ca_file)


def _sni(peer: Peer) -> str | None:
    return None if _is_ip_literal(peer.host) else peer.host


class OutboundSession:
    """One open connection to one peer.  Use ``await OutboundSession.open(...)``."""

    def __init__(
        self, channel: Channel, peer: Peer, settings: ClientSettings, policy: TlsPolicy
    ) -> None:
        self._channel = channel
        self.peer = peer
        self.settings = settings
        self.policy = policy
        self.info = SessionInfo(peer.host, peer.address, peer.port, policy=policy)
        self._stage = Stage.GREETING
        self._lock = asyncio.Lock()
        self._closed = False
        self._opening = 0  # transcript entries of the opening, kept for the session's life

    # -- opening ------------------------------------------------------------------

    @classmethod
    async def open(
        cls, peer: Peer, settings: ClientSettings, policy: TlsPolicy = OPPORTUNISTIC
    ) -> OutboundSession:
        """Connect and run greeting, EHLO, STARTTLS, EHLO, AUTH; SessionError when any
        of them fails (the connection is closed then)."""
        unix = settings.lmtp and "/" in peer.address
        implicit = settings.implicit_tls and not unix
        try:
            channel = await Channel.connect(
                peer,
                settings.timeouts.connect,
                unix=unix,
                lmtp=settings.lmtp,
                trace=settings.trace,
                tls=_context(policy, settings) if implicit else None,
                server_hostname=_sni(peer),
                handshake_timeout=settings.timeouts.tls_handshake,
            )
        except ChannelError as exc:
            stage = Stage.TLS if exc.reply is codes.R451_TLS_FAILED else Stage.CONNECT
            raise SessionError(
                stage, exc.reason, temporary=True, result_reply=exc.reply, peer=peer
            ) from None
        session = cls(channel, peer, settings, policy)
        try:
            if implicit:
                session._stage = Stage.TLS
                session._check_tls()
            if settings.stop_after is not Stage.CONNECT:
                await session._open()
            session._opening = len(channel.transcript)
        except ChannelError as exc:
            channel.abort()
            raise session._error(exc.reason, result_reply=exc.reply) from None
        except SessionError:
            session._leave()
            raise
        except BaseException:
            channel.abort()
            raise
        return session

    def _leave(self) -> None:
        """After a refusal that left the session in step (TLS not offered, AUTH
        refused, a failed certificate check): QUIT without waiting for its reply, as
        RFC 5321 §4.1.1.10 asks of a client that is done, then close."""
        conn = self._channel.conn
        if (
            self._channel.alive
            and conn.pending == 0
            and conn.state
            in (
                State.READY,
                State.NEED_HELO,
            )
        ):
            with contextlib.suppress(ChannelError):
                self._channel.write([Quit()])
            self._channel.close()  # flushes the QUIT
        else:
            self._channel.abort()
        self._closed = True

    def _error(
        self,
        reason: str,
        *,
        reply: Reply | None = None,
        result_reply: Reply | None = None,
        temporary: bool | None = None,
    ) -> SessionError:
        if temporary is None:
            temporary = reply is None or not reply.is_permanent
        return SessionError(
            self._stage,
            reason,
            temporary=temporary,
            reply=reply,
            result_reply=result_reply or reply or codes.R451_CONNECTION_LOST,
            peer=self.peer,
            transcript=tuple(self._channel.transcript),
        )

    async def _open(self) -> None:
        timeouts = self.settings.timeouts
        greeting = await self._channel.reply(Stage.GREETING, "", timeouts.greeting)
        self.info = self._replace(greeting=greeting)
        if greeting.code != 220:
            raise self._error(f"greeting refused: {greeting}", reply=greeting)
        stop = self.settings.stop_after
        if stop is Stage.GREETING:
            return
        await self._hello()
        mode = self.policy.mode
        if self.settings.implicit_tls:
            pass  # already inside TLS (RFC 8314 §3.3): no STARTTLS (RFC 3207 §4.2)
        elif mode is not TlsMode.NONE and "STARTTLS" in self.info.extensions:
            await self._starttls()
        elif self.policy.required:
            self._stage = Stage.STARTTLS
            raise self._error(
                "TLS required but not offered", result_reply=codes.R451_TLS_NOT_OFFERED
            )
        if stop in (Stage.EHLO, Stage.HELO, Stage.STARTTLS, Stage.TLS):
            return
        if self.settings.auth is not None:
            await self._auth()

    def _replace(self, **changes: object) -> SessionInfo:
        return replace(self.info, **changes)  # type: ignore[arg-type]

    async def _command(self, event: Event, stage: Stage, timeout: float) -> Reply:
        self._stage = stage
        self._channel.write([event])
        command = describe_command(event)
        if self.settings.lmtp and isinstance(event, Ehlo):
            command = "LHLO" + command[4:]  # as the core wrote it (RFC 2033 §4.1)
        return await self._channel.reply(stage, command, timeout)

    async def _hello(self) -> None:
        timeout = self.settings.timeouts.command
        name = self.settings.helo_name
        reply = await self._command(Ehlo(name), Stage.EHLO, timeout)
        if reply.is_positive:
            self.info = self._replace(extensions=parse_ehlo(reply), esmtp=True)
            return
        # RFC 5321 §3.2: a server that does not know EHLO answers 5xx; try HELO.
        if self.settings.lmtp or not reply.is_permanent or self._channel.conn.state is State.CLOSED:
            raise self._error(f"EHLO refused: {reply}", reply=reply)
        reply = await self._command(Helo(name), Stage.HELO, timeout)
        if not reply.is_positive:
            raise self._error(f"HELO refused: {reply}", reply=reply)
        self.info = self._replace(extensions={}, esmtp=False)

    async def _starttls(self) -> None:
        timeouts = self.settings.timeouts
        reply = await self._command(StartTls(), Stage.STARTTLS, timeouts.command)
        if reply.code != 220:
            if self.policy.required or self._channel.conn.state is State.CLOSED:
                raise self._error(
                    f"STARTTLS refused: {reply}",
                    reply=reply,
                    result_reply=codes.R451_TLS_NOT_OFFERED,
                    temporary=True,
                )
            log.info(
                "%s[%s]: STARTTLS refused (%s), continuing in plaintext",
                self.peer.host,
                self.peer.address,
                reply,
            )
            return
        self._stage = Stage.TLS
        context = _context(self.policy, self.settings)
        try:
            await self._channel.start_tls(context, _sni(self.peer), timeouts.tls_handshake)
        except ChannelError as exc:
            raise self._error(exc.reason, result_reply=exc.reply, temporary=True) from None
        self._check_tls()
        if self.settings.stop_after in (Stage.STARTTLS, Stage.TLS):
            return
        await self._hello()  # RFC 3207 §4.2: forget what the plaintext EHLO said

    def _check_tls(self) -> None:
        """After the handshake (STARTTLS or implicit): the name check of VERIFY, the
        policy's peer check, then the session info."""
        ssl_object = self._channel.ssl_object
        assert ssl_object is not None
        if self.policy.mode is TlsMode.VERIFY:
            names = self.policy.match_names or (self.peer.host,)
            if not certificate_names_match(ssl_object, names):
                raise self._error(
                    f"certificate does not match {', '.join(names)}",
                    result_reply=codes.R451_TLS_FAILED,
                    temporary=True,
                )
        if self.policy.peer_check is not None:
            try:
                problem = self.policy.peer_check(ssl_object)
            except Exception as exc:  # a checker's bug fails closed
                problem = f"peer check failed: {exc!r}"
            if problem is not None:
                raise self._error(problem, result_reply=codes.R451_TLS_FAILED, temporary=True)
        cipher = ssl_object.cipher()
        self.info = self._replace(
            tls_version=ssl_object.version(), tls_cipher=cipher[0] if cipher else None
        )

    async def _auth(self) -> None:
        self._stage = Stage.AUTH
        credentials = self.settings.auth
        assert credentials is not None
        tls = self._channel.conn.tls_active
        if not tls and not self.settings.allow_plaintext_auth:
            raise self._error(
                "refusing to send credentials without TLS",
                result_reply=codes.R451_AUTH_UNAVAILABLE,
                temporary=True,
            )
        offered = {m.upper() for m in self.info.extensions.get("AUTH", "").split()}
        if credentials.mechanisms:
            wanted = [m.upper() for m in credentials.mechanisms]
            mechanism = next((m for m in wanted if m in offered), None)
        elif tls:
            mechanism = choose_mechanism(offered)
        else:
            mechanism = next((m for m in _PLAINTEXT_PREFERENCE if m in offered), None)
        if mechanism is None:
            raise self._error(
                f"no usable AUTH mechanism offered ({' '.join(sorted(offered)) or 'none'})",
                result_reply=codes.R451_AUTH_UNAVAILABLE,
                temporary=True,
            )
        client = client_mechanism(
            mechanism, credentials.username, credentials.password, authzid=credentials.authzid
        )
        timeout = self.settings.timeouts.command
        reply = await self._command(Auth(mechanism, client.initial()), Stage.AUTH, timeout)
        while reply.code == 334:
            try:
                challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
                response = client.respond(challenge)
            except (SaslError, binascii.Error, ValueError) as exc:
                # RFC 4954 §4: "*" cancels; the server answers 501 and we stop.
                await self._command(AuthResponse(None), Stage.AUTH, timeout)
                raise self._error(
                    f"AUTH {mechanism}: {exc}",
                    result_reply=codes.R451_AUTH_UNAVAILABLE,
                    temporary=True,
                ) from None
            reply = await self._command(AuthResponse(response), Stage.AUTH, timeout)
        # RFC 4954 §4 says 235; any 2xx counts, as Postfix's client counts it (smtp-sink
        # answers 250).
        if not 200 <= reply.code < 300:
            raise self._error(f"AUTH {mechanism} refused: {reply}", reply=reply)
        if not getattr(client, "complete", True):
            # SCRAM: a 235 without the server's proof means it never knew our secret.
            raise self._error(
                f"AUTH {mechanism}: server signature not verified",
                result_reply=codes.R451_AUTH_UNAVAILABLE,
                temporary=True,
            )
        self.info = self._replace(authenticated_as=credentials.username)

    # -- using --------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether ``send`` can carry another message on this connection."""
        return (
            not self._closed
            and self._channel.alive
            and self._channel.conn.state is State.READY
            and self._channel.conn.pending == 0
        )

    @property
    def transcript(self) -> tuple[TranscriptEntry, ...]:
        """The replies of the opening (greeting to AUTH), then those since the start
        of the last transaction, in order.  Earlier transactions' replies are in their
        ``TransactionResult``; dropping them here keeps a long-lived pooled session
        from growing without bound."""
        return tuple(self._channel.transcript)

    async def send(
        self, message: OutgoingMessage, *, reset_first: bool = False
    ) -> TransactionResult:
        """One transaction; never raises for the peer's or the network's failures:
        they are in the per-recipient replies (see ``run_transaction``).

        ``reset_first`` for a connection that sat idle (a pooled one): RSET ahead of
        MAIL, in the same write when the peer pipelines; a result marked ``stale``
        when the connection turned out gone (then nothing was sent for good)."""
        async with self._lock:
            start = len(self._channel.transcript)
            del self._channel.transcript[self._opening : start]
            result = await run_transaction(
                self._channel,
                self.info,
                self.settings,
                message,
                usable=self.usable,
                reset_first=reset_first,
            )
        if not result.usable:
            self._channel.abort()
            self._closed = True
        return result

    async def reset(self) -> bool:
        """RSET, to check an idle connection before reusing it (Postfix does the same
        with cached connections, bounded by smtp_rset_timeout).  False, and the
        connection closed, when the peer is gone or does not answer 250."""
        if not self.usable:
            return False
        async with self._lock:
            try:
                reply = await self._command(Rset(), Stage.RSET, self.settings.timeouts.rset)
                if reply.code == 250 and self.usable:
                    return True
            except ChannelError:
                pass
        self._channel.abort()
        self._closed = True
        return False

    async def quit(self) -> None:
        """QUIT (RFC 5321 §4.1.1.10) and close; never raises."""
        if self._closed:
            return
        conn = self._channel.conn
        # Also before EHLO or right after TLS (a session stopped early on request):
        # QUIT is valid in any state outside a transaction (RFC 5321 §4.1.1.10).
        usable = self.usable or (
            self._channel.alive and conn.pending == 0 and conn.state is State.NEED_HELO
        )
        self._closed = True
        with contextlib.suppress(Exception):
            if usable:
                await self._command(Quit(), Stage.QUIT, self.settings.timeouts.quit)
        with contextlib.suppress(Exception):
            self._channel.close()
