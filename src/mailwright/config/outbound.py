"""Mail to other hosts (``delivery.relay``): ``[outbound]`` and ``[[transport]]``.

``[outbound]`` holds the relayhost and the relay's limits, each default mirroring the
Postfix smtp/qmgr parameter or the RFC named at its constant; ``[[transport]]`` is
Postfix's transport_maps.  Credentials for AUTH name a password file, never the
password itself.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from mailwright.config.base import Frozen
from mailwright.config.nexthop import NextHop, NextHopKind, parse_host_port, parse_nexthop
from mailwright.smtp import limits as smtp_limits

# The port MX hosts are contacted on (RFC 5321 §4.5.4: the SMTP service, port 25).
SMTP_PORT = 25
# Postfix smtp_mx_address_limit (5): at most this many MX addresses per attempt.
DEFAULT_MX_ADDRESSES = 5
# Postfix smtp_mx_session_limit (2): at most this many SMTP sessions (greeting
# received) per attempt; a refused connection does not count.
DEFAULT_MX_SESSIONS = 2
# Postfix default_process_limit (100): connections out at once, all destinations.
DEFAULT_OUTBOUND_CONNECTIONS = 100
# Postfix default_destination_concurrency_limit (20): at once to one destination.
DEFAULT_DESTINATION_CONNECTIONS = 20
# Postfix smtp_connection_reuse_time_limit (300s): an idle session is kept for reuse
# by the next message to the same destination at most this long after it opened.
DEFAULT_CONNECTION_REUSE_TIME = 300.0


class TransportTls(StrEnum):
    """A route's TLS setting (Postfix smtp_tls_security_level names)."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    VERIFY = "verify"


class _Credentials(Frozen):
    # The password is never inline: it lives in a file only the server reads.
    username: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together (AUTH needs both)")
        return self


class TransportConfig(_Credentials):
    """One ``[[transport]]`` entry (Postfix transport_maps): ``domain`` is exact, or
    ``.example.com`` for every subdomain of example.com."""

    domain: str
    nexthop: NextHop
    tls: TransportTls | None = None  # None: the default policy (opportunistic)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if value in ("", ".") or len(value) > smtp_limits.MAX_DOMAIN_LENGTH or "@" in value:
            raise ValueError(f"{value!r} is not a domain (or .domain for its subdomains)")
        return value

    @field_validator("nexthop", mode="before")
    @classmethod
    def _nexthop(cls, value: Any) -> Any:
        return parse_nexthop(value) if isinstance(value, str) else value

    def matches(self, domain: str) -> bool:
        if self.domain.startswith("."):
            return domain.endswith(self.domain)
        return domain == self.domain


class OutboundConfig(_Credentials):
    """Mail to other hosts (``delivery.relay``).  ``relayhost`` sends everything not
    local and not in a transport through one smarthost (Postfix relayhost syntax);
    ``username``/``password_file``/``tls`` belong to the relayhost."""

    port: Annotated[int, Field(gt=0, le=65535)] = SMTP_PORT
    # Loopback, private and link-local MX addresses are a mail loop (5.4.6) unless
    # this is on (tests, and a relay inside a private network).
    allow_private_addresses: bool = False
    helo_name: str | None = None  # None: smtp.hostname
    relayhost: str | None = None
    tls: TransportTls | None = None
    max_mx_addresses: Annotated[int, Field(gt=0, le=100)] = DEFAULT_MX_ADDRESSES
    max_mx_sessions: Annotated[int, Field(gt=0, le=100)] = DEFAULT_MX_SESSIONS
    max_connections: Annotated[int, Field(gt=0)] = DEFAULT_OUTBOUND_CONNECTIONS
    max_connections_per_destination: Annotated[int, Field(gt=0)] = DEFAULT_DESTINATION_CONNECTIONS
    connection_reuse_time: Annotated[float, Field(ge=0)] = DEFAULT_CONNECTION_REUSE_TIME
    ca_file: Path | None = None  # extra trust anchors for VERIFY (tests, private CAs)

    @field_validator("relayhost")
    @classmethod
    def _relayhost(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @property
    def relay_nexthop(self) -> NextHop | None:
        if self.relayhost is None:
            return None
        host, port, mx_lookup = parse_host_port(self.relayhost)
        return NextHop(kind=NextHopKind.SMTP, host=host, port=port, mx_lookup=mx_lookup)
