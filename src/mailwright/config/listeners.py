"""Where the server listens and how it speaks SMTP: ``[[listener]]`` and ``[smtp]``.

Listener roles follow the ports of RFC 6409 (submission, 587) and RFC 8314 (implicit
TLS, 465); the session limits default to the named constants of
``mailwright.smtp.limits`` (RFC 5321 §4.5.3 and the Postfix smtpd parameters they
mirror).  ``parse_listen`` reads ``serve --listen ROLE=ADDR:PORT``.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationError, field_validator

from mailwright.config.base import Frozen
from mailwright.config.errors import format_error
from mailwright.smtp import limits as smtp_limits

# The unprivileged loopback ports for the embedded default.
EMBEDDED_INBOUND_PORT = 2525
EMBEDDED_SUBMISSION_PORT = 2587
EMBEDDED_SUBMISSIONS_PORT = 2465
# More session processes than this is a typo, not a machine (smtp.processes).
MAX_SESSION_PROCESSES = 256


class ListenerRole(StrEnum):
    """What a listener is for. Roles decide policy (RFC 6409 submission needs AUTH)."""

    INBOUND = "inbound"  # MX, port 25 in production
    SUBMISSION = "submission"  # RFC 6409, port 587
    SUBMISSIONS = "submissions"  # RFC 8314 implicit TLS, port 465


class ListenerConfig(Frozen):
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = EMBEDDED_INBOUND_PORT
    role: ListenerRole = ListenerRole.INBOUND
    # Offer AUTH before TLS on this listener.  Off by default: RFC 8314 §3 and RFC 4954
    # §4 want credentials only over TLS; turning it on prints a warning at start-up.
    allow_plaintext_auth: bool = False
    # None = the role's default (required on submission roles, RFC 6409 §4.3).
    require_auth: bool | None = None
    # None = the role's default (on for submission roles).
    sender_login_match: bool | None = None
    # Also require every From: header address to belong to the authenticated user
    # (553 5.7.1 at the end of DATA).  Off by default: mailing-list software and
    # "send as" delegation legitimately differ.
    from_header_match: bool = False

    @property
    def implicit_tls(self) -> bool:
        """RFC 8314 §3: the submissions role speaks TLS from the first byte."""
        return self.role is ListenerRole.SUBMISSIONS

    @property
    def is_submission(self) -> bool:
        return self.role is not ListenerRole.INBOUND

    @property
    def auth_required(self) -> bool:
        return self.is_submission if self.require_auth is None else self.require_auth

    @property
    def sender_login_matching(self) -> bool:
        return self.is_submission if self.sender_login_match is None else self.sender_login_match

    @field_validator("address")
    @classmethod
    def _address_is_ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value


class VrfyMode(StrEnum):
    """RFC 5321 §3.5.3: 252 ("cannot verify, will accept") is the safe default."""

    AMBIGUOUS = "ambiguous"  # always 252, never reveals which mailboxes exist
    ON = "on"  # 250 for a known local address, 550 5.1.1 otherwise
    OFF = "off"  # 502 5.5.1


class SmtpConfig(Frozen):
    """Protocol limits; each default is the named constant in ``mailwright.smtp.limits``."""

    hostname: str = "localhost"
    max_message_size: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_RECIPIENTS
    max_errors: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_ERRORS
    vrfy: VrfyMode = VrfyMode.AMBIGUOUS
    expn: bool = False
    # Wait this long before the greeting and refuse clients that talk first
    # (Postfix postscreen's pregreet test).  0 greets at once and serves a client that
    # talks first, as Postfix's smtpd does (``printf ... | nc``).
    greeting_delay: Annotated[float, Field(ge=0, le=30)] = 0.0
    command_timeout: Annotated[float, Field(gt=0)] = smtp_limits.COMMAND_TIMEOUT
    data_block_timeout: Annotated[float, Field(gt=0)] = smtp_limits.DATA_BLOCK_TIMEOUT
    session_timeout: Annotated[float, Field(gt=0)] = smtp_limits.SESSION_TIMEOUT
    # Before MAIL (no transaction yet) the wait for a command is this, at most
    # command_timeout.
    idle_timeout: Annotated[float, Field(gt=0)] = smtp_limits.IDLE_TIMEOUT
    # Octets per second a DATA/BDAT body must keep up (Postfix smtpd_min_data_rate).
    min_data_rate: Annotated[float, Field(gt=0)] = smtp_limits.MIN_DATA_RATE
    # Every timeout while the connections near max_connections (Postfix stress mode).
    stress_timeout: Annotated[float, Field(gt=0)] = smtp_limits.STRESS_TIMEOUT
    max_connections: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_CONNECTIONS_PER_IP
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0
    # Session processes (``mailwright.runtime.sessionpool``): 0 runs every session in the
    # main process; N > 0 has the main process accept connections, enforce the
    # connection caps and hand each connection to one of N processes, as Postfix runs
    # many smtpd processes under its master.  On a busy MX set it to the number of CPU
    # cores minus one: one Python process uses one core, and the delivery worker needs
    # one too (README "Processes" has the measurement).
    processes: Annotated[int, Field(ge=0, le=MAX_SESSION_PROCESSES)] = 0
    # Postfix queue_minfree, in octets: MAIL is refused (452 4.3.1) while less than
    # this plus the declared SIZE= is free on the spool file system, DATA and BDAT
    # while less than this is.  Unset: 1.5 x max_message_size, the room Postfix's
    # smtpd asks for by default.  0 checks only the declared SIZE.
    min_free_space: Annotated[int, Field(ge=0)] | None = None

    @property
    def free_space_floor(self) -> int:
        """``min_free_space``, or its default: 1.5 x ``max_message_size``."""
        if self.min_free_space is not None:
            return self.min_free_space
        return self.max_message_size * 3 // 2


def parse_listen(spec: str) -> ListenerConfig:
    """A listener from ``ROLE=ADDR:PORT`` (``serve --listen``); IPv6 as ``[::1]:2525``.

    Raises ``ValueError`` with a one-line message naming what is wrong.
    """
    role_text, eq, endpoint = spec.partition("=")
    if not eq:
        raise ValueError("expected ROLE=ADDR:PORT, e.g. inbound=127.0.0.1:2525")
    try:
        role = ListenerRole(role_text.strip().lower())
    except ValueError:
        roles = ", ".join(r.value for r in ListenerRole)
        raise ValueError(f"unknown role {role_text!r} (one of {roles})") from None
    if endpoint.startswith("["):
        address, bracket, rest = endpoint[1:].partition("]")
        colon, port_text = rest[:1], rest[1:]
        if not bracket or colon != ":":
            raise ValueError("expected [IPV6]:PORT, e.g. [::1]:2525")
    else:
        address, colon, port_text = endpoint.rpartition(":")
        if not colon:
            raise ValueError("expected ADDR:PORT after the role, e.g. 127.0.0.1:2525")
        if ":" in address:
            raise ValueError("write an IPv6 address in brackets, e.g. [::1]:2525")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    try:
        return ListenerConfig(address=address, port=int(port_text), role=role)
    except ValidationError as exc:
        raise ValueError(format_error(exc.errors()[0]).split(": ", 1)[1]) from None
