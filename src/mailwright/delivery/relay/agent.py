"""The relay delivery agent: queued mail to other hosts by SMTP (MX or smarthost)
or LMTP, per recipient truth back to the queue.

One call, one message: the recipients are grouped by destination (``routes``), one
transaction per destination, the destinations concurrently.  For a destination:

1. its candidates (``mx``: MX hosts in order, or the next hop's addresses); a
   routing failure (null MX, NXDOMAIN, loop, DNS down) is every recipient's answer;
2. an idle session to it from the pool (checked by an RSET ahead of MAIL), else the candidates in
   order: a connection failure, a 4xx (or 5xx) greeting, EHLO or TLS failure moves on
   to the next one (RFC 5321 §5.1: "try the next"), at most ``max_mx_sessions``
   sessions that got a greeting (Postfix smtp_mx_session_limit) and the candidates
   ``mx`` allowed; a failed handshake under opportunistic TLS first gets one
   plaintext connection to the same host (RFC 7435); a host no TLS policy lets us
   use (DANE: its TLSA lookup failed after an authenticated MX answer, RFC 7672
   §2.2) is skipped without a connection, and makes the outcome temporary;
3. one transaction: its per-recipient replies are the answer (a 5xx at MAIL, RCPT or
   after DATA is final; a 4xx or a connection lost after the data is a temporary
   failure, retried by the queue).  No next host after a transaction began: the
   message may already be there (RFC 5321 §6.1 wants no duplicate).

A destination that finishes while another is still in its transaction is reported
to the runner's ``progress`` at once (``gather_parts``): its 250s are recorded before
the slow destination's answer comes, so a crash meanwhile delivers them only once.
With one destination nothing is reported early: the return is just as soon.

Each result names the host that answered, Postfix style (``remote_host``:
"mx.example.com[192.0.2.1]:25"), and its ``reason`` says which TLS policy applied
and why, for the mail log and the attempt history.  Concurrency is bounded globally
(``max_connections``) and per destination (``max_connections_per_destination``).

Who made a result's reply (``source``): the host, for its own replies only; a refusal
before sending (SMTPUTF8, SIZE, 8-bit), a routing, TLS policy or connection failure
and a timeout are ours even when a host was involved, so a DSN does not put them in
the host's mouth (RFC 3464 §2.3.6).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from mailwright.config import (
    DEFAULT_CONNECTION_REUSE_TIME,
    DEFAULT_DESTINATION_CONNECTIONS,
    DEFAULT_OUTBOUND_CONNECTIONS,
)
from mailwright.delivery.base import DeliveryResult, Progress, gather_parts
from mailwright.delivery.relay.history import failed_session, transaction_session
from mailwright.delivery.relay.mx import (
    Candidate,
    MxHostFilter,
    MxSettings,
    RouteError,
    host_candidates,
    mx_candidates,
)
from mailwright.delivery.relay.pool import Pooled, SessionPool
from mailwright.delivery.relay.routes import LMTP_PORT, Destination, RouteTable, recipient_domain
from mailwright.delivery.relay.tls import configured_policy
from mailwright.delivery.tlspolicy.decide import DomainPlan, MxHostUnusable, TlsPolicyDecider
from mailwright.dns.types import Resolver
from mailwright.net.outbound.model import (
    ClientSettings,
    Credentials,
    OutgoingMessage,
    OutgoingRecipient,
    Peer,
    SessionError,
    Stage,
    TransactionResult,
)
from mailwright.net.outbound.session import OutboundSession
from mailwright.net.outbound.tlspolicy import TlsMode, TlsPolicy
from mailwright.queue.agent import ReplySource
from mailwright.smtp import Reply, codes
from mailwright.spool.model import Recipient, SpooledMessage

log = logging.getLogger(__name__)

MxFilterResult = tuple[list[str], dict[str, str]]


@dataclass(frozen=True, slots=True)
class RelaySettings:
    helo_name: str
    port: int  # where MX hosts are contacted
    max_mx_addresses: int
    max_mx_sessions: int
    allow_private_addresses: bool = False
    own_endpoints: frozenset[tuple[str, int]] = frozenset()
    own_addresses: frozenset[str] = frozenset()  # this host's interfaces (``interfaces``)
    max_connections: int = DEFAULT_OUTBOUND_CONNECTIONS
    max_connections_per_destination: int = DEFAULT_DESTINATION_CONNECTIONS
    connection_reuse_time: float = DEFAULT_CONNECTION_REUSE_TIME
    ca_file: Path | None = None  # extra trust anchors for VERIFY


def soften(reply: Reply) -> Reply:
    """A permanent reply as a temporary one (Postfix soft_bounce): 535 5.7.8 -> 435
    4.7.8, the peer's words kept."""
    enhanced = "4" + reply.enhanced[1:] if reply.enhanced else "4.0.0"
    return Reply(reply.code - 100, enhanced, reply.lines)


def with_enhanced(reply: Reply) -> Reply:
    """A peer's reply with an enhanced status code: RFC 3463 §3.1's X.0.0 when the
    peer sent none, so a DSN's Status field always has one."""
    if reply.enhanced:
        return reply
    return Reply(reply.code, f"{reply.code // 100}.0.0", reply.lines)


class RelayAgent:
    """``DeliveryAgent`` for every recipient whose route is SMTP or LMTP."""

    def __init__(
        self,
        settings: RelaySettings,
        routes: RouteTable,
        resolver: Resolver,
        *,
        credentials: dict[str, Credentials] | None = None,
        decider: TlsPolicyDecider | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.resolver = resolver
        self.credentials = credentials or {}  # by str(destination)
        self.decider = decider
        self.rng = rng or random.Random()
        self.pool: SessionPool[OutboundSession] = SessionPool(settings.connection_reuse_time)
        self._global = asyncio.Semaphore(settings.max_connections)
        # Per destination: its semaphore and how many deliveries use it now; dropped
        # when none do, so a long-running server keeps one per busy destination only.
        self._per_destination: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self.mx = MxSettings(
            port=settings.port,
            max_addresses=settings.max_mx_addresses,
            allow_private=settings.allow_private_addresses,
            own_endpoints=settings.own_endpoints,
            own_addresses=settings.own_addresses,
        )

    # -- the DeliveryAgent seam ------------------------------------------------------

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        groups: dict[Destination, list[Recipient]] = {}
        for rcpt in recipients:
            domain = recipient_domain(rcpt.address) or ""
            groups.setdefault(self.routes.destination(domain), []).append(rcpt)
        return await gather_parts(
            [self._deliver_to(dest, message, body, rcpts) for dest, rcpts in groups.items()],
            progress,
        )

    async def close(self) -> None:
        await self.pool.close()

    # -- one destination -----------------------------------------------------------------

    def client_settings(self, destination: Destination) -> ClientSettings:
        return ClientSettings(
            helo_name=self.settings.helo_name,
            lmtp=destination.lmtp,
            auth=self.credentials.get(str(destination)),
            ca_file=self.settings.ca_file,
        )

    async def candidates(
        self, destination: Destination, plan: DomainPlan | None
    ) -> list[Candidate]:
        hop = destination.nexthop
        if hop.unix_path:
            return [Candidate("localhost", hop.unix_path, 0)]
        default_port = LMTP_PORT if destination.lmtp else self.settings.port
        port = hop.port if hop.port is not None else default_port
        if not hop.mx_lookup:
            return await host_candidates(self.resolver, hop.host, self.mx, port)
        mx_filter: MxHostFilter | None = None
        if plan is not None:

            async def mx_filter(hosts: list[str], authentic: bool) -> MxFilterResult:
                found = await plan.filter_mx(hosts, mx_authentic=authentic, port=port)
                return found.usable, found.refused

        return await mx_candidates(
            self.resolver,
            hop.host,
            self.mx,
            rng=self.rng,
            port=port,
            check_private=destination.by_mx_of_recipient_domain,
            mx_filter=mx_filter,
        )

    async def plan(self, destination: Destination, domain: str) -> DomainPlan | None:
        """DANE and MTA-STS apply to mail routed by the recipient domain's MX only
        (RFC 8461 §4, RFC 7672 §2.2); a configured next hop has its own ``tls``."""
        if self.decider is None or not destination.by_mx_of_recipient_domain:
            return None
        return await self.decider.plan(domain)

    async def policy(
        self, destination: Destination, plan: DomainPlan | None, cand: Candidate
    ) -> TlsPolicy:
        if plan is not None:
            return await plan.policy_for(cand.host, mx_authentic=cand.mx_authentic, port=cand.port)
        return configured_policy(destination, cand.host)

    async def _deliver_to(
        self,
        destination: Destination,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
    ) -> dict[str, DeliveryResult]:
        domain = recipient_domain(recipients[0].address) or ""
        key = str(destination)
        semaphore, users = self._per_destination.get(key) or (
            asyncio.Semaphore(self.settings.max_connections_per_destination),
            0,
        )
        self._per_destination[key] = (semaphore, users + 1)
        outgoing = outgoing_message(message, body, recipients)
        try:
            # The destination's slot first, then a global one: a delivery waiting
            # for a busy destination holds no global slot meanwhile.
            async with semaphore, self._global:
                return await self._transaction(destination, domain, key, outgoing, recipients)
        finally:
            semaphore, users = self._per_destination[key]
            if users == 1:
                del self._per_destination[key]
            else:
                self._per_destination[key] = (semaphore, users - 1)

    async def _transaction(
        self,
        destination: Destination,
        domain: str,
        key: str,
        outgoing: OutgoingMessage,
        recipients: list[Recipient],
    ) -> dict[str, DeliveryResult]:
        pooled = self.pool.take(key)
        if pooled is not None:
            # A cached session the peer may have closed meanwhile (its idle timer):
            # an RSET ahead of MAIL proves it alive, as Postfix's connection cache does.
            result = await pooled.session.send(outgoing, reset_first=True)
            if not result.stale:
                return self._finish(key, destination, pooled, result, recipients)
            log.info("%s: cached session to %s is gone", destination, pooled.label)
            self.pool.discard(pooled)
        try:
            pooled = await self._connect(destination, domain)
        except RouteError as exc:
            log.info("%s: %s", destination, exc.reason)
            return {
                r.address: DeliveryResult(
                    exc.reply, exc.reason, exc.remote_host, session=exc.session, source=exc.source
                )
                for r in recipients
            }
        result = await pooled.session.send(outgoing)
        return self._finish(key, destination, pooled, result, recipients)

    async def _connect(self, destination: Destination, domain: str) -> Pooled[OutboundSession]:
        """A new session to the first candidate that takes one; ``RouteError`` when
        none does (the last failure's reply, temporary if any failure was)."""
        plan = await self.plan(destination, domain)
        candidates = await self.candidates(destination, plan)
        settings = self.client_settings(destination)
        failures: list[str] = []
        last: SessionError | None = None
        last_policy: TlsPolicy | None = None
        any_temporary = False
        sessions = 0
        for cand in candidates:
            try:
                policy = await self.policy(destination, plan, cand)
            except MxHostUnusable as exc:
                log.info("%s: %s skipped: %s", destination, cand, exc.reason)
                failures.append(f"{cand}: skipped: {exc.reason}")
                any_temporary = True  # RFC 7672 §2.2: defer, never bounce for it
                continue
            peer = Peer(cand.host, cand.address, cand.port)
            try:
                session, policy = await self._open(peer, settings, policy)
            except SessionError as exc:
                failures.append(f"{cand}: {describe(policy)}: {exc.stage.value}: {exc.reason}")
                last, last_policy = exc, policy
                # Postfix smtp_sasl_auth_soft_bounce (yes): a refused login is a
                # configuration problem to fix, not a reason to bounce the mail.
                any_temporary = any_temporary or exc.temporary or exc.stage is Stage.AUTH
                if exc.stage is not Stage.CONNECT:
                    sessions += 1  # a greeting came: it counts (smtp_mx_session_limit)
                    if sessions >= self.settings.max_mx_sessions:
                        break
                continue
            log.info("%s: connected to %s, %s", destination, cand, describe(policy))
            return Pooled(session, str(cand), self.pool.clock(), policy)
        if last is None or last_policy is None:
            # Every candidate was unusable: nothing was attempted, nobody answered.
            raise RouteError(codes.R451_DANE_TLSA_LOOKUP, "; ".join(failures))
        answered = last.reply is not None and last.reply.code >= 400
        reply = with_enhanced(
            last.reply if last.reply is not None and answered else last.result_reply
        )
        # The host's own refusal (softened or not: its words stay) is what it said;
        # a TLS, policy or connection failure is our reason, though a host answered.
        source = ReplySource.REMOTE if answered else ReplySource.LOCAL
        if last.stage is Stage.AUTH and reply.is_permanent:
            reply = soften(reply)
        elif any_temporary and not reply.is_transient:
            reply = last.result_reply if last.result_reply.is_transient else codes.R451_NO_ANSWER
            source = ReplySource.LOCAL
        host = f"{last.peer.host}[{last.peer.address}]:{last.peer.port}"
        if last.stage is Stage.CONNECT:  # nobody answered: no remote host, no session
            raise RouteError(reply, "; ".join(failures))
        history = failed_session(last, last_policy)
        raise RouteError(reply, "; ".join(failures), host, history, source)

    async def _open(
        self, peer: Peer, settings: ClientSettings, policy: TlsPolicy
    ) -> tuple[OutboundSession, TlsPolicy]:
        """A session to ``peer`` under ``policy``; with opportunistic TLS, a failed
        handshake is followed by one plaintext connection (RFC 7435 §3: encryption
        when possible, never a reason not to deliver; Postfix's "may" does the same).
        Any required mode never falls back."""
        try:
            return await OutboundSession.open(peer, settings, policy), policy
        except SessionError as exc:
            if exc.stage is not Stage.TLS or policy.mode is not TlsMode.OPPORTUNISTIC:
                raise
            why = f"{policy.reason}; TLS handshake failed ({exc.reason}), plaintext"
            plain = TlsPolicy(TlsMode.NONE, policy.source, why)
            log.info("%s[%s]: %s", peer.host, peer.address, why)
            return await OutboundSession.open(peer, settings, plain), plain

    def _finish(
        self,
        key: str,
        destination: Destination,
        pooled: Pooled[OutboundSession],
        result: TransactionResult,
        recipients: list[Recipient],
    ) -> dict[str, DeliveryResult]:
        """Keep the session for the next message (or close it); the per-recipient
        results with the host that answered and the TLS policy that applied."""
        # The session's opening and this transaction, read before the pool may hand
        # the session to the next message.
        transcript = pooled.session.transcript
        if result.usable:
            self.pool.put(key, pooled)
        else:
            self.pool.discard(pooled)
        policy = pooled.extra
        assert isinstance(policy, TlsPolicy)
        info = result.info
        tls = f"{info.tls_version} {info.tls_cipher}" if info.tls_version else "no TLS"
        reason = f"via {destination} ({destination.source}); {describe(policy)}; {tls}"
        if result.reason:
            reason += f"; {result.reason}"
        by_address = {r.recipient.address: (i, r) for i, r in enumerate(result.recipients)}
        out: dict[str, DeliveryResult] = {}
        for rcpt in recipients:
            index, found = by_address.get(rcpt.address, (-1, None))
            reply = with_enhanced(found.reply) if found else codes.R451_NO_RESULT
            # NOTIFY/ORCPT went on (the next hop offered DSN): success is its to report.
            passed = found is not None and found.dsn_passed
            session = transaction_session(info, policy, transcript, index, lmtp=destination.lmtp)
            # The peer's reply, or one we made (SMTPUTF8/SIZE/8-bit refusal, a timeout).
            said = found is not None and found.from_peer
            out[rcpt.address] = DeliveryResult(
                reply,
                reason,
                pooled.label,
                next_hop_dsn=passed,
                session=session,
                source=ReplySource.REMOTE if said else ReplySource.LOCAL,
            )
        return out


def describe(policy: TlsPolicy) -> str:
    """The policy for a log line: mode, the rule that chose it, and why."""
    why = f": {policy.reason}" if policy.reason else ""
    return f"tls={policy.mode.value} ({policy.source}{why})"


def outgoing_message(
    message: SpooledMessage, body: bytes, recipients: list[Recipient]
) -> OutgoingMessage:
    envelope = message.envelope
    return OutgoingMessage(
        mail_from=envelope.mail_from,
        recipients=tuple(
            OutgoingRecipient(r.address, notify=r.notify, orcpt=r.orcpt) for r in recipients
        ),
        body=body,
        body_type=envelope.body_type,
        smtputf8=envelope.smtputf8,
        ret=envelope.ret,
        envid=envelope.envid,
    )
