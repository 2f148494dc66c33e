"""AUTH brute-force protection: a growing delay per failure and a temporary IP ban.

* Every failed AUTH from an IP delays that session's 535 by
  ``min(base_delay * 2**(failures-1), max_delay)`` (tarpit: a guessing bot gets
  slower with every try, a user who mistyped once barely notices).
* ``max_failures`` failures within ``window`` seconds ban the IP for ``ban_time``:
  AUTH answers 454 4.7.0 without checking anything (RFC 4954 §6: "temporary
  authentication failure"), so a ban costs us no password hashing.
* Success clears the IP's record.  Comparisons of secrets are constant-time in the
  mechanisms themselves (``smtp._sasl``, ``accounts.users``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Distinct IPs tracked at once (bounded memory under a distributed attack).
MAX_TRACKED_IPS = 100_000


class AuthGuard:
    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        ban_time: float,
        base_delay: float,
        max_delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._banned_until: dict[str, float] = {}

    def banned(self, ip: str) -> bool:
        until = self._banned_until.get(ip)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[ip]
            return False
        return True

    def has_failures(self, ip: str) -> bool:
        """Whether ``ip`` failed AUTH within the window (its password checks then wait
        behind those of clean addresses, ``net.authqueue``)."""
        times = self._failures.get(ip)
        return times is not None and bool(times) and self._clock() - times[-1] <= self.window

    def failure(self, ip: str) -> float:
        """Record a failure; return how long to delay the 535 reply."""
        now = self._clock()
        times = self._failures.get(ip)
        if times is None:
            times = deque()
            self._failures[ip] = times
            if len(self._failures) > MAX_TRACKED_IPS:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(ip)
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.max_failures:
            self._banned_until[ip] = now + self.ban_time
            times.clear()
            return self.max_delay
        # An int power is Any to mypy (a negative exponent would make it a float).
        delay: float = self.base_delay * 2 ** (len(times) - 1)
        return min(delay, self.max_delay)

    def ban(self, ip: str, seconds: float) -> None:
        """Ban ``ip`` for ``seconds``: a ban decided by the main process for every
        session process (``runtime.sessionpool``)."""
        until = self._clock() + seconds
        if until > self._banned_until.get(ip, 0.0):
            self._banned_until[ip] = until

    def success(self, ip: str) -> None:
        self._failures.pop(ip, None)
