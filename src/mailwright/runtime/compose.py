"""The composition root: every process kind is built here, from the validated Config.

Nothing else constructs services; components receive exactly what they need
(DESIGN principle 6).  The main process (``runtime.server``), a session process
(``runtime.sessions``) and the delivery worker (``runtime.worker``) all build their
pieces with these functions, so an in-process session and one in a session process,
or the in-process queue runner and the worker's, cannot be wired differently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserStore
from mailwright.config import Config
from mailwright.delivery.base import DeliveryResult
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.router import Router
from mailwright.net.services import SessionServices
from mailwright.net.tls import TlsManager
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
from mailwright.queue.runner import FRESH_HOLD, QueueRunner
from mailwright.spool.embedded import SPOOL_DIR, EmbeddedSpool
from mailwright.spool.model import SpooledMessage


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
        if kind == "delivered":
            maillog.delivered(message.queue_id, address, result.reply)
        elif kind == "deferred":
            maillog.deferred(message.queue_id, address, result.reply, message.next_attempt)
        elif kind == "bounced":
            maillog.bounced(message.queue_id, address, result.reply)
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
    runner = QueueRunner(
        spool,
        Router(directory, local_agent),
        config.delivery,
        on_event=delivery_logger(maillog),
        reporting_mta=config.smtp.hostname,
        # A fresh message waits to be announced: its accepted line is then logged.
        fresh_hold=FRESH_HOLD,
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
