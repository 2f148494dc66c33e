"""The main process: builds its pieces with ``runtime.compose``, binds, runs, stops.

Shutdown is staged (uvicorn's pattern, issue #2):

1. stop accepting connections;
2. 421 4.3.2 to idle sessions, let sessions inside DATA/BDAT finish within
   ``smtp.shutdown_grace`` seconds, then cancel the rest (nothing 250'd is lost:
   an acknowledged message is already durable in the spool);
3. stop the queue runner (in-flight deliveries finish or are retried after restart);
4. close the spool and the logs.

The queue runner runs in a delivery worker process by default (``delivery.worker``,
``runtime.worker``), built by the same ``build_queue_runner`` as the in-process
one; step 3 then closes the worker's pipe and waits for it.

With ``smtp.processes`` > 0 the sessions run in that many session processes
(``runtime.sessions``, built by the same ``build_session_services``); this
process binds, accepts, counts and hands connections over (``net.handover``,
``runtime.sessionpool``), and
step 2 becomes "tell every session process to stop, and wait for it".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable

from mailwright.accounts.users import UserStore
from mailwright.config import Config, ListenerConfig
from mailwright.net.handover import HandoverListener
from mailwright.net.listener import ConnectionLimits, Listener, ListenerError
from mailwright.net.tls import TlsError
from mailwright.policy.authguard import AuthGuard
from mailwright.queue.runner import QueueRunner
from mailwright.runtime import control, startup
from mailwright.runtime.compose import (
    Foundation,
    auth_guard_settings,
    build_directory,
    build_local_agent,
    build_queue_runner,
    build_session_services,
    load_tls,
    run_event_loop,
)
from mailwright.runtime.fdlimit import ensure_fd_limit
from mailwright.runtime.priority import allow_normal_priority
from mailwright.runtime.privileges import drop_privileges
from mailwright.runtime.sessionpool import SessionProcesses
from mailwright.runtime.workerlink import DeliveryWorker

log = logging.getLogger(__name__)


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
        # The spool, the logs and the runner lock (runtime.compose), opened by start().
        self.base = Foundation(config, recover=True, runner_lock=True)
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
        await self.base.close()

    async def _start(self) -> None:
        config = self.config
        # The checks check-config makes too, before anything is created or bound (and
        # before the debug log: their problems are reported once, by the caller).
        findings = startup.check(config)
        for warning in findings.warnings:
            self.announce(f"mailwright: warning: {warning}")
        if findings.problems:
            raise startup.StartupError(findings.problems)
        # Recovery and queue running exclude every other runner (see runnerlock); with
        # a worker the lock passes to it once the spool is recovered.
        self.maillog = await self.base.open()
        self.spool = self.base.spool
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
        if self.worker is not None and config.delivery.worker_idle:
            # Before the drop: the worker may need to leave SCHED_IDLE (runtime.priority).
            refused = allow_normal_priority()
            if refused is not None:
                log.debug("delivery worker priority: %s", refused)
        drop_privileges(config.process, config.data_dir)
        loop = asyncio.get_running_loop()
        if self.worker is not None:
            # Started after the privilege drop: the worker runs as the mail user too.
            self.base.release_lock()
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
        self.base.start_flusher()
        # Last: tests and scripts take this line to mean "fully started".
        self.announce(f"mailwright: data in {config.data_dir.resolve()}")

    def _bind_for_session_processes(self, limits: ConnectionLimits) -> None:
        """``smtp.processes`` > 0: bind here, serve in session processes (runtime.sessionpool)."""
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
            self.processes.broadcast(control.ReopenLog())
        if self.worker is not None:
            self.worker.reopen_log()

    def reload(self) -> None:
        """SIGHUP: reopen the mail log, re-read certificates; on a certificate error
        keep serving the old ones."""
        self.reopen_logs()
        if self.tls is None:
            return
        if self.processes is not None:
            self.processes.broadcast(control.ReloadTls())  # each reloads its own
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
        await self.base.close()

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
    """Run the server (``compose.run_event_loop``: uvloop when installed)."""
    run_event_loop(App(config, announce=announce).serve())
