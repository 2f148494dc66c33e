"""A clock for components that take one (``clock=time.monotonic`` by default): time
moves only when the test says so, so a rate or a ban window is asserted exactly."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
