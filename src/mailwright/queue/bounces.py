"""Queueing a bounce: the RFC 3464 report (``dsn``) for recipients that failed in an
attempt, stored in the same queue as a ``MAIL FROM:<>`` message.

Who gets one (RFC 3461 §4.1, RFC 5321 §4.5.5): nobody for a null sender (a bounce
about a bounce would loop; logged only), nor for recipients that said NOTIFY=NEVER or
a NOTIFY list without FAILURE.  The caller stores the bounce *before* it records the
original's new state: if storing fails, the failed recipients go back to PENDING and
are retried, so no non-delivery report is ever silently lost.
"""

from __future__ import annotations

import contextlib
import logging

from mailwright.queue.dsn import bounce_body_type, build_bounce, split_headers
from mailwright.queue.dsn import wants_failure_notice as _wants_failure_notice
from mailwright.spool.model import Envelope, Recipient, RecipientState, SpooledMessage
from mailwright.spool.store import SpoolError, SpoolStore

log = logging.getLogger("mailwright.queue.runner")


class BounceNotStored(Exception):
    """A bounce was due but could not be stored: keep the recipients pending."""


async def queue_bounce(
    store: SpoolStore,
    message: SpooledMessage,
    failed: list[RecipientState],
    body: bytes | None,
    reporting_mta: str,
    now: float,
) -> tuple[SpooledMessage, bytes] | None:
    """Store a DSN for ``failed``: (the bounce, its bytes), or None if none is due.

    Raises ``BounceNotStored`` if one was due but the store refused it."""
    qid = message.queue_id
    sender = message.envelope.mail_from
    report = [s for s in failed if _wants_failure_notice(s.recipient)]
    if not report:
        return None
    if not sender:
        addresses = ", ".join(s.recipient.address for s in report)
        log.info("%s: null sender, no bounce for failed recipients: %s", qid, addresses)
        return None
    if body is None:
        with contextlib.suppress(SpoolError):
            body = await store.read_body(qid)
    data = build_bounce(
        message, report, split_headers(body or b""), reporting_mta, now, original=body
    )
    envelope = Envelope(
        mail_from="",
        recipients=(Recipient(sender),),
        body_type=bounce_body_type(data),
        smtputf8=not sender.isascii(),
    )
    try:
        bounce = await store.put(data, envelope)
    except SpoolError as exc:
        log.error("%s: cannot queue bounce to <%s>, will retry: %s", qid, sender, exc)
        raise BounceNotStored(str(exc)) from exc
    log.info("%s: sender non-delivery notification: %s", qid, bounce.queue_id)
    return bounce, data
