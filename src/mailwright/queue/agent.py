"""The delivery seam as the queue runner sees it:
``deliver(message, body, recipients) -> {address: DeliveryResult}``.

Defined here, not in ``delivery``, so that imports go one way (``delivery`` -> ``queue``
-> ``spool``): the runner needs the shape of an agent, the agents implement it.
Every agent reports per recipient, and every result says whether a failure is
permanent.  An agent that raises is treated by the runner as a temporary failure for
all the recipients it was given (unknown errors count as temporary, DESIGN principle 4).

**Early results.**  One call may take long: the relay runs one transaction per
destination, concurrently, and the router one call per route, so a fast MX's 250 can
be minutes older than the slow one's timeout.  The runner therefore passes a
``progress`` callback: an agent awaits ``progress(results)`` as soon as a part of its
recipients has its answer (a destination's transaction, a route's call), and the
runner records the 2xx among them in the store before the callback returns — a crash
afterwards does not deliver them again (Postfix's smtp(8) likewise crosses each
recipient off in the queue file as soon as the remote's 250 comes: ``smtp_rcpt_done``
-> ``deliver_completed``).  ``results`` has
the same shape as the return value; an address may be reported twice (the runner
keeps the first final answer).  The return value must still hold every result: an
agent that never calls ``progress`` stays correct, it only keeps the older window.
Reporting the part that finishes *last* gains nothing (the return follows at once),
so ``gather_parts`` skips it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from mailwright.smtp import Reply
from mailwright.spool.model import Recipient, RemoteSession, SpooledMessage


class ReplySource(StrEnum):
    """Who made a result's reply.  RFC 3464 §2.3.5/§2.3.6: a DSN's Remote-MTA is the
    MTA that reported the status and diagnostic type ``smtp`` is for a reply a remote
    SMTP server sent; a reason of our own is not "the remote said" (Postfix marks its
    own ``X-Postfix``)."""

    REMOTE = "remote"  # the remote SMTP/LMTP server sent ``reply``
    # We made it: our own mailbox delivery, a refusal before anything was sent
    # (SMTPUTF8, SIZE, 8-bit), routing (NXDOMAIN, null MX, a loop), TLS policy, a
    # connection that failed or timed out, the queue's own verdicts.
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    reply: Reply  # what we report (in the mail log, in a DSN)
    reason: str = ""  # private detail for the log only
    # The host we talked to (a relay's MX, Postfix style "mx.example[192.0.2.1]:25");
    # None: no remote host was involved (local delivery, or nobody answered).
    remote_host: str | None = None
    # The next hop advertised DSN and took our NOTIFY/ORCPT (RFC 3461 §4.2, §5.2): it
    # reports success itself, so no "relayed" DSN is due.  The relay agent sets it.
    next_hop_dsn: bool = False
    # The session that gave ``reply`` (host name and address, TLS, the policy and the
    # replies that concern this recipient): kept in the attempt history.
    session: RemoteSession | None = None
    # Whether ``remote_host`` sent ``reply`` or we made it (see ``ReplySource``).  The
    # default is the safe side: a reply is never put in a remote host's mouth unless
    # the agent saw that host send it.
    source: ReplySource = ReplySource.LOCAL

    @property
    def remote_mta(self) -> str | None:
        """The name of the host that answered (a DSN's Remote-MTA, RFC 3464 §2.3.5):
        None when the reply is our own, even if a host was involved."""
        if self.remote_host is None or self.source is not ReplySource.REMOTE:
            return None
        if self.session is not None:
            return self.session.host
        return self.remote_host.split("[", 1)[0] or None  # Postfix style "host[addr]:port"

    @property
    def ok(self) -> bool:
        return self.reply.code < 400

    @property
    def permanent(self) -> bool:
        return self.reply.code >= 500


# ``progress(results)``: some recipients' answers, before the call returns (see above).
Progress = Callable[[dict[str, DeliveryResult]], Awaitable[None]]


class DeliveryAgent(Protocol):
    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]: ...


async def gather_parts(
    parts: Sequence[Awaitable[dict[str, DeliveryResult]]], progress: Progress | None
) -> dict[str, DeliveryResult]:
    """Run ``parts`` (a call's independent pieces: destinations, routes) concurrently
    and merge their results; each part that finishes while others still run is
    reported through ``progress`` first.  The last one is not: its results are
    returned at once, and the runner records them with the rest."""
    if len(parts) == 1:
        # The common case (one destination, one route): the only part is the last, so
        # nothing to report early, and no task of its own to schedule.
        return dict(await parts[0])
    remaining = len(parts)

    async def run(part: Awaitable[dict[str, DeliveryResult]]) -> dict[str, DeliveryResult]:
        nonlocal remaining
        results = await part
        remaining -= 1
        if progress is not None and remaining > 0:
            await progress(results)
        return results

    merged: dict[str, DeliveryResult] = {}
    for results in await asyncio.gather(*(run(part) for part in parts)):
        merged.update(results)
    return merged


@runtime_checkable
class ClosableAgent(Protocol):
    """An agent that holds something between attempts (the relay's idle sessions, kept
    for the next message): ``QueueRunner.stop`` closes it once no attempt is left."""

    async def close(self) -> None: ...
