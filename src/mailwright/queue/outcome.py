"""One attempt's results applied to a queued message (RFC 5321 §4.5.4.1), and the
history rows they leave.

* 2xx -> DELIVERED; 5xx -> FAILED; 4xx -> stays PENDING; a recipient the agent did not
  report gets ``fallback`` (a temporary failure: DESIGN principle 4);
* a temporary failure after ``max_queue_lifetime`` since arrival becomes FAILED with
  status 4.4.7 (``retry.expired_reply``) — the message always gets its attempt first;
* the message's next attempt is the backoff (``retry.retry_delay``) plus up to
  ``JITTER_FRACTION`` of random jitter, computed *before* the events are emitted, so
  a "deferred" event names the attempt the store will record;
* replies are stored structured (``RemoteReply``): a DSN's Status and the history
  read the enhanced code, nothing parses the text back;
* recipients ``settled`` early (``settle_delivered``: a 250 the agent reported through
  ``progress`` and the runner already recorded) are not applied again — no second
  count, event or history row — but are part of the attempt's ``tried``, so the
  reports (a success DSN) see them once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryResult
from mailwright.queue.events import EventCallback, emit
from mailwright.queue.retry import JITTER_FRACTION, expired_reply, retry_delay
from mailwright.smtp import Reply
from mailwright.spool.model import (
    Attempt,
    RecipientState,
    RecipientStatus,
    RemoteReply,
    SpooledMessage,
)

# A recipient tried in this attempt, with the result the agent reported for it
# (``remote_host``: who answered, None: local; the reports read ``next_hop_dsn``).
Tried = tuple[RecipientState, DeliveryResult]


def stored_reply(reply: Reply) -> RemoteReply:
    """The structured form the store keeps (and DSNs and the history read)."""
    return RemoteReply(reply.code, reply.enhanced, reply.text)


def result_for(
    state: RecipientState, results: dict[str, DeliveryResult], lowered: dict[str, DeliveryResult]
) -> DeliveryResult | None:
    """The agent's result for ``state`` (``lowered``: ``results`` by lower-case address)."""
    address = state.recipient.address
    result = results.get(address) or lowered.get(address.lower())
    return result if isinstance(result, DeliveryResult) else None


def settle_delivered(state: RecipientState, result: DeliveryResult) -> None:
    """A 2xx for ``state``: DELIVERED with its reply, one attempt more."""
    state.attempts += 1
    state.last_reply = stored_reply(result.reply)
    state.status = RecipientStatus.DELIVERED


def apply_results(
    message: SpooledMessage,
    pending: list[RecipientState],
    results: dict[str, DeliveryResult],
    fallback: DeliveryResult,
    *,
    now: float,
    config: DeliveryConfig,
    jitter: Callable[[], float],
    on_event: EventCallback | None,
    settled: Mapping[int, DeliveryResult] | None = None,
) -> list[Tried]:
    """Record the outcome in ``message``; return the recipients tried.

    ``settled``: results already applied (and recorded) during the attempt, by
    ``id()`` of the recipient's state (see the module docstring)."""
    expired = now >= message.received_at + config.max_queue_lifetime
    lowered = {address.lower(): r for address, r in results.items()}
    settled = settled or {}
    tried: list[Tried] = []
    if pending:
        message.attempts += 1
    delay = retry_delay(max(message.attempts, 1), config)
    message.next_attempt = now + delay * (1.0 + JITTER_FRACTION * jitter())
    for state in pending:
        address = state.recipient.address
        early = settled.get(id(state))
        if early is not None:
            tried.append((state, early))
            continue
        result = result_for(state, results, lowered) or fallback
        tried.append((state, result))
        if result.ok:
            settle_delivered(state, result)
            emit(on_event, "delivered", message, address, result)
            continue
        state.attempts += 1
        state.last_reply = stored_reply(result.reply)
        if result.permanent:
            state.status = RecipientStatus.FAILED
            emit(on_event, "bounced", message, address, result)
        elif expired:
            reply = expired_reply(result.reply, config.max_queue_lifetime)
            state.status = RecipientStatus.FAILED
            state.last_reply = stored_reply(reply)
            emit(on_event, "expired", message, address, DeliveryResult(reply, result.reason))
        else:
            emit(on_event, "deferred", message, address, result)
    return tried


def refused_before(message: SpooledMessage) -> list[RecipientState]:
    """Pending recipients whose last reply was permanent (5xx) — refused in an earlier
    attempt whose failure report could not be stored, so they were kept PENDING — now
    FAILED with that reply, never tried again (RFC 5321 §4.2.1: a 5yz reply means "do
    not repeat the exact request").  The caller queues their report."""
    refused = [s for s in message.pending if s.last_reply is not None and s.last_reply.code >= 500]
    for state in refused:
        state.status = RecipientStatus.FAILED
    return refused


def history(message: SpooledMessage, tried: list[Tried], now: float) -> list[Attempt]:
    """One history row per recipient tried, in its final state (after the bounce)."""
    position = {id(state): i for i, state in enumerate(message.recipients)}
    return [
        Attempt(
            position[id(state)],
            now,
            state.status,
            state.last_reply,
            result.remote_host,
            result.session,
        )
        for state, result in tried
        if state.last_reply is not None
    ]
