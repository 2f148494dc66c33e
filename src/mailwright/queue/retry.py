"""The retry schedule of the queue runner (RFC 5321 §4.5.4.1): exponential backoff
with jitter, and the reply recorded when a message's queue lifetime runs out."""

from __future__ import annotations

from mailwright.config import DeliveryConfig
from mailwright.smtp import Reply

# Retry delays get up to this fraction added at random, so a burst deferred together
# does not retry in lockstep against the same remote host.
JITTER_FRACTION = 0.1
# RFC 3463 X.4.7: "Delivery time expired".
EXPIRED_STATUS = "4.4.7"
MAX_EXPIRED_TEXT = 400  # octets; a Reply line must stay below MAX_REPLY_LINE
MAX_BACKOFF_EXPONENT = 60  # 2**60 * anything > retry_max: avoids float overflow


def retry_delay(attempts: int, config: DeliveryConfig) -> float:
    """Exponential backoff before the next attempt, without jitter (attempts >= 1)."""
    exponent = min(max(0, attempts - 1), MAX_BACKOFF_EXPONENT)
    return min(config.retry_initial * 2.0**exponent, config.retry_max)


def expired_reply(last: Reply, lifetime: float) -> Reply:
    """The reply recorded for a recipient whose queue lifetime ran out (RFC 3463 X.4.7)."""
    text = f"Message expired after {lifetime / 86400:g} days in queue; last error: {last}"
    encoded = text.encode("utf-8")[:MAX_EXPIRED_TEXT]
    return Reply.of(last.code, EXPIRED_STATUS, encoded.decode("utf-8", "ignore"))
