"""What the server takes from the host it runs on: ``[dns]``, ``[log]`` and ``[process]``.

The recursive resolvers (resolv.conf(5) defaults, which resolvers' DNSSEC AD bit is
believed, RFC 4035 §4.9.3), where the mail log goes, and the Unix user and group the
server drops to after binding its ports.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from mailwright.config.base import Frozen, ip_networks
from mailwright.dns.servers import DEFAULT_ATTEMPTS as DNS_DEFAULT_ATTEMPTS
from mailwright.dns.servers import DEFAULT_TIMEOUT as DNS_DEFAULT_TIMEOUT
from mailwright.dns.servers import DEFAULT_TRUSTED as DNS_DEFAULT_TRUSTED
from mailwright.dns.servers import MAX_ATTEMPTS as DNS_MAX_ATTEMPTS
from mailwright.dns.servers import parse_nameserver


class DnsConfig(Frozen):
    """Where names are looked up (``[dns]``): MX routing, MTA-STS, DANE and sender
    authentication all ask one resolver (``mailwright.dns``)."""

    # Recursive servers as "IP", "IP:port" or "[IPv6]:port", asked in order; empty
    # (the default): the nameserver lines of the system's /etc/resolv.conf.
    nameservers: list[str] = Field(default_factory=list)
    # Seconds to wait for each server; resolv.conf(5)'s default "timeout:5".
    timeout: Annotated[float, Field(gt=0)] = DNS_DEFAULT_TIMEOUT
    # Rounds over the servers that did not answer; resolv.conf(5)'s "attempts:2", at
    # most its cap of 5.
    attempts: Annotated[int, Field(ge=1, le=DNS_MAX_ATTEMPTS)] = DNS_DEFAULT_ATTEMPTS
    # Resolvers whose DNSSEC validation (the AD bit) is believed — DANE needs it
    # (RFC 7672 §2.1).  Only a resolver reached over a path nobody can tamper with
    # qualifies (RFC 4035 §4.9.3), so by default only one on this host.
    trusted_resolvers: list[str] = Field(
        default_factory=lambda: [str(net) for net in DNS_DEFAULT_TRUSTED]
    )

    @field_validator("nameservers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_nameserver(entry)  # its ValueError names the entry
        return value

    @field_validator("trusted_resolvers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return ip_networks(value)


class LogConfig(Frozen):
    # Mail log: "-" is standard error, otherwise a file path (relative to data_dir).
    mail_log: str = "-"
    json_format: bool = False  # one JSON object per mail-log line
    debug: bool = False
    # Seconds between mail-log flushes; 0 writes every line at once.  Batching keeps
    # log writes off the per-message path (they were 10% of it under load).
    flush_interval: Annotated[float, Field(ge=0, le=10)] = 0.2


class ProcessConfig(Frozen):
    """Privilege drop: bind ports as root, then run as this user and group."""

    user: str | None = None
    group: str | None = None
