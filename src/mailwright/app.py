"""The composition root: builds every component from the validated Config and runs them.

Nothing else constructs services; components receive exactly what they need
(DESIGN principle 6).  Shutdown is staged (uvicorn's pattern, issue #2):

1. stop accepting connections;
2. 421 4.3.2 to idle sessions, let sessions inside DATA/BDAT finish within
   ``smtp.shutdown_grace`` seconds, then cancel the rest (nothing 250'd is lost:
   an acknowledged message is already durable in the spool);
3. stop the queue runner (in-flight deliveries finish or are retried after restart);
4. close the spool and the logs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from mailwright.accounts.directory import LocalDirectory
from mailwright.config import Config
from mailwright.delivery.base import DeliveryResult
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.router import Router
from mailwright.net.listener import ConnectionLimits, Listener
from mailwright.net.services import SessionServices
from mailwright.obs.debuglog import setup_debug_log
from mailwright.obs.maillog import MailLog
from mailwright.policy.builtin.recipients import LocalRecipients
from mailwright.policy.pipeline import Pipeline, Stage
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import SpooledMessage
from mailwright.spool.scheduler import QueueRunner

log = logging.getLogger(__name__)


def build_pipeline(config: Config, directory: LocalDirectory) -> Pipeline:
    """Hooks in a fixed, explicit order.  Relay hooks (AUTH, trusted networks) join
    the rcpt stage with the secure-sessions work; until then only local recipients
    are accepted and everything else gets 550 5.7.1 from the pipeline's default."""
    pipeline = Pipeline()
    local = LocalRecipients(directory)
    pipeline.register(Stage.RCPT, local.name, local.on_rcpt)
    return pipeline


class App:
    def __init__(self, config: Config, *, announce: Callable[[str], None] = print) -> None:
        self.config = config
        self.announce = announce
        self.listeners: list[Listener] = []
        self._stop = asyncio.Event()
        self._runner_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = self.config
        setup_debug_log(config.log)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.maillog = MailLog.from_config(config.log, config.data_dir)
        self.spool = EmbeddedSpool(config.data_dir)
        await self.spool.open()
        self.directory = LocalDirectory(config.domains, config.delivery.recipient_delimiter)
        local_agent = LocalDeliveryAgent(
            self.directory, mail_root(config.data_dir), config.smtp.hostname
        )
        await asyncio.to_thread(local_agent.ensure_all)
        self.runner = QueueRunner(
            self.spool,
            Router(self.directory, local_agent),
            config.delivery,
            on_event=self._log_delivery,
            reporting_mta=config.smtp.hostname,
        )
        services = SessionServices(
            config=config,
            pipeline=build_pipeline(config, self.directory),
            spool=self.spool,
            directory=self.directory,
            maillog=self.maillog,
            on_queued=lambda queue_id: self.runner.kick(),
        )
        limits = ConnectionLimits(config.smtp.max_connections, config.smtp.max_connections_per_ip)
        for listener_config in config.listeners:
            listener = Listener(listener_config, services, limits)
            await listener.start()
            self.listeners.append(listener)
            self.maillog.listening(listener_config.address, listener.port, listener_config.role)
            self.announce(
                f"mailwright: listening on {listener_config.address}:{listener.port} "
                f"({listener_config.role})"
            )
        self.announce(f"mailwright: data in {config.data_dir.resolve()}")
        self._runner_task = asyncio.get_running_loop().create_task(self.runner.run())

    def _log_delivery(
        self, kind: str, message: SpooledMessage, address: str, result: DeliveryResult
    ) -> None:
        if kind == "delivered":
            self.maillog.delivered(message.queue_id, address, result.reply)
        elif kind == "deferred":
            self.maillog.deferred(message.queue_id, address, result.reply, message.next_attempt)
        elif kind == "bounced":
            self.maillog.bounced(message.queue_id, address, result.reply)
        elif kind == "expired":
            self.maillog.expired(message.queue_id, address)

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
        await asyncio.gather(
            *(listener.drain(self.config.smtp.shutdown_grace) for listener in self.listeners)
        )
        await self.runner.stop()
        if self._runner_task is not None:
            await asyncio.gather(self._runner_task, return_exceptions=True)
        await self.spool.close()
        self.maillog.close()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT, then shut down in stages."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.announce("mailwright: shutting down")
            await self.stop()


def run(config: Config, announce: Callable[[str], None] = print) -> None:
    """Run the server with uvloop when it is installed (DESIGN principle 7)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        asyncio.run(App(config, announce=announce).serve())
    else:
        uvloop.run(App(config, announce=announce).serve())
