"""Password checks (argon2) in a bounded, fair queue, per client address.

argon2 is slow on purpose (RFC 9106's parameters cost ~0.1 s of CPU and 64 MiB per
check), so running every check at once let parallel sessions outrun the AUTH ban (fifty
wrong passwords from one address were all hashed before the fifth failure could ban it)
and let a burst from a few addresses delay everyone else's login by tens of seconds.
``PasswordCheckQueue`` decides when a check may run; ``AuthExchange`` decides what to do
when its turn comes:

* **Per address**, at most ``PER_ADDRESS_CHECKS`` checks run at once; the address's
  other attempts wait in arrival order.  When its turn comes, an attempt first asks the
  guard whether the address is banned by now (its failures reached the limit while it
  waited): then it is refused with 454 4.7.0 without being checked.  So at most
  ``max_failures + PER_ADDRESS_CHECKS - 1`` passwords are checked per address before
  the ban, however many sessions it opens.  The limit counts *failures*: twenty
  parallel correct logins wait their turns and all succeed.
* **Fair, clean addresses first**: a free thread goes to an address without recent
  AUTH failures before any address with some (``suspect``, from the guard), and turns
  go round the addresses of each kind (round robin).  A burst of guesses shows up as
  failures after its first checks, so a correct login from a clean address waits only
  for the checks already running, not for the burst; guessers share what is left.
* **Bounded**: at most ``MAX_QUEUED_CHECKS`` attempts wait in all.  When that is full, a
  newcomer takes the place of the newest attempt of the address with the most attempts
  waiting, which is refused at once (454 4.7.0), unless the newcomer's own address is
  that one, in which case the newcomer is refused (dropping from the longest queue, as
  fq_codel does: a burst from a few addresses cannot lock everyone else out).
* Checks run on ``CHECK_THREADS`` threads of their own, never more at once, so they do
  not compete with other users of the loop's default executor.

With session processes (``smtp.processes``) each process has its own queue, so one
address may have ``PER_ADDRESS_CHECKS`` checks running in each process, and each
process's guard counts the failures it saw itself (banning at the limit) while the main
process counts all of them and broadcasts its ban (``runtime.sessionpool``): the ban is exact,
and at most N * (max_failures + PER_ADDRESS_CHECKS - 1) passwords are checked per
address before it lands everywhere (fewer in practice: the main process's ban usually
arrives within milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Concurrent password checks from one client address ("one or two": enough for a
# client that opens two sessions at once, too few to race the ban).
PER_ADDRESS_CHECKS = 2
# Threads that run checks, in all: one per core (at least two, so one slow check never
# holds every login).  argon2 is CPU-bound and releases the GIL; more threads than cores
# only add 64 MiB each and make every check slower.
CHECK_THREADS = max(2, os.cpu_count() or 1)
# Attempts waiting for a turn, in all (a few times the parallel logins a busy
# submission server sees).  64 checks of ~0.1 s on two threads is ~3 s, well within
# any client's wait for a reply (RFC 5321 §4.5.3.2 gives clients minutes).
MAX_QUEUED_CHECKS = 64

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _check_executor() -> ThreadPoolExecutor:
    """One executor per process, shared by every queue (servers started in tests too)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="password-check")
        return _executor


class QueueFull(Exception):
    """No room to wait for a password check (or displaced by a quieter address)."""


class PasswordCheckQueue:
    """Turns for password checks: per-address and global concurrency, fair, bounded.

    Use ``async with queue.turn(address):`` around ``await queue.run(check, ...)``;
    ``turn`` raises ``QueueFull`` when the attempt may not wait.  Event-loop only (not
    thread-safe); the checks themselves run in threads.
    """

    def __init__(
        self,
        *,
        suspect: Callable[[str], bool] = lambda address: False,
        threads: int = CHECK_THREADS,
        per_address: int = PER_ADDRESS_CHECKS,
        max_waiting: int = MAX_QUEUED_CHECKS,
    ) -> None:
        self.suspect = suspect  # whether an address had AUTH failures lately
        self.threads = threads
        self.per_address = per_address
        self.max_waiting = max_waiting
        self._active = 0
        self._running: dict[str, int] = {}
        # Addresses with attempts waiting, in round-robin order (served ones move last).
        self._waiting: dict[str, deque[asyncio.Future[bool]]] = {}
        self._n_waiting = 0

    @property
    def waiting(self) -> int:
        return self._n_waiting

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        await self._acquire(address)
        try:
            yield
        finally:
            self._release(address)

    async def run(self, check: Callable[..., T], *args: object) -> T:
        """Run ``check(*args)`` on a password-check thread (inside a ``turn``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_check_executor(), check, *args)

    # -- internals -----------------------------------------------------------------

    def _may_start(self, address: str) -> bool:
        return self._active < self.threads and self._running.get(address, 0) < self.per_address

    def _start(self, address: str) -> None:
        self._active += 1
        self._running[address] = self._running.get(address, 0) + 1

    async def _acquire(self, address: str) -> None:
        if address not in self._waiting and self._may_start(address):
            self._start(address)
            return
        self._make_room(address)
        granted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(address, deque()).append(granted)
        self._n_waiting += 1
        try:
            ok = await granted
        except BaseException:  # the session ended while waiting
            if granted.done() and not granted.cancelled() and granted.result():
                self._release(address)  # granted just before: give the turn back
            else:
                self._forget(address, granted)
            raise
        if not ok:
            raise QueueFull

    def _make_room(self, address: str) -> None:
        if self._n_waiting < self.max_waiting:
            return
        own = len(self._waiting.get(address, ()))
        longest = max(self._waiting, key=lambda a: len(self._waiting[a]), default=None)
        if longest is None or len(self._waiting[longest]) <= own + 1:
            raise QueueFull
        victims = self._waiting[longest]
        victim = victims.pop()  # its newest attempt: the oldest keep their places
        self._n_waiting -= 1
        if not victim.done():  # (a cancelled one is simply gone)
            victim.set_result(False)

    def _forget(self, address: str, granted: asyncio.Future[bool]) -> None:
        queue = self._waiting.get(address)
        if queue is not None and granted in queue:
            queue.remove(granted)
            self._n_waiting -= 1
            if not queue:
                del self._waiting[address]

    def _release(self, address: str) -> None:
        self._active -= 1
        left = self._running[address] - 1
        if left:
            self._running[address] = left
        else:
            del self._running[address]
        self._dispatch()

    def _next_address(self) -> str | None:
        """The first clean address that may start a check, else the first suspect."""
        first_suspect = None
        for address in self._waiting:
            if self._running.get(address, 0) >= self.per_address:
                continue
            if not self.suspect(address):
                return address
            if first_suspect is None:
                first_suspect = address
        return first_suspect

    def _dispatch(self) -> None:
        while self._active < self.threads:
            address = self._next_address()
            if address is None:
                return
            queue = self._waiting.pop(address)
            granted = queue.popleft()
            self._n_waiting -= 1
            if queue:
                self._waiting[address] = queue  # re-inserted last: the next turn is another's
            if granted.done():  # cancelled with its session; its task has not run yet
                continue
            self._start(address)
            granted.set_result(True)
