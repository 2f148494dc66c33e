"""``mailwright send --count N --concurrency C``: the load generator.

C workers, each with its own connection, take messages from one shared counter until
N have been sent, reusing their connection while it stays usable (as a relay does,
and as smtp-source does with one session per worker); a connection that fails is
reopened, and the message that failed is counted, not retried.  Latency is one
message's transaction, MAIL to the final reply; connection set-up is not in it but is
in the elapsed time, so messages/second is the honest figure.  No transcript is kept
(no wire tap on the hot path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwright.client.send import (
    SendOptions,
    outgoing,
    peer_for,
    settings_for,
    targets_for,
    tls_policy,
)
from mailwright.net.outbound import OutboundSession, SessionError

PERCENTILES = (50, 90, 99)


@dataclass(slots=True)
class BulkResult:
    count: int
    concurrency: int
    sent: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: int) -> float:
        """Nearest-rank percentile of the latencies, in seconds (0 without any)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
        return ordered[rank - 1]

    def summary(self) -> str:
        p = ", ".join(f"p{q} {self.percentile(q) * 1000:.1f} ms" for q in PERCENTILES)
        return (
            f"{self.sent} sent, {self.failed} failed in {self.elapsed:.2f} s: "
            f"{self.rate:.0f} messages/s; latency {p}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "concurrency": self.concurrency,
            "sent": self.sent,
            "failed": self.failed,
            "elapsed": round(self.elapsed, 6),
            "messages_per_second": round(self.rate, 3),
            "latency_ms": {f"p{q}": round(self.percentile(q) * 1000, 3) for q in PERCENTILES},
            "errors": self.errors,
        }


async def send_bulk(
    opts: SendOptions,
    count: int,
    concurrency: int,
    progress: Callable[[int], None] | None = None,
) -> BulkResult:
    """Send ``count`` copies of the message over ``concurrency`` connections."""
    result = BulkResult(count, concurrency)
    targets = await targets_for(opts)
    peer = peer_for(opts, targets[0])
    settings = settings_for(opts, None)
    policy = tls_policy(opts)
    message = outgoing(opts)
    remaining = count

    def fail(reason: str) -> None:
        result.failed += 1
        result.errors[reason] = result.errors.get(reason, 0) + 1
        if progress is not None:
            progress(1)

    async def worker() -> None:
        nonlocal remaining
        session: OutboundSession | None = None
        try:
            while remaining > 0:
                if session is None or not session.usable:
                    try:
                        session = await OutboundSession.open(peer, settings, policy)
                    except SessionError as exc:
                        remaining -= 1
                        fail(f"{exc.stage.value}: {exc.reason}")
                        continue
                remaining -= 1
                start = time.perf_counter()
                sent = await session.send(message)
                if all(r.delivered for r in sent.recipients):
                    result.latencies.append(time.perf_counter() - start)
                    result.sent += 1
                    if progress is not None:
                        progress(1)
                else:
                    bad = next(r for r in sent.recipients if not r.delivered)
                    fail(str(bad.reply))
        finally:
            if session is not None:
                await session.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    result.elapsed = time.perf_counter() - started
    return result
