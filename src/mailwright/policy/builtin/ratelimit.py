"""Message and recipient rate limits per client IP and per authenticated user.

A token bucket per key (RFC-free, the usual shape: Postfix anvil, Haraka
``limit``): ``rate`` tokens per second refill up to ``burst``.  A message costs one
token at MAIL, a recipient one at RCPT.  Over the limit the client gets a temporary
refusal with a retry hint: 451 4.7.1 per message or recipient (RFC 3463 X.7.1,
"delivery not authorized" transiently), so a well-behaved sender slows down and
retries, and a spammer's burst goes nowhere.

Buckets are kept in a bounded LRU so a flood of distinct IPs cannot grow memory
without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import TempFail, Verdict
from mailwright.smtp import MailFrom, RcptTo, Reply

# Distinct keys tracked at once; the least recently used bucket is dropped beyond it.
MAX_TRACKED_KEYS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 on success, else seconds until it would fit."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate if self.rate > 0 else float("inf")


def _retry_reply(what: str, wait: float) -> Reply:
    return Reply.of(
        451, "4.7.1", f"Too many {what}, slow down; try again in {max(1, round(wait))} s"
    )


class RateLimits:
    """Buckets for messages (MAIL) and recipients (RCPT), per IP and per user.

    Authenticated sessions are counted per user (a user behind a NAT shares no IP
    budget with strangers); others per client IP.  A rate of 0 disables that limit.
    """

    name = "rate_limits"

    def __init__(
        self,
        *,
        ip_messages_per_minute: float,
        ip_recipients_per_minute: float,
        user_messages_per_minute: float,
        user_recipients_per_minute: float,
        burst_messages: float,
        burst_recipients: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        def buckets(per_minute: float, burst: float) -> TokenBuckets | None:
            return TokenBuckets(per_minute / 60.0, burst, clock) if per_minute > 0 else None

        self._messages = {
            "ip": buckets(ip_messages_per_minute, burst_messages),
            "user": buckets(user_messages_per_minute, burst_messages),
        }
        self._recipients = {
            "ip": buckets(ip_recipients_per_minute, burst_recipients),
            "user": buckets(user_recipients_per_minute, burst_recipients),
        }

    @property
    def enabled(self) -> bool:
        return any(b is not None for b in (*self._messages.values(), *self._recipients.values()))

    @staticmethod
    def _key(ctx: SessionContext) -> tuple[str, str]:
        if ctx.auth_user:
            return "user", f"user:{ctx.auth_user}"
        return "ip", f"ip:{ctx.peer_ip}"

    def _check(
        self, table: dict[str, TokenBuckets | None], ctx: SessionContext, what: str
    ) -> Verdict | None:
        kind, key = self._key(ctx)
        bucket = table[kind]
        if bucket is None:
            return None
        wait = bucket.take(key)
        if wait:
            return TempFail(_retry_reply(what, wait), f"{what} rate limit for {key}")
        return None

    def on_mail(self, ctx: SessionContext, mail: MailFrom) -> Verdict | None:
        return self._check(self._messages, ctx, "messages")

    def on_rcpt(self, ctx: SessionContext, rcpt: RcptTo) -> Verdict | None:
        return self._check(self._recipients, ctx, "recipients")
