"""The AUTH guard (growing delay per failure, temporary ban), on an injected clock."""

from __future__ import annotations

import pytest

from helpers.clock import FakeClock
from mailwright.policy import authguard
from mailwright.policy.authguard import AuthGuard

IP = "192.0.2.7"
OTHER = "198.51.100.3"


def guard(clock: FakeClock, max_failures: int = 5) -> AuthGuard:
    return AuthGuard(
        max_failures=max_failures,
        window=600.0,
        ban_time=900.0,
        base_delay=1.0,
        max_delay=8.0,
        clock=clock,
    )


def test_the_delay_doubles_per_failure_up_to_the_cap() -> None:
    g = guard(FakeClock(), max_failures=10)
    assert [g.failure(IP) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not g.banned(IP)


def test_max_failures_within_the_window_ban_the_ip_for_ban_time() -> None:
    clock = FakeClock()
    g = guard(clock)
    delays = [g.failure(IP) for _ in range(5)]
    assert delays[-1] == 8.0  # the banning failure waits the longest
    assert g.banned(IP)
    assert not g.banned(OTHER)
    clock.advance(899.0)
    assert g.banned(IP)
    clock.advance(1.0)
    assert not g.banned(IP)
    # The ban started a clean slate: the next failure is a first one.
    assert g.failure(IP) == 1.0


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = FakeClock()
    g = guard(clock)
    for _ in range(4):
        g.failure(IP)
        clock.advance(1.0)
    assert g.has_failures(IP)
    clock.advance(601.0)
    assert not g.has_failures(IP)
    assert g.failure(IP) == 1.0  # the four old ones fell out of the window
    assert not g.banned(IP)


def test_failures_spread_so_that_the_window_slides_never_ban() -> None:
    clock = FakeClock()
    g = guard(clock)
    for _ in range(20):
        g.failure(IP)
        clock.advance(151.0)  # at most four failures in any 600 s
    assert not g.banned(IP)


def test_success_clears_the_record() -> None:
    g = guard(FakeClock())
    for _ in range(4):
        g.failure(IP)
    g.success(IP)
    assert not g.has_failures(IP)
    assert g.failure(IP) == 1.0
    assert not g.banned(IP)


def test_each_ip_has_its_own_record() -> None:
    g = guard(FakeClock())
    for _ in range(5):
        g.failure(IP)
    assert g.banned(IP)
    assert not g.has_failures(OTHER)
    assert g.failure(OTHER) == 1.0


def test_a_ban_from_the_main_process_lengthens_but_never_shortens() -> None:
    clock = FakeClock()
    g = guard(clock)
    g.ban(IP, 100.0)
    g.ban(IP, 10.0)  # a shorter ban arriving later does not cut the first short
    clock.advance(50.0)
    assert g.banned(IP)
    g.ban(IP, 200.0)
    clock.advance(199.0)
    assert g.banned(IP)
    clock.advance(1.0)
    assert not g.banned(IP)


def test_the_failure_record_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authguard, "MAX_TRACKED_IPS", 2)
    g = guard(FakeClock())
    g.failure("192.0.2.1")
    g.failure("192.0.2.2")
    g.failure("192.0.2.1")  # .1 is now the most recent
    g.failure("192.0.2.3")  # pushes .2, the least recent, out
    assert not g.has_failures("192.0.2.2")
    assert g.has_failures("192.0.2.1") and g.has_failures("192.0.2.3")
    assert g.failure("192.0.2.1") == 4.0  # its record survived: third failure
