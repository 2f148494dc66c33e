"""Queueing a delivery status notification: the RFC 3464 report (``dsn``) stored in
the same queue as a ``MAIL FROM:<>`` message, so it is delivered (and retried) like any
other mail.  Which reports are due is decided by ``notices``.

The caller stores a report *before* it records the original's new state: if storing a
failure report fails, the failed recipients go back to PENDING and are retried, so no
non-delivery report is ever silently lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from mailwright.queue.dsn import (
    Reported,
    ReportKind,
    bounce_body_type,
    build_report,
    split_headers,
)
from mailwright.spool.model import Envelope, Recipient, SpooledMessage
from mailwright.spool.store import SpoolError, SpoolStore

log = logging.getLogger("mailwright.queue.runner")

# What ``queue_report`` stored: the report's queue entry and its bytes (for ``offer``).
Queued = tuple[SpooledMessage, bytes]


class BounceNotStored(Exception):
    """A report was due but could not be stored."""


async def queue_report(
    store: SpoolStore,
    message: SpooledMessage,
    kind: ReportKind,
    entries: Sequence[Reported],
    body: bytes | None,
    reporting_mta: str,
    now: float,
    *,
    to: Recipient,
    lifetime: float,
) -> Queued:
    """Build the ``kind`` report about ``entries`` and store it for ``to`` with a null
    sender (RFC 5321 §4.5.5).  Raises ``BounceNotStored`` if the store refused it."""
    qid = message.queue_id
    if body is None:
        with contextlib.suppress(SpoolError):
            body = await store.read_body(qid)
    data = build_report(
        message,
        kind,
        entries,
        split_headers(body or b""),
        reporting_mta,
        now,
        to=to.address,
        original=body,
        lifetime=lifetime,
    )
    envelope = Envelope(
        mail_from="",
        recipients=(to,),
        body_type=bounce_body_type(data),
        smtputf8=not to.address.isascii(),
    )
    try:
        report = await store.put(data, envelope)
    except SpoolError as exc:
        log.error("%s: cannot queue %s report to <%s>: %s", qid, kind.name, to.address, exc)
        raise BounceNotStored(str(exc)) from exc
    log.info("%s: %s: %s", qid, kind.log_name, report.queue_id)
    return report, data
