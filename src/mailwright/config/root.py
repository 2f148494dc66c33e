"""The whole document: ``Config``, its embedded default and the checks between sections.

``Config.embedded()`` is the no-config default: domain ``localhost`` with mailbox
``postmaster``, data in ``./mailwright-data`` and listeners on the unprivileged
loopback ports.  ``cross_reference_problems`` finds what no single section can
(a domain listed twice, two listeners on one port, an alias to nowhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from mailwright.config.access import AbuseConfig, RelayConfig
from mailwright.config.base import Frozen
from mailwright.config.domains import DeliveryConfig, DomainConfig
from mailwright.config.errors import CrossReferenceErrors
from mailwright.config.host import DnsConfig, LogConfig, ProcessConfig
from mailwright.config.listeners import (
    EMBEDDED_INBOUND_PORT,
    EMBEDDED_SUBMISSION_PORT,
    EMBEDDED_SUBMISSIONS_PORT,
    ListenerConfig,
    ListenerRole,
    SmtpConfig,
)
from mailwright.config.outbound import OutboundConfig, TransportConfig
from mailwright.config.tls import TlsConfig, TlsPolicyConfig

EMBEDDED_DATA_DIR = "./mailwright-data"


class Config(Frozen):
    data_dir: Path = Path(EMBEDDED_DATA_DIR)
    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [ListenerConfig()], alias="listener"
    )
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    domains: list[DomainConfig] = Field(default_factory=list, alias="domain")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    dns: DnsConfig = Field(default_factory=DnsConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    relay: RelayConfig = Field(default_factory=RelayConfig)
    abuse: AbuseConfig = Field(default_factory=AbuseConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    transports: list[TransportConfig] = Field(default_factory=list, alias="transport")
    tls_policies: list[TlsPolicyConfig] = Field(default_factory=list, alias="tls_policy")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("tls_policies")
    @classmethod
    def _one_tls_policy_per_domain(cls, value: list[TlsPolicyConfig]) -> list[TlsPolicyConfig]:
        seen = set()
        for entry in value:
            if entry.domain in seen:
                raise ValueError(f"domain {entry.domain} has more than one tls_policy")
            seen.add(entry.domain)
        return value

    @model_validator(mode="after")
    def _check_cross_references(self) -> Self:
        # Collect every problem, each with the field it is about (the module promise:
        # all errors at once, each naming its field); see CrossReferenceErrors.
        problems = cross_reference_problems(self.domains, self.listeners, self.tls)
        if problems:
            raise CrossReferenceErrors(problems)
        return self

    @classmethod
    def embedded(cls, data_dir: Path | str = EMBEDDED_DATA_DIR) -> Config:
        """The no-config default: a working server for ``postmaster@localhost``."""
        return cls(
            data_dir=Path(data_dir),
            listeners=[
                ListenerConfig(port=EMBEDDED_INBOUND_PORT, role=ListenerRole.INBOUND),
                ListenerConfig(port=EMBEDDED_SUBMISSION_PORT, role=ListenerRole.SUBMISSION),
                ListenerConfig(port=EMBEDDED_SUBMISSIONS_PORT, role=ListenerRole.SUBMISSIONS),
            ],
            domains=[DomainConfig(name="localhost", mailboxes=["postmaster"])],
        )


def cross_reference_problems(
    domains: list[DomainConfig], listeners: list[ListenerConfig], tls: TlsConfig
) -> list[tuple[str, str]]:
    """Problems between fields, each ``(field location, message)``.

    A function, not only the model validator: ``parse_config`` also runs it on the
    sections that are valid on their own when other fields are not, so an operator
    sees a bad ``catch_all`` in the same pass as a bad port.
    """
    problems: list[tuple[str, str]] = []
    first_index: dict[str, int] = {}
    for i, domain in enumerate(domains):
        if domain.name in first_index:
            also = f"domain.{first_index[domain.name]}"
            problems.append(
                (f"domain.{i}.name", f"domain listed twice: {domain.name} (also {also})")
            )
        else:
            first_index[domain.name] = i
    bound: dict[tuple[str, int], int] = {}
    for i, listener in enumerate(listeners):
        key = (listener.address, listener.port)
        if listener.port != 0 and key in bound:  # port 0: each gets its own free port
            problems.append(
                (
                    f"listener.{i}",
                    f"two listeners share the same address and port "
                    f"(listener.{bound[key]} and listener.{i})",
                )
            )
        bound.setdefault(key, i)
        if listener.implicit_tls and not tls.enabled:
            problems.append(
                (
                    f"listener.{i}.role",
                    "submissions (implicit TLS) needs TLS: configure [tls] certificates "
                    "or leave tls.self_signed on",
                )
            )
    local = {d.name: d for d in domains}
    for i, domain in enumerate(domains):
        boxes = set(domain.mailboxes)
        if domain.catch_all is not None and domain.catch_all.lower() not in boxes:
            problems.append(
                (
                    f"domain.{i}.catch_all",
                    f"domain {domain.name}: catch_all {domain.catch_all!r} is not a mailbox",
                )
            )
        for alias, targets in domain.aliases.items():
            for target in targets:
                local_part, _, target_domain = target.rpartition("@")
                if not target_domain or not local_part:
                    local_part, target_domain = target, domain.name
                where = f"domain.{i}.aliases.{alias}"
                if target_domain not in local:
                    problems.append(
                        (
                            where,
                            f"domain {domain.name}: alias {alias!r} points to {target!r}, "
                            "which is not in a local domain",
                        )
                    )
                    continue
                target_boxes = set(local[target_domain].mailboxes)
                target_aliases = local[target_domain].aliases
                if local_part not in target_boxes and local_part not in target_aliases:
                    problems.append(
                        (
                            where,
                            f"domain {domain.name}: alias {alias!r} points to {target!r}, "
                            "which is neither a mailbox nor an alias",
                        )
                    )
    return problems
