"""The composition root: every process kind is built here, from the validated Config.

Nothing else constructs services; components receive exactly what they need
(DESIGN principle 6).  The main process (``runtime.server``), a session process
(``runtime.sessions``) and the delivery worker (``runtime.worker``) all build their
pieces with these functions, so an in-process session and one in a session process,
or the in-process queue runner and the worker's, cannot be wired differently.

``Foundation`` is the set-up every process kind makes first and undoes last: the debug
log, the mail log and its periodic flusher, the spool — opened with recovery (the main
process, which owns the data folder) or without (a child: the main process recovered
it before starting the child, and others write to it now) — and, for whoever runs the
queue, the spool's runner lock (``spool.runnerlock``).  ``run_event_loop`` is the one
way every process runs its event loop (uvloop when installed, DESIGN principle 7).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pickle
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserStore
from mailwright.config import Config
from mailwright.delivery.base import DeliveryResult
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.relay.build import build_remote_agent
from mailwright.delivery.resolver import build_resolver
from mailwright.delivery.router import Router
from mailwright.delivery.tlspolicy.build import build_decider
from mailwright.net.services import SessionServices
from mailwright.net.tls import TlsManager
from mailwright.obs.debuglog import setup_debug_log
from mailwright.obs.maillog import MailLog
from mailwright.policy.authguard import AuthGuard
from mailwright.policy.builtin.freespace import FreeSpace
from mailwright.policy.builtin.from_header import FromHeaderMatch
from mailwright.policy.builtin.ratelimit import RateLimits
from mailwright.policy.builtin.recipients import LocalRecipients
from mailwright.policy.builtin.relay import RelayAccess, parse_networks
from mailwright.policy.builtin.submission import RequireAuth, SenderLoginMatch
from mailwright.policy.pipeline import Pipeline, Stage
from mailwright.queue.events import EventCallback
from mailwright.queue.notices import postmaster_address
from mailwright.queue.runner import FRESH_HOLD, QueueRunner
from mailwright.runtime.control import ControlError, read_config
from mailwright.spool.embedded import SPOOL_DIR, EmbeddedSpool
from mailwright.spool.model import SpooledMessage
from mailwright.spool.runnerlock import RunnerLock
from mailwright.spool.wakeup import FifoWakeup

log = logging.getLogger(__name__)


def build_pipeline(config: Config, directory: LocalDirectory, users: UserStore) -> Pipeline:
    """Hooks in a fixed, explicit order (DESIGN principle 6).

    MAIL: AUTH required on submission listeners, then sender-login matching, then
    rate limits.  RCPT: rate limits, local recipients (deliver or 550 5.1.1), then
    relay access (authenticated users, trusted networks).  A recipient nobody
    accepted gets 550 5.7.1 from the pipeline: never an open relay.
    Free space on the spool: last at MAIL, and at DATA (and the first BDAT chunk).
    MESSAGE (after the last body byte): From: header matching where a listener asks.
    """
    pipeline = Pipeline()
    require_auth = RequireAuth()
    pipeline.register(Stage.MAIL, require_auth.name, require_auth.on_mail)
    sender_login = SenderLoginMatch(users)
    pipeline.register(Stage.MAIL, sender_login.name, sender_login.on_mail)
    abuse = config.abuse
    limits = RateLimits(
        ip_messages_per_minute=abuse.ip_messages_per_minute,
        ip_recipients_per_minute=abuse.ip_recipients_per_minute,
        user_messages_per_minute=abuse.user_messages_per_minute,
        user_recipients_per_minute=abuse.user_recipients_per_minute,
        burst_messages=abuse.burst_messages,
        burst_recipients=abuse.burst_recipients,
    )
    if limits.enabled:
        pipeline.register(Stage.MAIL, limits.name, limits.on_mail)
        pipeline.register(Stage.RCPT, limits.name, limits.on_rcpt)
    # Free space last at MAIL: refusals that need no disk access come first.
    free_space = FreeSpace(config.data_dir / SPOOL_DIR, config.smtp.free_space_floor)
    pipeline.register(Stage.MAIL, free_space.name, free_space.on_mail)
    pipeline.register(Stage.DATA, free_space.name, free_space.on_data)
    local = LocalRecipients(directory)
    pipeline.register(Stage.RCPT, local.name, local.on_rcpt)
    relay = RelayAccess(parse_networks(config.relay.trusted_networks))
    pipeline.register(Stage.RCPT, relay.name, relay.on_rcpt)
    from_header = FromHeaderMatch(users)
    pipeline.register(Stage.MESSAGE, from_header.name, from_header.on_message)
    return pipeline


def delivery_logger(maillog: MailLog) -> EventCallback:
    """The queue runner's ``on_event``: one mail-log line per recipient outcome."""

    def log_delivery(
        kind: str, message: SpooledMessage, address: str, result: DeliveryResult
    ) -> None:
        # The relay's results name the host and the TLS policy (relay=, detail=).
        relay, detail = result.remote_host, (result.reason or None) if result.remote_host else None
        if kind == "delivered":
            maillog.delivered(message.queue_id, address, result.reply, relay, detail)
        elif kind == "deferred":
            maillog.deferred(
                message.queue_id, address, result.reply, message.next_attempt, relay, detail
            )
        elif kind == "bounced":
            maillog.bounced(message.queue_id, address, result.reply, relay, detail)
        elif kind == "expired":
            maillog.expired(message.queue_id, address)

    return log_delivery


def build_directory(config: Config) -> LocalDirectory:
    return LocalDirectory(config.domains, config.delivery.recipient_delimiter)


def build_local_agent(config: Config, directory: LocalDirectory) -> LocalDeliveryAgent:
    return LocalDeliveryAgent(directory, mail_root(config.data_dir), config.smtp.hostname)


def build_queue_runner(
    config: Config, spool: EmbeddedSpool, maillog: MailLog, directory: LocalDirectory
) -> tuple[QueueRunner, LocalDeliveryAgent]:
    """The queue runner and its local agent: in the server, or in the delivery worker."""
    local_agent = build_local_agent(config, directory)
    resolver = build_resolver(config.dns)  # relay: MX routing, DANE, MTA-STS
    decider = build_decider(config, resolver, extra_ca_file=config.outbound.ca_file)
    remote = build_remote_agent(config, resolver, decider=decider)
    runner = QueueRunner(
        spool,
        Router(directory, local_agent, remote, remote.routes),
        config.delivery,
        on_event=delivery_logger(maillog),
        reporting_mta=config.smtp.hostname,
        # A fresh message waits to be announced: its accepted line is then logged.
        fresh_hold=FRESH_HOLD,
        # `mailwright sendmail` and `queue flush` wake it through spool/wake.
        wakeup=FifoWakeup(spool.root),
        # Double bounces (undeliverable reports) go to the postmaster (RFC 5321 §4.5.1).
        postmaster=postmaster_address(config.smtp.hostname, [d.name for d in config.domains]),
    )
    return runner, local_agent


async def flush_periodically(maillog: MailLog, interval: float) -> None:
    """Write the buffered mail log every ``interval`` seconds (``log.flush_interval``)."""
    while True:
        await asyncio.sleep(interval)
        maillog.flush()


def auth_guard_settings(config: Config) -> dict[str, Any]:
    """``AuthGuard``'s keyword arguments from ``abuse.auth_*``."""
    abuse = config.abuse
    return {
        "max_failures": abuse.auth_max_failures,
        "window": abuse.auth_window,
        "ban_time": abuse.auth_ban_time,
        "base_delay": abuse.auth_base_delay,
        "max_delay": abuse.auth_max_delay,
    }


def build_session_services(
    config: Config,
    *,
    spool: EmbeddedSpool,
    maillog: MailLog,
    directory: LocalDirectory,
    users: UserStore,
    tls: TlsManager | None,
    auth_guard: AuthGuard,
    on_queued: Callable[[SpooledMessage, bytes | None], None],
) -> SessionServices:
    """What every session shares: in this process, or in a session process."""
    return SessionServices(
        config=config,
        pipeline=build_pipeline(config, directory, users),
        spool=spool,
        directory=directory,
        maillog=maillog,
        auth_guard=auth_guard,
        tls=tls,
        users=users,
        on_queued=on_queued,
    )


def load_tls(config: Config) -> TlsManager | None:
    """The TLS manager, or None when TLS is off (no certificate, self_signed false)."""
    if not config.tls.enabled:
        return None
    manager = TlsManager(config.tls, config.data_dir, config.smtp.hostname)
    manager.load()
    return manager


# Signals that make a child process reopen its mail log, as the main process's do
# (SIGHUP: the main process also reloads its certificates): ``systemctl kill -s USR1``
# signals every process of the unit.  A child ignores them until its log exists, so
# an early one does not kill it.
REOPEN_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Foundation:
    """The debug log, the mail log (+ flusher), the spool (+ runner lock) of a process.

    ``recover``: run the spool's crash recovery on open (the main process only).
    ``runner_lock``: take the runner lock before opening the spool — recovery and queue
    running exclude every other runner (a worker of a previous server still finishing,
    another server on the same data folder)."""

    def __init__(self, config: Config, *, recover: bool, runner_lock: bool) -> None:
        self.config = config
        self.spool = EmbeddedSpool(config.data_dir, recover=recover)
        self.lock = RunnerLock(self.spool.root) if runner_lock else None
        self.maillog: MailLog | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._signals = False
        self._spool_opened = False

    async def open(self) -> MailLog:
        """Set up the logs and open the spool (``SpoolError``, ``SpoolBusy`` when it
        cannot be; what was set up is then closed again by ``close``)."""
        config = self.config
        setup_debug_log(config.log)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.maillog = MailLog.from_config(config.log, config.data_dir)
        if self.lock is not None:
            await asyncio.to_thread(self.lock.acquire)
        await self.spool.open()
        self._spool_opened = True
        return self.maillog

    def start_flusher(self) -> None:
        """Write a buffered mail log every ``log.flush_interval`` seconds from now on."""
        if self.maillog is not None and self.maillog.buffered and self._flusher is None:
            interval = self.config.log.flush_interval
            self._flusher = asyncio.get_running_loop().create_task(
                flush_periodically(self.maillog, interval)
            )

    def reopen_on_signals(self) -> None:
        """A child process: ``REOPEN_SIGNALS`` reopen the mail log (``obs.maillog``)."""
        assert self.maillog is not None
        loop = asyncio.get_running_loop()
        for sig in REOPEN_SIGNALS:
            loop.add_signal_handler(sig, self.maillog.reopen)
        self._signals = True

    def release_lock(self) -> None:
        """Hand the runner lock on (to the delivery worker); idempotent."""
        if self.lock is not None:
            self.lock.release()

    async def close(self) -> None:
        """Undo ``open`` and what followed, each step on its own: one that fails must
        not keep the later ones (closing the spool, releasing the lock) from running."""
        if self._signals:
            loop = asyncio.get_running_loop()
            for sig in REOPEN_SIGNALS:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
            self._signals = False
        if self._spool_opened:
            self._spool_opened = False
            try:
                await self.spool.close()
            except Exception as exc:  # the logs and the lock are still to be closed
                log.error("closing the spool failed: %s", exc)
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self.maillog is not None:
            self.maillog.close()
        self.release_lock()


class ChildError(Exception):
    """A child process cannot run; the message is printed as one line."""


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the main process dies, as if it ran in-process."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(0)


def run_child(
    label: str,
    argv: list[str],
    usage: str,
    nargs: int,
    start: Callable[[Config, list[int]], Coroutine[Any, Any, None]],
) -> None:
    """The entry of every child process kind (``python -m mailwright.runtime.<kind>
    <server pid> [<fd>...]``), in order: ignore SIGINT and SIGTERM (the main process
    decides when a child stops) and the reopen signals until the log exists; die with
    the main process; read the config from standard input (``control.read_config``);
    run ``start(config, numbers)`` on the event loop.  Exit status 1 with one line on
    standard error (``mailwright: <label>: <problem>``) when it cannot run; the main
    process restarts it."""
    for sig in (signal.SIGINT, signal.SIGTERM, *REOPEN_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    try:
        if len(argv) != nargs or not all(arg.isdigit() for arg in argv):
            raise ChildError(f"usage: {usage}")
        numbers = [int(arg) for arg in argv]
        die_with_parent(numbers[0])
        config = read_config()
        run_event_loop(start(config, numbers))
    except (ChildError, ControlError, OSError, pickle.UnpicklingError, EOFError) as exc:
        print(f"mailwright: {label}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` with uvloop when it is installed (DESIGN principle 7)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        asyncio.run(main)
    else:
        uvloop.run(main)
