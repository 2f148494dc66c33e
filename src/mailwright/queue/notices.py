"""Which delivery status notifications an attempt calls for, and queueing them.

After each attempt the runner hands the outcome to ``Notices.after_attempt``, which
queues (``bounces.queue_report``) up to three reports about the message, each sent
``MAIL FROM:<>`` (RFC 5321 §4.5.5):

* **failure** (RFC 3461 §4.1): the recipients that failed now and asked for it
  (``NOTIFY=FAILURE``, or no NOTIFY at all), to the sender.  If it cannot be stored the
  failed recipients go back to PENDING with their 5xx reply: the next attempt reports
  them without trying them again (``outcome.refused_before``), rather than the report
  being lost.
* **success**: the recipients delivered now that said ``NOTIFY=SUCCESS`` —
  ``Action: delivered`` when we put the message in the mailbox, ``relayed`` when a next
  hop took it without taking the DSN request (RFC 3461 §4.2; RFC 3464 §2.3.3), none
  when the next hop took the request (``DeliveryResult.next_hop_dsn``): it reports
  itself.  If this report cannot be stored it is logged and dropped: the recipient has
  its mail, and re-delivering it to get a second chance at the report would deliver
  it twice.
* **delay**: once ``delivery.delay_warning_time`` has passed since arrival, the
  recipients still pending that asked for it and were not warned before
  (``RecipientState.delay_warned``, stored with the attempt, so a restart does not warn
  again).  ``NOTIFY=DELAY`` asks for it; RFC 3461 §4.1 leaves a missing NOTIFY to the
  MTA ("FAILURE" or "FAILURE,DELAY"): we warn, as sendmail (Timeout.queuewarn) does —
  a sender whose mail is hours late wants to know before the final bounce days
  later, and ``delay_warning_time = 0`` turns warnings off for everyone.  The warning
  goes out with the first attempt after that time (as Postfix's queue manager sends
  it when it next handles the message), so it is late by at most one retry interval.
  If it cannot be stored, the recipients are not marked: the next attempt tries again.

**Never a bounce for a bounce** (RFC 3461 §4.1, RFC 5321 §4.5.5): nothing goes to a null
sender.  A null-sender message that fails — one of our reports, or someone else's —
gets one report to the postmaster instead (a *double bounce*, Postfix's
``2bounce_notice_recipient``), and that report cannot bounce again, by two independent
guards: its recipient carries ``NOTIFY=NEVER`` (stored with it, so the mark survives
restarts and travels to a next hop), and a failed recipient that *is* the postmaster
is never reported to the postmaster.  A failed double bounce is only logged.

Reports are stored before the original's new state is recorded; a crash in between
sends a report twice (at-least-once, as the delivery itself), never loses one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryResult, ReplySource
from mailwright.queue.bounces import BounceNotStored, Queued, queue_report
from mailwright.queue.dsn import Action, Reported, ReportKind
from mailwright.queue.outcome import Tried
from mailwright.spool.model import Recipient, RecipientState, RecipientStatus, SpooledMessage
from mailwright.spool.store import SpoolStore

log = logging.getLogger("mailwright.queue.runner")

POSTMASTER = "postmaster"  # RFC 5321 §4.5.1
# RFC 3461 §4.1: a recipient with NOTIFY=NEVER gets no DSN, whatever happens.
NEVER = ("NEVER",)


def postmaster_address(hostname: str, local_domains: Sequence[str]) -> str:
    """Who receives double bounces: ``postmaster@<hostname>`` when the host name is a
    local domain — Postfix's ``2bounce_notice_recipient`` is "postmaster" qualified
    with ``$myorigin`` (= ``$myhostname``), delivered locally — else the postmaster of
    the first (primary) local domain, so the notice stays on this host; with no local
    domain at all, ``postmaster@<hostname>`` (routed like any mail)."""
    host = hostname.lower().rstrip(".")
    domains = [d.lower().rstrip(".") for d in local_domains]
    if host in domains or not domains:
        return f"{POSTMASTER}@{host}"
    return f"{POSTMASTER}@{domains[0]}"


def wants_failure_notice(recipient: Recipient) -> bool:
    """RFC 3461 §4.1: does this recipient want a DSN when delivery fails?"""
    notify = {n.upper() for n in recipient.notify}
    if not notify:
        return True  # default behaviour: report failures
    return "FAILURE" in notify and "NEVER" not in notify


def wants_delay_notice(recipient: Recipient) -> bool:
    """RFC 3461 §4.1: NOTIFY=DELAY, or no NOTIFY at all (our choice: see above)."""
    notify = {n.upper() for n in recipient.notify}
    if not notify:
        return True
    return "DELAY" in notify and "NEVER" not in notify


def wants_success_notice(recipient: Recipient) -> bool:
    """RFC 3461 §4.1: only an explicit NOTIFY=SUCCESS."""
    notify = {n.upper() for n in recipient.notify}
    return "SUCCESS" in notify and "NEVER" not in notify


def success_action(result: DeliveryResult) -> Action | None:
    """``delivered`` (local), ``relayed`` (a next hop without DSN) or None (it has DSN)."""
    if result.remote_host is None:
        return Action.DELIVERED
    return None if result.next_hop_dsn else Action.RELAYED


def reported(state: RecipientState, action: Action, result: DeliveryResult | None) -> Reported:
    """A recipient in a report, with who answered for it (None: us, or not this time)."""
    if result is None:
        return Reported(state, action)
    # The remote host's reply only if it is still the one reported: a lifetime that ran
    # out replaces it with our own verdict (4.4.7, ``expired_reply``), which no host said.
    last = state.last_reply
    said = result.source is ReplySource.REMOTE and (
        last is not None
        and (last.code, last.enhanced, last.text)
        == (result.reply.code, result.reply.enhanced, result.reply.text)
    )
    source = ReplySource.REMOTE if said else ReplySource.LOCAL
    return Reported(state, action, result.remote_host, result.remote_mta, source)


class Notices:
    """Queues the reports an attempt calls for (see the module docstring)."""

    def __init__(
        self, store: SpoolStore, config: DeliveryConfig, reporting_mta: str, postmaster: str
    ) -> None:
        self._store = store
        self._config = config
        self._reporting_mta = reporting_mta
        self._postmaster = postmaster

    async def after_attempt(
        self,
        message: SpooledMessage,
        tried: list[Tried],
        body: bytes | None,
        now: float,
        refused_before: Sequence[RecipientState] = (),
    ) -> list[tuple[ReportKind, Queued]]:
        """Queue the reports due after an attempt; mutates ``message`` (failed
        recipients back to PENDING if their report was not stored, delay marks).

        ``refused_before``: FAILED recipients not tried now, whose failure (an earlier
        attempt's) is still to be reported (``outcome.refused_before``)."""
        queued: list[tuple[ReportKind, Queued]] = []
        failed: list[tuple[RecipientState, DeliveryResult | None]] = [
            (s, r) for s, r in tried if s.status is RecipientStatus.FAILED
        ]
        failed += [(s, None) for s in refused_before]
        if failed:
            try:
                report = await self._failure(message, failed, body, now)
            except BounceNotStored:
                for state, _ in failed:  # reported later rather than the report lost
                    state.status = RecipientStatus.PENDING
            else:
                queued += report
        if message.envelope.mail_from:  # never a report to the null sender
            queued += await self._success(message, tried, body, now)
            queued += await self._delay(message, tried, body, now)
        return queued

    async def _failure(
        self,
        message: SpooledMessage,
        failed: list[tuple[RecipientState, DeliveryResult | None]],
        body: bytes | None,
        now: float,
    ) -> list[tuple[ReportKind, Queued]]:
        sender = message.envelope.mail_from
        wanted = [(s, r) for s, r in failed if wants_failure_notice(s.recipient)]
        if sender:
            entries = [reported(s, Action.FAILED, r) for s, r in wanted]
            return await self._queue(message, ReportKind.FAILURE, entries, body, now, sender)
        # A null sender: a double bounce to the postmaster, unless the postmaster is
        # who failed (the second loop guard; NOTIFY=NEVER on our notice is the first).
        postmaster = self._postmaster.lower()
        entries = [
            reported(s, Action.FAILED, r)
            for s, r in wanted
            if s.recipient.address.lower() not in (postmaster, POSTMASTER)
        ]
        dropped = [s.recipient.address for s, _ in failed if not any(e.state is s for e in entries)]
        if dropped:
            log.warning(
                "%s: undeliverable mail from <> dropped, no further notice: %s",
                message.queue_id,
                ", ".join(dropped),
            )
        to = Recipient(self._postmaster, NEVER)
        return await self._queue(message, ReportKind.POSTMASTER, entries, body, now, to)

    async def _success(
        self, message: SpooledMessage, tried: list[Tried], body: bytes | None, now: float
    ) -> list[tuple[ReportKind, Queued]]:
        entries = [
            reported(s, action, r)
            for s, r in tried
            if s.status is RecipientStatus.DELIVERED
            and wants_success_notice(s.recipient)
            and (action := success_action(r)) is not None
        ]
        sender = message.envelope.mail_from
        try:
            return await self._queue(message, ReportKind.SUCCESS, entries, body, now, sender)
        except BounceNotStored:
            addresses = ", ".join(e.state.recipient.address for e in entries)
            log.error(
                "%s: success notice lost (delivered, not sent twice): %s",
                message.queue_id,
                addresses,
            )
            return []

    async def _delay(
        self, message: SpooledMessage, tried: list[Tried], body: bytes | None, now: float
    ) -> list[tuple[ReportKind, Queued]]:
        warn_after = self._config.delay_warning_time
        if warn_after <= 0 or now < message.received_at + warn_after:
            return []
        results = {id(s): r for s, r in tried}
        due = [s for s in message.pending if not s.delay_warned and wants_delay_notice(s.recipient)]
        entries = [reported(s, Action.DELAYED, results.get(id(s))) for s in due]
        sender = message.envelope.mail_from
        try:
            queued = await self._queue(message, ReportKind.DELAY, entries, body, now, sender)
        except BounceNotStored:
            return []  # not marked: the next attempt warns
        for state in due:
            state.delay_warned = True
        return queued

    async def _queue(
        self,
        message: SpooledMessage,
        kind: ReportKind,
        entries: list[Reported],
        body: bytes | None,
        now: float,
        to: str | Recipient,
    ) -> list[tuple[ReportKind, Queued]]:
        if not entries:
            return []
        recipient = to if isinstance(to, Recipient) else Recipient(to)
        report = await queue_report(
            self._store,
            message,
            kind,
            entries,
            body,
            self._reporting_mta,
            now,
            to=recipient,
            lifetime=self._config.max_queue_lifetime,
        )
        return [(kind, report)]
