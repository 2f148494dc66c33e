"""TOML configuration, validated at start-up into frozen models.

Every component takes the exact sub-model it needs; nothing looks configuration up
globally.  All errors are collected and reported at once, each naming the file, the
field and what is wrong (``ConfigError``), so an operator fixes a file in one pass.

With no file at all, ``Config.embedded()`` is the working default the issue asks for:
domain ``localhost`` with mailbox ``postmaster``, data in ``./mailwright-data`` and an
inbound listener on 127.0.0.1:2525.

This package is the public face of the configuration: import from
``mailwright.config``, never from its modules.  They import one way —
``errors``, ``base`` <- the sections <- ``root`` <- ``loading``:

- ``errors``: ``ConfigError`` and how pydantic's errors are worded for an operator;
- ``base``: what every model shares (frozen, no unknown fields), small validators;
- sections, one per concern: ``listeners`` (``[[listener]]``, ``[smtp]``),
  ``domains`` (``[[domain]]``, ``[delivery]``), ``tls`` (``[tls]``,
  ``[[tls_policy]]``), ``nexthop`` (Postfix next-hop syntax), ``outbound``
  (``[outbound]``, ``[[transport]]``), ``access`` (``[relay]``, ``[abuse]``),
  ``host`` (``[dns]``, ``[log]``, ``[process]``);
- ``root``: the whole document (``Config``) and the checks between sections;
- ``loading``: file and command line to a ``Config``.
"""

from mailwright.config.access import AbuseConfig, RelayConfig
from mailwright.config.domains import DeliveryConfig, DomainConfig
from mailwright.config.errors import ConfigError
from mailwright.config.host import DnsConfig, LogConfig, ProcessConfig
from mailwright.config.listeners import (
    EMBEDDED_INBOUND_PORT,
    EMBEDDED_SUBMISSION_PORT,
    EMBEDDED_SUBMISSIONS_PORT,
    MAX_SESSION_PROCESSES,
    ListenerConfig,
    ListenerRole,
    SmtpConfig,
    VrfyMode,
    parse_listen,
)
from mailwright.config.loading import load_config, parse_config, with_overrides
from mailwright.config.nexthop import NextHop, NextHopKind, parse_host_port, parse_nexthop
from mailwright.config.outbound import (
    DEFAULT_CONNECTION_REUSE_TIME,
    DEFAULT_DESTINATION_CONNECTIONS,
    DEFAULT_MX_ADDRESSES,
    DEFAULT_MX_SESSIONS,
    DEFAULT_OUTBOUND_CONNECTIONS,
    SMTP_PORT,
    OutboundConfig,
    TransportConfig,
    TransportTls,
)
from mailwright.config.root import EMBEDDED_DATA_DIR, Config, cross_reference_problems
from mailwright.config.tls import CertificateConfig, TlsConfig, TlsPolicyConfig

__all__ = [
    "DEFAULT_CONNECTION_REUSE_TIME",
    "DEFAULT_DESTINATION_CONNECTIONS",
    "DEFAULT_MX_ADDRESSES",
    "DEFAULT_MX_SESSIONS",
    "DEFAULT_OUTBOUND_CONNECTIONS",
    "EMBEDDED_DATA_DIR",
    "EMBEDDED_INBOUND_PORT",
    "EMBEDDED_SUBMISSIONS_PORT",
    "EMBEDDED_SUBMISSION_PORT",
    "MAX_SESSION_PROCESSES",
    "SMTP_PORT",
    "AbuseConfig",
    "CertificateConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "DnsConfig",
    "DomainConfig",
    "ListenerConfig",
    "ListenerRole",
    "LogConfig",
    "NextHop",
    "NextHopKind",
    "OutboundConfig",
    "ProcessConfig",
    "RelayConfig",
    "SmtpConfig",
    "TlsConfig",
    "TlsPolicyConfig",
    "TransportConfig",
    "TransportTls",
    "VrfyMode",
    "cross_reference_problems",
    "load_config",
    "parse_config",
    "parse_host_port",
    "parse_listen",
    "parse_nexthop",
    "with_overrides",
]
