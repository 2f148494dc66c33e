"""What every inbound session shares, built once by the composition root (app.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserStore
from mailwright.config import Config
from mailwright.net.tls import TlsManager
from mailwright.obs.maillog import MailLog
from mailwright.policy.authguard import AuthGuard
from mailwright.policy.pipeline import Pipeline
from mailwright.smtp import DEFAULT_EXTENSIONS, ServerOptions
from mailwright.spool.model import SpooledMessage
from mailwright.spool.store import SpoolStore


@dataclass(slots=True)
class SessionServices:
    config: Config
    pipeline: Pipeline
    spool: SpoolStore
    directory: LocalDirectory
    maillog: MailLog
    auth_guard: AuthGuard
    tls: TlsManager | None = None  # None: TLS disabled (no certificate)
    users: UserStore | None = None  # None: AUTH disabled
    # Called after each 250 with the stored message and its body when the spool kept
    # it in memory (else None): the queue runner starts delivering at once, without
    # reading back what was just written.
    on_queued: Callable[[SpooledMessage, bytes | None], None] = lambda message, body: None

    @property
    def server_options(self) -> ServerOptions:
        smtp = self.config.smtp
        return ServerOptions(
            max_message_size=smtp.max_message_size,
            max_recipients=smtp.max_recipients,
            extensions=DEFAULT_EXTENSIONS,
        )
