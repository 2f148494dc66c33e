"""The operator's view of the queue: per-recipient states, filters, the JSON record.

``mailwright queue`` (and later the HTTP API) show what ``SpoolStore.scan`` returns
through this module, so both name a recipient's state the same way:

========== ===========================================================================
queued     pending, never tried
deferred   pending, tried at least once; ``last_reply`` says why it is not delivered
delivered  delivered (its message stays queued while other recipients are pending)
bounced    failed permanently; a DSN went to the sender
expired    failed because ``delivery.max_queue_lifetime`` ran out (RFC 3463 X.4.7,
           ``queue.retry.expired_reply``)
held       pending in a message the operator held (``queue hold``)
========== ===========================================================================

A message whose recipients are all done is removed from the queue at once, so
delivered, bounced and expired recipients are only seen beside pending ones.

The JSON record is ``postqueue -j``'s (one object per message and line): ``queue_name``
(``hold``; ``active`` while a runner holds its lease; ``deferred`` once tried;
otherwise ``incoming``), ``queue_id``, ``arrival_time`` and ``message_size``, ``sender``
and ``recipients`` with ``address`` and, for a deferred recipient, ``delay_reason``
(its last reply).  Our additions: ``next_attempt``, ``attempts``, ``held_since`` and,
per recipient, ``state``, ``attempts`` and the structured ``reply`` (code, enhanced
status, text).  Times are Unix seconds, as postqueue's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mailwright.queue.retry import EXPIRED_STATUS
from mailwright.spool.model import Attempt, QueueEntry, RecipientState, RecipientStatus


class State(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    HELD = "held"


def recipient_state(state: RecipientState, held: bool) -> State:
    if state.status is RecipientStatus.DELIVERED:
        return State.DELIVERED
    if state.status is RecipientStatus.FAILED:
        reply = state.last_reply
        expired = reply is not None and reply.enhanced == EXPIRED_STATUS
        return State.EXPIRED if expired else State.BOUNCED
    if held:
        return State.HELD
    return State.DEFERRED if state.attempts else State.QUEUED


def attempt_state(attempt: Attempt) -> State:
    """What one attempt left its recipient as (a history row of ``queue show``)."""
    if attempt.status is RecipientStatus.DELIVERED:
        return State.DELIVERED
    if attempt.status is RecipientStatus.FAILED:
        return State.EXPIRED if attempt.reply.enhanced == EXPIRED_STATUS else State.BOUNCED
    return State.DEFERRED


def states(entry: QueueEntry) -> list[State]:
    """Each recipient's state, in envelope order."""
    held = entry.held_since is not None
    return [recipient_state(s, held) for s in entry.message.recipients]


def queue_name(entry: QueueEntry, now: float) -> str:
    """The Postfix queue a message would be in (``postqueue -j``'s ``queue_name``)."""
    if entry.held_since is not None:
        return "hold"
    if entry.leased(now):
        return "active"
    if any(s.attempts for s in entry.message.recipients):
        return "deferred"
    return "incoming"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which messages ``queue list`` shows; every given criterion must match.

    Addresses and domains compare case-insensitively (a domain is case-insensitive,
    RFC 5321 §2.4; a local part almost always is in practice).  ``sender`` ``<>`` or
    "" given as "<>" matches the null sender (bounces).  ``domain`` matches a message
    with a recipient in that domain; ``state`` one with a recipient in that state.
    """

    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None
    state: State | None = None

    def matches(self, entry: QueueEntry) -> bool:
        message = entry.message
        if self.sender is not None:
            wanted = "" if self.sender == "<>" else self.sender.lower()
            if message.envelope.mail_from.lower() != wanted:
                return False
        addresses = [s.recipient.address.lower() for s in message.recipients]
        if self.recipient is not None and self.recipient.lower() not in addresses:
            return False
        if self.domain is not None:
            domain = self.domain.lower().rstrip(".")
            if domain not in {_domain(a) for a in addresses}:
                return False
        return self.state is None or self.state in states(entry)


def as_json(entry: QueueEntry, now: float) -> dict[str, Any]:
    """The ``postqueue -j`` record of one message, with our additions (module doc)."""
    message = entry.message
    recipients: list[dict[str, Any]] = []
    for state, name in zip(message.recipients, states(entry), strict=True):
        record: dict[str, Any] = {"address": state.recipient.address}
        reply = state.last_reply
        if reply is not None and name in (State.DEFERRED, State.HELD):
            record["delay_reason"] = str(reply)
        record["state"] = str(name)
        record["attempts"] = state.attempts
        record["reply"] = (
            None
            if reply is None
            else {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text}
        )
        recipients.append(record)
    return {
        "queue_name": queue_name(entry, now),
        "queue_id": message.queue_id,
        "arrival_time": int(message.received_at),
        "message_size": message.size,
        "sender": message.envelope.mail_from,
        "recipients": recipients,
        "next_attempt": int(message.next_attempt),
        "attempts": message.attempts,
        "held_since": None if entry.held_since is None else int(entry.held_since),
    }
