"""The composition root: builds every component from the validated Config and runs them.

Nothing else constructs services; components receive exactly what they need
(DESIGN principle 6).  Shutdown is staged (uvicorn's pattern, issue #2):

1. stop accepting connections;
2. 421 4.3.2 to idle sessions, let sessions inside DATA/BDAT finish within
   ``smtp.shutdown_grace`` seconds, then cancel the rest (nothing 250'd is lost:
   an acknowledged message is already durable in the spool);
3. stop the queue runner (in-flight deliveries finish or are retried after restart);
4. close the spool and the logs.

The queue runner runs in a delivery worker process by default (``delivery.worker``,
``mailwright.workerproc``), built by the same ``build_queue_runner`` as the in-process
one; step 3 then closes the worker's pipe and waits for it.

With ``smtp.processes`` > 0 the sessions run in that many session processes
(``mailwright.sessionproc``, built by the same ``build_session_services``); this
process binds, accepts, counts and hands connections over (``net.handover``), and
step 2 becomes "tell every session process to stop, and wait for it".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

from mailwright import startup
from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserStore
from mailwright.config import Config, ListenerConfig
from mailwright.delivery.base import DeliveryResult
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.relay.build import build_remote_agent
from mailwright.delivery.resolver import build_resolver
from mailwright.delivery.router import Router
from mailwright.delivery.tlspolicy.build import build_decider
from mailwright.net.fdlimit import ensure_fd_limit
from mailwright.net.handover import HandoverListener, SessionProcesses
from mailwright.net.listener import ConnectionLimits, Listener, ListenerError
from mailwright.net.privileges import drop_privileges
from mailwright.net.services import SessionServices
from mailwright.net.tls import TlsError, TlsManager
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
from mailwright.spool.embedded import SPOOL_DIR, EmbeddedSpool
from mailwright.spool.model import SpooledMessage
from mailwright.spool.runnerlock import RunnerLock
from mailwright.supervisor import DeliveryWorker

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


class App:
    def __init__(self, config: Config, *, announce: Callable[[str], None] = print) -> None:
        self.config = config
        self.announce = announce
        self.listeners: list[Listener] = []
        self._stop = asyncio.Event()
        self.runner: QueueRunner | None = None  # the in-process runner (worker off)
        self.worker: DeliveryWorker | None = None  # the delivery worker (worker on)
        self.processes: SessionProcesses | None = None  # session processes (smtp.processes)
        self._runner_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        # SIGHUP/SIGUSR1 actions that arrived while starting (None once started).
        self._deferred_signals: list[Callable[[], None]] | None = []

    async def start(self) -> None:
        """Build and start everything; if any step fails, undo the steps done (the
        runner lock above all: another App on the same data folder waits for it)."""
        try:
            await self._start()
        except BaseException as exc:
            await self._undo_start()
            problem = startup.describe_failure(exc, self.config)
            if problem is None or isinstance(exc, startup.StartupError):
                raise
            raise startup.StartupError([problem]) from exc

    async def _undo_start(self) -> None:
        """Best effort, each step on its own: a step that fails must not keep the
        later ones (closing the spool, releasing the lock) from running."""
        handovers = self.processes.listeners if self.processes is not None else []
        listeners: list[Listener | HandoverListener] = [*self.listeners, *handovers]
        for listener in listeners:
            with contextlib.suppress(Exception):
                listener.stop_accepting()
        if self.processes is not None:
            with contextlib.suppress(Exception):
                await self.processes.stop(grace=0)
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await self.worker.stop()
        if self._runner_task is not None:  # before the spool closes under it
            self._runner_task.cancel()
            await asyncio.gather(self._runner_task, return_exceptions=True)
        spool = getattr(self, "spool", None)
        if spool is not None:
            with contextlib.suppress(Exception):
                await spool.close()
        maillog = getattr(self, "maillog", None)
        if maillog is not None:
            maillog.close()
        lock = getattr(self, "runner_lock", None)
        if lock is not None:
            lock.release()

    async def _start(self) -> None:
        config = self.config
        # The checks check-config makes too, before anything is created or bound (and
        # before the debug log: their problems are reported once, by the caller).
        findings = startup.check(config)
        for warning in findings.warnings:
            self.announce(f"mailwright: warning: {warning}")
        if findings.problems:
            raise startup.StartupError(findings.problems)
        setup_debug_log(config.log)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.maillog = MailLog.from_config(config.log, config.data_dir)
        self.spool = EmbeddedSpool(config.data_dir)
        # Recovery and queue running exclude every other runner (see runnerlock); with
        # a worker the lock passes to it once the spool is recovered.
        self.runner_lock = RunnerLock(self.spool.root)
        await asyncio.to_thread(self.runner_lock.acquire)
        await self.spool.open()
        self.directory = build_directory(config)
        if config.delivery.worker:
            local_agent = build_local_agent(config, self.directory)
            self.worker = DeliveryWorker(
                config, announce=self.announce, flush_log=self.maillog.flush
            )
            on_queued: Callable[..., None] = self.worker.notify
        else:
            self.runner, local_agent = build_queue_runner(
                config, self.spool, self.maillog, self.directory
            )
            on_queued = self.runner.offer
        # Create the Maildirs now, also with a worker: a permission problem is then
        # reported at start-up, not by a worker that keeps failing.
        await asyncio.to_thread(local_agent.ensure_all)
        self.tls = load_tls(config)
        if self.tls is not None:
            for line in self.tls.certificate_summary():
                self.announce(f"mailwright: certificate {line}")
        self.users = UserStore.in_data_dir(config.data_dir)
        limits = ConnectionLimits(config.smtp.max_connections, config.smtp.max_connections_per_ip)
        ensure_fd_limit(config.smtp.max_connections)  # before the session processes start
        if config.smtp.processes:
            self._bind_for_session_processes(limits)
        else:
            services = build_session_services(
                config,
                spool=self.spool,
                maillog=self.maillog,
                directory=self.directory,
                users=self.users,
                tls=self.tls,
                auth_guard=AuthGuard(**auth_guard_settings(config)),
                on_queued=on_queued,
            )
            for listener_config in config.listeners:
                listener = Listener(listener_config, services, limits)
                try:
                    await listener.start()
                except OSError as exc:
                    raise startup.BindError(listener_config, exc) from exc
                self.listeners.append(listener)
                self._announce_listener(listener_config, listener.port)
        drop_privileges(config.process, config.data_dir)
        loop = asyncio.get_running_loop()
        if self.worker is not None:
            # Started after the privilege drop: the worker runs as the mail user too.
            self.runner_lock.release()
            try:
                await self.worker.start()
            except OSError as exc:
                raise startup.StartupError(
                    [startup.cannot_run("delivery worker", self.worker.command, exc)]
                ) from exc
            self.announce(f"mailwright: delivery worker pid {self.worker.pid}")
        elif self.runner is not None:
            self._runner_task = loop.create_task(self.runner.run())
        if self.processes is not None:
            # After the privilege drop too; accepting starts once they are ready.
            try:
                await self.processes.start()
            except OSError as exc:
                raise startup.StartupError(
                    [startup.cannot_run("session processes", self.processes.command, exc)]
                ) from exc
            pids = ", ".join(str(pid) for pid in self.processes.pids)
            self.announce(f"mailwright: session processes pids {pids}")
        if self.maillog.buffered:
            interval = config.log.flush_interval
            self._flush_task = loop.create_task(flush_periodically(self.maillog, interval))
        # Last: tests and scripts take this line to mean "fully started".
        self.announce(f"mailwright: data in {config.data_dir.resolve()}")

    def _bind_for_session_processes(self, limits: ConnectionLimits) -> None:
        """``smtp.processes`` > 0: bind here, serve in session processes (net.handover)."""
        config = self.config
        worker, runner = self.worker, self.runner

        def on_queued(queue_id: str) -> None:
            if worker is not None:
                worker.notify_id(queue_id)
            elif runner is not None:
                runner.announce(queue_id)

        def on_lost() -> None:
            if worker is not None:
                worker.wake()
            elif runner is not None:
                runner.kick()

        self.processes = SessionProcesses(
            config,
            limits,
            AuthGuard(**auth_guard_settings(config)),
            on_queued=on_queued,
            on_lost=on_lost,
            announce=self.announce,
        )
        for index, listener_config in enumerate(config.listeners):
            if listener_config.implicit_tls and self.tls is None:
                raise ListenerError(
                    f"listener {listener_config.address}:{listener_config.port} "
                    f"({listener_config.role}) needs TLS, but TLS is disabled"
                )
            handover = HandoverListener(
                index, listener_config, self.processes, limits, self.maillog
            )
            try:
                handover.bind()
            except OSError as exc:
                raise startup.BindError(listener_config, exc) from exc
            self.processes.listeners.append(handover)
            self._announce_listener(listener_config, handover.port)

    def _announce_listener(self, listener_config: ListenerConfig, port: int) -> None:
        self.maillog.listening(listener_config.address, port, listener_config.role)
        self.announce(
            f"mailwright: listening on {listener_config.address}:{port} ({listener_config.role})"
        )
        if listener_config.allow_plaintext_auth:
            self.announce(
                f"mailwright: warning: {listener_config.address}:{port} offers "
                "AUTH without TLS; passwords can be read on the network"
            )

    def reopen_logs(self) -> None:
        """SIGUSR1 (and SIGHUP): every process reopens its mail log (logrotate)."""
        self.maillog.reopen()
        if self.processes is not None:
            self.processes.broadcast(b"o")
        if self.worker is not None:
            self.worker.reopen_log()

    def reload(self) -> None:
        """SIGHUP: reopen the mail log, re-read certificates; on a certificate error
        keep serving the old ones."""
        self.reopen_logs()
        if self.tls is None:
            return
        if self.processes is not None:
            self.processes.broadcast(b"h")  # each session process reloads its own
        try:
            self.tls.reload()
        except TlsError as exc:
            self.announce(f"mailwright: reload failed, keeping old certificates: {exc}")
            log.error("TLS reload failed: %s", exc)
        else:
            self.announce("mailwright: certificates reloaded")

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
        if self.processes is not None:
            for handover in self.processes.listeners:
                handover.stop_accepting()
            await self.processes.stop(self.config.smtp.shutdown_grace)
        await asyncio.gather(
            *(listener.drain(self.config.smtp.shutdown_grace) for listener in self.listeners)
        )
        if self.worker is not None:
            await self.worker.stop()
        if self.runner is not None:
            await self.runner.stop()
        if self._runner_task is not None:
            await asyncio.gather(self._runner_task, return_exceptions=True)
        await self.spool.close()
        if self._flush_task is not None:
            self._flush_task.cancel()
        self.maillog.close()
        self.runner_lock.release()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT, then shut down in stages."""
        loop = asyncio.get_running_loop()
        # The handlers go in before start(): the default action of SIGHUP and SIGUSR1
        # is to terminate, and a logrotate (or a reload) that came between the
        # "listening" lines and the handlers killed the server.  What arrives while
        # starting is carried out once started (_on_signal); SIGTERM then stops at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        # SIGHUP reloads certificates on the loop thread (OpenSSL contexts must not
        # change under a handshake in another thread); sessions are not dropped.
        loop.add_signal_handler(signal.SIGHUP, self._on_signal, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._on_signal, self.reopen_logs)
        try:
            await self.start()
        except BaseException:
            _remove_signal_handlers(loop)
            raise
        try:
            deferred, self._deferred_signals = self._deferred_signals, None
            for action in deferred or ():
                action()
            # Everything built so far (modules, config, tables) lives as long as the
            # process: move it out of the collector's reach, so the collections that
            # per-session garbage triggers stop re-scanning it (gc.freeze docs).
            gc.collect()
            gc.freeze()
            await self._stop.wait()
        finally:
            _remove_signal_handlers(loop)
            self.announce("mailwright: shutting down")
            await self.stop()

    def _on_signal(self, action: Callable[[], None]) -> None:
        """SIGHUP/SIGUSR1: ``action`` now, or once started if still starting."""
        if self._deferred_signals is None:
            action()
        else:
            self._deferred_signals.append(action)


_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for sig in _HANDLED_SIGNALS:
        loop.remove_signal_handler(sig)


def run(config: Config, announce: Callable[[str], None] = print) -> None:
    """Run the server with uvloop when it is installed (DESIGN principle 7)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        asyncio.run(App(config, announce=announce).serve())
    else:
        uvloop.run(App(config, announce=announce).serve())
