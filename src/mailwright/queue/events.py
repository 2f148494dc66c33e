"""Delivery events: what the queue runner reports about each recipient of an attempt.

``on_event(kind, message, address, result)`` with ``kind`` one of ``EVENT_KINDS``:
"delivered" (2xx), "deferred" (4xx, retried at ``message.next_attempt``), "bounced"
(5xx) or "expired" (a temporary failure past ``max_queue_lifetime``, RFC 3463 X.4.7).
The mail log consumes them; it is a plain callable so the queue does not depend on
``obs``.  A callback that raises is logged and ignored: reporting never stops delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailwright.queue.agent import DeliveryResult
from mailwright.spool.model import SpooledMessage

log = logging.getLogger("mailwright.queue.runner")

EVENT_KINDS = ("delivered", "deferred", "bounced", "expired")

EventCallback = Callable[[str, SpooledMessage, str, DeliveryResult], None]


def emit(
    on_event: EventCallback | None,
    kind: str,
    message: SpooledMessage,
    address: str,
    result: DeliveryResult,
) -> None:
    if on_event is None:
        return
    try:
        on_event(kind, message, address, result)
    except Exception:
        log.exception("on_event callback failed for %s %s", kind, message.queue_id)
