"""Routing: which delivery agent handles which recipient.

The ``Router`` is itself a ``DeliveryAgent``: the queue runner hands it a message and its
pending recipients; it splits them by route, calls each route's agent once with its
share (concurrently), and merges the per-recipient results.  Adding the SMTP relay
(MX lookup or smarthost) later means passing it as ``remote``; nothing else changes.

Routes: a ``[[transport]]`` entry decides first (``local``, ``lmtp:...`` or
``smtp:...``; Postfix's transport_maps also override local domains: that is how a
local domain's mail goes to Dovecot over LMTP); otherwise a local domain is LOCAL
and every other domain REMOTE (the relay: relayhost or MX).  LMTP recipients go to
the remote agent too (``delivery.relay`` speaks both), in a call of their own.

Without a remote agent, recipients in domains that are not local get
``NoRelayAgent``'s permanent ``550 5.7.1``: that is the real answer of a server with
no route off the host (Postfix answers "Relay access denied" with 5.7.1 likewise),
and the message bounces instead of sitting in the queue until it expires.

An agent that raises, or that forgets a recipient, yields a temporary 451 4.3.0 for
the recipients concerned: unknown errors count as temporary (DESIGN principle 4).

Early results (``queue.agent``): each route's agent gets the runner's ``progress``
(the relay reports each destination as it finishes), and a route that finishes while
another still runs is reported as a whole — a local mailbox's 250 is recorded while
the relay still waits for a slow MX.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from mailwright.accounts.directory import LocalDirectory
from mailwright.config import NextHopKind
from mailwright.delivery.base import (
    ClosableAgent,
    DeliveryAgent,
    DeliveryResult,
    Progress,
    gather_parts,
)
from mailwright.delivery.relay.routes import RouteTable
from mailwright.smtp import Reply, codes
from mailwright.spool.model import Recipient, SpooledMessage

log = logging.getLogger(__name__)


class Route(StrEnum):
    LOCAL = "local"  # Maildir delivery on this host
    REMOTE = "remote"  # everything else: the relay, once configured
    LMTP = "lmtp"  # a transport entry sends the domain to an LMTP store (the relay agent)


_BY_KIND = {
    NextHopKind.LOCAL: Route.LOCAL,
    NextHopKind.LMTP: Route.LMTP,
    NextHopKind.SMTP: Route.REMOTE,
}


def recipient_domain(address: str) -> str | None:
    """The domain of an address; None for the bare "Postmaster" (RFC 5321 §4.5.1)."""
    _local, at, domain = address.rpartition("@")
    return domain if at else None


class NoRelayAgent:
    """The remote route of a server with no relay: every recipient fails permanently.

    RFC 3463 X.7.1 ("delivery not authorized"): this host is not allowed, by its
    configuration, to send mail off the host.
    """

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        results: dict[str, DeliveryResult] = {}
        for rcpt in recipients:
            domain = recipient_domain(rcpt.address) or "?"
            # Reply text is public; keep the domain short enough for a reply line.
            reply = Reply.of(
                550, "5.7.1", f"No route to remote domain {domain[:100]} (relay not configured)"
            )
            results[rcpt.address] = DeliveryResult(reply, "no relay configured")
        return results


class Router:
    """Split recipients by route, call each route's agent, merge the results."""

    def __init__(
        self,
        directory: LocalDirectory,
        local: DeliveryAgent,
        remote: DeliveryAgent | None = None,
        routes: RouteTable | None = None,
    ) -> None:
        self.directory = directory
        self.routes = routes
        remote = remote if remote is not None else NoRelayAgent()
        self.agents: dict[Route, DeliveryAgent] = {
            Route.LOCAL: local,
            Route.REMOTE: remote,
            Route.LMTP: remote,
        }

    async def close(self) -> None:
        """Close every agent that holds something between attempts, once each (the
        relay serves both the remote and the LMTP route)."""
        closable = {id(a): a for a in self.agents.values() if isinstance(a, ClosableAgent)}
        for agent in closable.values():
            await agent.close()

    def route(self, address: str) -> Route:
        domain = recipient_domain(address)
        if domain is None:
            return Route.LOCAL
        kind = self.routes.kind(domain.lower()) if self.routes is not None else None
        if kind is not None:
            return _BY_KIND[kind]
        if self.directory.is_local_domain(domain):
            return Route.LOCAL
        return Route.REMOTE

    def split(self, recipients: list[Recipient]) -> dict[Route, list[Recipient]]:
        """Recipients per route, in their original order; routes with none omitted."""
        groups: dict[Route, list[Recipient]] = {}
        for rcpt in recipients:
            groups.setdefault(self.route(rcpt.address), []).append(rcpt)
        return groups

    async def _call(
        self,
        route: Route,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None,
    ) -> dict[str, DeliveryResult]:
        try:
            results = await self.agents[route].deliver(message, body, recipients, progress)
        except Exception as exc:
            log.exception("%s agent failed for %s", route, message.queue_id)
            results = {}
            reason = f"{route} agent raised {exc!r}"
        else:
            reason = f"{route} agent returned no result"
        merged: dict[str, DeliveryResult] = {}
        for rcpt in recipients:
            merged[rcpt.address] = results.get(rcpt.address) or DeliveryResult(
                codes.R451_AGENT_ERROR, reason
            )
        return merged

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        groups = self.split(recipients)
        if len(groups) == 1:  # one route (the common case): no gather, no extra task
            ((route, rcpts),) = groups.items()
            return await self._call(route, message, body, rcpts, progress)
        return await gather_parts(
            [self._call(route, message, body, rcpts, progress) for route, rcpts in groups.items()],
            progress,
        )
