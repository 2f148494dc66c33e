"""The delivery worker's adaptive CPU priority (``runtime.priority``): the decision on a
scripted clock, the switch of every thread through a recording seam, the refusal, and
the kernel's RLIMIT_NICE rule that lets a worker without privileges leave SCHED_IDLE.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from helpers.tools import require_root
from mailwright.runtime import priority
from mailwright.runtime.priority import (
    BACKLOG_BOOST_AFTER,
    BACKLOG_CALM_BELOW,
    BACKLOG_CALM_FOR,
    BACKLOG_CALM_MAX,
    FLAP_WINDOW,
    Level,
    PriorityState,
    WorkerPriority,
    decide,
)

STEP = 0.5  # seconds between two checks, as the worker's CHECK_INTERVAL


def run(state: PriorityState, start: float, waits: list[float]) -> list[Level]:
    """Feed one oldest-wait per STEP from ``start``; the level after each."""
    levels = []
    for i, wait in enumerate(waits):
        state = decide(state, wait, start + i * STEP)
        levels.append(state.level)
    run.state = state  # type: ignore[attr-defined]
    return levels


def test_a_short_wait_stays_idle_and_a_longer_one_boosts():
    state = PriorityState()
    assert decide(state, 0.0, 0.0).level is Level.IDLE
    assert decide(state, BACKLOG_BOOST_AFTER, 0.0).level is Level.IDLE  # "more than"
    boosted = decide(state, BACKLOG_BOOST_AFTER + 0.1, 0.0)
    assert boosted.level is Level.NORMAL
    assert boosted.calm_for == BACKLOG_CALM_FOR


def test_boosted_stays_while_mail_waits_and_returns_after_a_calm_period():
    calm_steps = int(BACKLOG_CALM_FOR / STEP)
    waits = [3.0, 4.0, 1.0, 0.6] + [0.0] * calm_steps + [0.0]
    levels = run(PriorityState(), 0.0, waits)
    # Boosted at once; waits between the two thresholds keep it boosted (no return at
    # 1.0 or 0.6 s: hysteresis); idle only after BACKLOG_CALM_FOR of calm.
    assert levels[: 4 + calm_steps] == [Level.NORMAL] * (4 + calm_steps)
    assert levels[-1] is Level.IDLE


def test_a_wait_during_the_calm_period_starts_it_again():
    """The gaps between two claims of a backlog read 0 s: one such reading (or a few)
    must not return to idle while mail still waits."""
    calm_steps = int(BACKLOG_CALM_FOR / STEP)
    waits = [3.0] + [0.0] * (calm_steps - 1) + [BACKLOG_CALM_BELOW + 0.1]
    waits += [0.0] * calm_steps
    levels = run(PriorityState(), 0.0, waits)
    assert Level.IDLE not in levels
    assert decide(run.state, 0.0, len(waits) * STEP).level is Level.IDLE  # type: ignore[attr-defined]


def test_load_that_does_not_end_doubles_the_calm_period_up_to_its_cap():
    """Idle priority falls behind again as soon as it is back: each boost that follows
    a return within FLAP_WINDOW waits twice as long before the next return."""
    state, now, calm_periods, returns = PriorityState(), 0.0, [], 0
    while returns < 12:
        state = decide(state, 3.0, now)  # mail waits: boost
        assert state.level is Level.NORMAL
        calm_periods.append(state.calm_for)
        while state.level is Level.NORMAL:  # the backlog is delivered at the normal share
            now += STEP
            state = decide(state, 0.0, now)
        returns += 1
        now += 3.0  # back at idle, the backlog is 2+ s old three seconds later
    assert calm_periods[:4] == [BACKLOG_CALM_FOR * 2**i for i in range(4)]
    assert calm_periods[-1] == BACKLOG_CALM_MAX
    assert calm_periods == sorted(calm_periods)  # never shorter while the load lasts


def test_a_boost_after_a_long_idle_spell_starts_with_the_short_calm_period():
    state = PriorityState(level=Level.IDLE, calm_for=BACKLOG_CALM_MAX, idle_since=100.0)
    assert decide(state, 3.0, 100.0 + FLAP_WINDOW).calm_for == BACKLOG_CALM_FOR
    assert decide(state, 3.0, 100.0 + FLAP_WINDOW - 1).calm_for == BACKLOG_CALM_MAX


class RecordingThreads:
    """The system-call seam, recording: ``tids`` may grow, ``refuse`` raises."""

    def __init__(self, tids: list[int]) -> None:
        self.tids = tids
        self.policy: dict[int, int] = {}
        self.refuse: OSError | None = None
        self.calls = 0

    def list(self) -> list[int]:
        return list(self.tids)

    def set_policy(self, tid: int, policy: int) -> None:
        self.calls += 1
        if tid == 13:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        if self.refuse is not None:
            raise self.refuse
        self.policy[tid] = policy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_thread_switches_each_time_including_threads_started_while_boosted(caplog):
    caplog.set_level(logging.INFO, logger="mailwright")
    threads, clock, wait = RecordingThreads([100, 101, 13]), Clock(), [3.0]
    governor = WorkerPriority(lambda: wait[0], threads=threads, clock=clock)
    governor.check()
    assert threads.policy == {100: os.SCHED_OTHER, 101: os.SCHED_OTHER}  # 13 ended: skipped
    assert "leaving idle CPU priority for the normal share (SCHED_OTHER)" in caplog.text
    assert "mail due 3.0 s ago" in caplog.text
    threads.tids.append(102)  # an executor thread started while boosted: SCHED_OTHER
    threads.policy[102] = os.SCHED_OTHER
    wait[0] = 0.0
    while governor.state.level is Level.NORMAL:
        clock.now += STEP
        governor.check()
    assert threads.policy == {100: os.SCHED_IDLE, 101: os.SCHED_IDLE, 102: os.SCHED_IDLE}
    assert "backlog delivered" in caplog.text
    assert "back to idle CPU priority (SCHED_IDLE)" in caplog.text


def test_a_refused_switch_is_logged_once_and_the_worker_stays_idle(caplog):
    threads, clock = RecordingThreads([100, 101]), Clock()
    threads.refuse = PermissionError(errno.EPERM, "Operation not permitted")
    governor = WorkerPriority(lambda: 10.0, threads=threads, clock=clock)
    for _ in range(5):
        governor.check()
        clock.now += STEP
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "cannot switch to normal CPU priority" in warnings[0].getMessage()
    assert "EPERM" in warnings[0].getMessage()
    assert "staying at idle priority" in warnings[0].getMessage()
    assert governor.state.level is Level.IDLE
    assert threads.policy == {}
    assert threads.calls <= 4  # one try (and the put-back), not one per check


# A process that starts as root, keeps its parent's RLIMIT_NICE or raises it
# (``allow_normal_priority``), drops to nobody as the server does, goes to SCHED_IDLE
# as the worker does, then tries to come back to SCHED_OTHER (and below nice 0).
CHILD = textwrap.dedent(
    """
    import os, sys, resource
    from mailwright.runtime.priority import allow_normal_priority
    resource.setrlimit(resource.RLIMIT_NICE, (0, 0))  # as systemd's default LimitNICE
    if sys.argv[1] == "raise":
        assert allow_normal_priority() is None
    os.setgroups([65534]); os.setgid(65534); os.setuid(65534)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        print("normal", end=" ")
    except OSError as exc:
        print(f"refused:{exc.errno}", end=" ")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -1)
        print("below")
    except OSError as exc:
        print(f"not-below:{exc.errno}")
    """
)


CAP_SYS_RESOURCE = 24  # linux/capability.h


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("raise", f"normal not-below:{errno.EACCES}"),
        ("keep", f"refused:{errno.EPERM} not-below:{errno.EACCES}"),
    ],
)
def test_rlimit_nice_lets_an_unprivileged_worker_leave_idle_but_not_go_below_nice_0(mode, expected):
    require_root("dropping to the nobody account")
    if mode == "raise" and not has_capability(CAP_SYS_RESOURCE):
        # Raising a hard limit needs it; a container may keep it from root (docker
        # drops it by default), and then no process in it can get RLIMIT_NICE > 0.
        pytest.skip("raising RLIMIT_NICE needs CAP_SYS_RESOURCE, which this root lacks")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_allow_normal_priority_leaves_a_sufficient_limit_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(priority.resource, "getrlimit", lambda _: (40, 40))
    monkeypatch.setattr(priority.resource, "setrlimit", lambda *a: calls.append(a))
    assert priority.allow_normal_priority() is None
    assert calls == []
