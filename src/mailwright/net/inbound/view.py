"""The narrow, typed view of a session that command handlers and the AUTH exchange
see: never the session object, so they cannot write a reply, touch the transport or
flip the loop's state (DESIGN principle 5); what they decide comes back as an
``Outcome``.

What they read: the policy context (whose facts they also keep: HELO name, AUTH
login), the protocol core's state, the shared services, the listener's
configuration, our hostname and whether STARTTLS can be offered now.  The one thing
they set on the core is the set of extensions EHLO advertised, so the parser accepts
exactly those (RFC 1869 §4).
"""

from __future__ import annotations

from typing import Protocol

from mailwright.config import ListenerConfig
from mailwright.net.services import SessionServices
from mailwright.policy.context import SessionContext
from mailwright.smtp import Transaction


class CoreState(Protocol):
    """What handlers read of the session's ``smtp.ServerConnection``."""

    # Set by the EHLO handler: what was advertised is what the parser accepts.
    extensions: frozenset[str]

    @property
    def transaction(self) -> Transaction: ...
    @property
    def esmtp(self) -> bool: ...
    @property
    def tls_active(self) -> bool: ...
    @property
    def authenticated(self) -> bool: ...


class SessionView:
    """Built once per session by the session (``connection_made``)."""

    __slots__ = ("core", "ctx", "hostname", "listener", "services")

    def __init__(
        self,
        ctx: SessionContext,
        core: CoreState,
        services: SessionServices,
        listener: ListenerConfig,
    ) -> None:
        self.ctx = ctx
        self.core = core
        self.services = services
        self.listener = listener
        self.hostname: str = services.config.smtp.hostname

    @property
    def starttls_available(self) -> bool:
        """RFC 3207 §4: offered only with a certificate, not yet under TLS, and never
        on the implicit-TLS role."""
        return (
            self.services.tls is not None
            and not self.core.tls_active
            and not self.listener.implicit_tls
        )
