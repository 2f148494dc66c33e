"""What every inbound session shares, built once by the composition root (``runtime.compose``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserStore
from mailwright.config import Config
from mailwright.net.authqueue import PasswordCheckQueue
from mailwright.net.tls import TlsManager
from mailwright.obs.maillog import MailLog
from mailwright.policy.authguard import AuthGuard
from mailwright.policy.pipeline import Pipeline
from mailwright.smtp import DEFAULT_EXTENSIONS, Reply, ServerOptions, ehlo_reply
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
    # Turns for AUTH password checks: per address, fair, bounded (net.authqueue).
    password_checks: PasswordCheckQueue = field(init=False)

    # Built once from config (it was rebuilt on every connection and every EHLO).
    server_options: ServerOptions = field(init=False)
    helo_reply: Reply = field(init=False)  # the 250 to HELO: the same for every session
    _ehlo_replies: dict[tuple[frozenset[str], tuple[str, ...]], Reply] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        smtp = self.config.smtp
        self.server_options = ServerOptions(
            max_message_size=smtp.max_message_size,
            max_recipients=smtp.max_recipients,
            extensions=DEFAULT_EXTENSIONS,
        )
        self.helo_reply = Reply.of(250, "", smtp.hostname)
        self.password_checks = PasswordCheckQueue(suspect=self.auth_guard.has_failures)

    def ehlo_reply(self, extensions: frozenset[str], mechanisms: tuple[str, ...]) -> Reply:
        """The 250 to EHLO for this set of extensions; a handful of distinct sets exist
        (with or without STARTTLS and AUTH), so each is built once."""
        key = (extensions, mechanisms)
        reply = self._ehlo_replies.get(key)
        if reply is None:
            reply = ehlo_reply(
                self.config.smtp.hostname,
                extensions,
                max_size=self.config.smtp.max_message_size,
                auth_mechanisms=mechanisms,
            )
            self._ehlo_replies[key] = reply
        return reply
