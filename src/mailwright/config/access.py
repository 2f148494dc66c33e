"""Who may use the server and how much: ``[relay]`` and ``[abuse]``.

``[relay]`` is Postfix's mynetworks (clients that may relay without AUTH);
``[abuse]`` holds the rate limits (Postfix anvil), the AUTH brute-force lockout and
the error tarpit (smtpd_soft_error_limit, smtpd_error_sleep_time).  The policy hooks
and the inbound session enforce them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from mailwright.config.base import Frozen, ip_networks


class RelayConfig(Frozen):
    """Who may relay besides authenticated users (Postfix ``mynetworks``).

    Empty by default: not even loopback is trusted, so a local process cannot use the
    server as an open relay by accident (Postfix's ``mynetworks_style = host`` trusts
    127.0.0.1; list it here to get that behaviour).
    """

    trusted_networks: list[str] = Field(default_factory=list)

    @field_validator("trusted_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return ip_networks(value)


class AbuseConfig(Frozen):
    """Abuse controls.  A rate of 0 turns that limit off (Postfix's anvil defaults)."""

    # Per client IP (unauthenticated sessions): messages and recipients per minute.
    ip_messages_per_minute: Annotated[float, Field(ge=0)] = 0
    ip_recipients_per_minute: Annotated[float, Field(ge=0)] = 0
    # Per authenticated user: a compromised account is the usual spam source.
    user_messages_per_minute: Annotated[float, Field(ge=0)] = 120
    user_recipients_per_minute: Annotated[float, Field(ge=0)] = 1200
    # Bursts allowed above the steady rate (token bucket size).
    burst_messages: Annotated[float, Field(gt=0)] = 60
    burst_recipients: Annotated[float, Field(gt=0)] = 600
    # AUTH brute force: delay per failure doubles from base to max; N failures within
    # the window ban the IP for ban_time seconds.
    auth_max_failures: Annotated[int, Field(gt=0)] = 5
    auth_window: Annotated[float, Field(gt=0)] = 600
    auth_ban_time: Annotated[float, Field(ge=0)] = 900
    auth_base_delay: Annotated[float, Field(ge=0)] = 1.0
    auth_max_delay: Annotated[float, Field(ge=0)] = 8.0
    # Tarpit: after this many errors in a session, each further error reply is
    # delayed by tarpit_delay * (errors - tarpit_after), capped (Postfix
    # smtpd_soft_error_limit and smtpd_error_sleep_time).
    tarpit_after: Annotated[int, Field(ge=0)] = 3
    tarpit_delay: Annotated[float, Field(ge=0)] = 1.0
    tarpit_max_delay: Annotated[float, Field(ge=0)] = 10.0
