"""Adaptive CPU priority of the delivery worker: idle while delivery keeps up, the
normal share once mail has waited too long.

The worker starts at Linux ``SCHED_IDLE`` (``delivery.worker_idle``, set by
``runtime.worker.lower_priority``): it only gets CPU time that receiving leaves
free, so a burst is acknowledged at full speed and delivered right after it.  Under
CPU load that does not end, that is a backlog without bound (measured with
``bench/relay.py`` on 2 cores: 1124 messages/s accepted, 892/s delivered, 14,633
waiting when the load stopped).  So the worker watches its backlog and takes its
fair share back while mail waits:

* **Signal**: ``QueueRunner.oldest_wait()``, how long the longest-waiting message
  that is due but not started has waited.  It measures what the priority is for
  (mail waiting for CPU time) rather than CPU use, needs no sampling of ``/proc``
  and no store query: the runner's fetched backlog holds the queue's earliest due
  messages.  A delivery slowed by the *network* also makes mail wait; the boost then
  costs nothing, as a worker that waits for sockets uses no CPU at any priority.
* **Boost**: once it exceeds ``BACKLOG_BOOST_AFTER``, every thread of the worker
  (``/proc/self/task``: a scheduling policy belongs to a thread, and threads inherit
  it from the thread that creates them) goes to ``SCHED_OTHER``, at the nice value
  the worker inherited from the server — the same share as the session processes
  that receive.  Not a setting: a lower nice value would let delivery take CPU from
  receiving, the very thing the idle policy exists to prevent, and a higher one is
  still a share too small to keep up under saturation (the backlog above grew at
  idle priority; at the same share the bench delivered 1093/s of 1124/s with 12
  waiting); a fixed lower share is already ``worker_idle = false`` with
  ``worker_nice``.
* **Return**: back to ``SCHED_IDLE`` once nothing due has waited more than
  ``BACKLOG_CALM_BELOW`` for a calm period.  Two kinds of hysteresis keep it from
  flapping: the calm threshold is well below the boost threshold (and the calm
  period covers the instants between two claims of a backlog, when the fetched list
  is empty although the queue is not); and under load that does not end — where
  idle priority falls behind again as soon as it is back — each boost that follows
  a return within ``FLAP_WINDOW`` doubles the calm period, up to
  ``BACKLOG_CALM_MAX``, so the worker settles at the normal share instead of
  switching every few seconds.  A boost after a long idle spell starts again at
  ``BACKLOG_CALM_FOR``.  Every switch sets every thread again, so a thread started
  while boosted (an executor thread) goes back to idle with the rest.

The decision (``decide``) is a pure function of (state, oldest wait, now), tested on
an injected clock; the system calls sit behind ``Threads``.  Leaving ``SCHED_IDLE``
for ``SCHED_OTHER`` needs ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows the
thread's nice value (the kernel's ``can_nice``: limit >= 20 - nice).  A server that
drops root (``runtime.privileges``) raises the limit for its worker first
(``allow_normal_priority``); the systemd unit sets ``LimitNICE=``.  If the switch is
refused anyway, the worker says so once (a warning naming the errno) and goes on
delivering at idle priority.

Switches are logged at INFO on the debug log (``obs.debuglog``: shown with
``[log] debug = true``); a refusal is a WARNING, shown always.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

log = logging.getLogger(__name__)

# Mail due this long without being started means delivery is falling behind.  Above
# the length of a burst that should stay idle-priority (bench/acceptance.py's 2,000
# messages at 50 sessions are acknowledged in about 2 s): the idle policy lets such a
# burst be acknowledged at full speed and delivered right after it.
BACKLOG_BOOST_AFTER = 2.0
# Back to idle once nothing due has waited more than this ...
BACKLOG_CALM_BELOW = 0.5
# ... for this long (seconds): longer than the gap between two claims of a backlog.
BACKLOG_CALM_FOR = 5.0
# The calm period doubles for each boost that follows a return within FLAP_WINDOW
# (load that does not end), up to this (seconds).
BACKLOG_CALM_MAX = 300.0
# A boost this long (seconds) after the last return to idle starts a fresh calm period.
FLAP_WINDOW = 60.0
# How often the worker looks at its backlog (seconds): a boost comes at most this much
# after the threshold (plus the delay of an idle-priority timer under load).
CHECK_INTERVAL = 0.5

# "Nice 20": what the kernel's can_nice compares RLIMIT_NICE with (limit >= 20 - nice).
_RLIMIT_NICE_BASE = 20


class Level(enum.Enum):
    IDLE = "idle"  # SCHED_IDLE: CPU time that nothing else wants
    NORMAL = "normal"  # SCHED_OTHER: the same share as the session processes


@dataclass(frozen=True)
class PriorityState:
    """Where the worker is and what the next decision needs to know."""

    level: Level = Level.IDLE
    calm_since: float | None = None  # NORMAL: since when nothing has waited long
    calm_for: float = BACKLOG_CALM_FOR  # NORMAL: the calm period that returns to IDLE
    idle_since: float | None = None  # when the worker last returned to IDLE


def decide(state: PriorityState, oldest_wait: float, now: float) -> PriorityState:
    """The next state, given how long the oldest due, unstarted message has waited
    (seconds) and the time ``now`` (monotonic seconds).  See the module docstring."""
    if state.level is Level.IDLE:
        if oldest_wait <= BACKLOG_BOOST_AFTER:
            return state
        calm_for = BACKLOG_CALM_FOR
        if state.idle_since is not None and now - state.idle_since < FLAP_WINDOW:
            calm_for = min(state.calm_for * 2, BACKLOG_CALM_MAX)  # idle fell behind again
        return replace(state, level=Level.NORMAL, calm_since=None, calm_for=calm_for)
    if oldest_wait > BACKLOG_CALM_BELOW:
        return replace(state, calm_since=None)
    if state.calm_since is None:
        return replace(state, calm_since=now)
    if now - state.calm_since < state.calm_for:
        return state
    return replace(state, level=Level.IDLE, calm_since=None, idle_since=now)


class Threads(Protocol):
    """The system-call seam: a process's threads and their scheduling policy."""

    def list(self) -> list[int]:
        """The thread ids of this process."""
        ...

    def set_policy(self, tid: int, policy: int) -> None:
        """Set one thread's policy (OSError as the system call raises it)."""
        ...


class LinuxThreads:
    """``/proc/self/task`` and ``sched_setscheduler(2)``, which takes a thread id."""

    def list(self) -> list[int]:
        return sorted(int(name) for name in os.listdir("/proc/self/task"))

    def set_policy(self, tid: int, policy: int) -> None:
        # Priority 0 is the only one SCHED_OTHER and SCHED_IDLE take; the thread's nice
        # value is kept (sched_setscheduler(2) leaves it alone).
        os.sched_setscheduler(tid, policy, os.sched_param(0))


# Passes over the thread list: a thread that another thread creates while we switch
# has the old policy; the next pass finds it.  Threads are made by the event loop's
# thread (executors, aiosqlite), which is the one switching, so one pass nearly always
# sees every thread and the second finds nothing new.
_SWITCH_PASSES = 3


def set_all_threads(threads: Threads, policy: int) -> int:
    """Give every thread of this process ``policy``; returns how many were set.

    A thread that ends meanwhile (ESRCH) is skipped; any other refusal raises."""
    done: set[int] = set()
    for _ in range(_SWITCH_PASSES):
        todo = [tid for tid in threads.list() if tid not in done]
        if not todo:
            break
        for tid in todo:
            with contextlib.suppress(ProcessLookupError):  # the thread ended
                threads.set_policy(tid, policy)
            done.add(tid)
    return len(done)


def policy_of(level: Level) -> int:
    return os.SCHED_IDLE if level is Level.IDLE else os.SCHED_OTHER


def running_idle() -> bool:
    """Whether this thread runs at SCHED_IDLE (``lower_priority`` got its way)."""
    return hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(0) == os.SCHED_IDLE


class WorkerPriority:
    """Applies ``decide`` to the worker's threads every ``interval`` seconds."""

    def __init__(
        self,
        oldest_wait: Callable[[], float],
        *,
        threads: Threads | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._oldest_wait = oldest_wait
        self._threads: Threads = threads if threads is not None else LinuxThreads()
        self._clock = clock
        self._interval = interval
        self.state = PriorityState()
        self.refused = False  # a switch was refused: stay where we are from then on

    def check(self) -> None:
        """One look at the backlog; switch every thread if ``decide`` says so."""
        if self.refused:
            return
        wait = self._oldest_wait()
        new = decide(self.state, wait, self._clock())
        if new.level is not self.state.level:
            if not self._switch(self.state.level, new.level):
                return
            if new.level is Level.NORMAL:
                log.info(
                    "delivery worker: mail due %.1f s ago is still waiting (more than "
                    "%g s): leaving idle CPU priority for the normal share (SCHED_OTHER) "
                    "until the backlog is delivered",
                    wait,
                    BACKLOG_BOOST_AFTER,
                )
            else:
                log.info(
                    "delivery worker: backlog delivered (nothing due has waited more than "
                    "%g s for %g s): back to idle CPU priority (SCHED_IDLE)",
                    BACKLOG_CALM_BELOW,
                    self.state.calm_for,
                )
        self.state = new

    def _switch(self, old: Level, new: Level) -> bool:
        try:
            set_all_threads(self._threads, policy_of(new))
        except OSError as exc:
            self.refused = True
            # Some threads may have switched before the refusal: put them back, so
            # that the whole worker runs at the level it says it runs at.
            with contextlib.suppress(OSError):
                set_all_threads(self._threads, policy_of(old))
            log.warning(
                "delivery worker: cannot switch to %s CPU priority (sched_setscheduler: "
                "%s, %s); staying at %s priority",
                new.value,
                errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                os.strerror(exc.errno) if exc.errno else exc,
                old.value,
            )
            return False
        return True

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self._interval)


def allow_normal_priority() -> str | None:
    """Let this process's children (the delivery worker) return from SCHED_IDLE to
    SCHED_OTHER at our nice value without privileges — and never go below it.

    Called before the privilege drop (``runtime.privileges``): raising the hard
    limit needs CAP_SYS_RESOURCE, which root has and the mail user has not.  The
    limit is inherited across fork and exec.  A limit that already allows it is left
    alone.  Returns why it could not be raised (None when all is well): the worker
    then says so when it tries, and stays at idle priority."""
    needed = _RLIMIT_NICE_BASE - os.getpriority(os.PRIO_PROCESS, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY:
        hard = max(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NICE, (needed, hard))
    except (OSError, ValueError) as exc:
        return f"cannot raise RLIMIT_NICE to {needed}: {exc}"
    return None
