"""TOML configuration, validated at start-up into frozen models.

Every component takes the exact sub-model it needs; nothing looks configuration up
globally.  All errors are collected and reported at once, each naming the file, the
field and what is wrong (``ConfigError``), so an operator fixes a file in one pass.

With no file at all, ``Config.embedded()`` is the working default the issue asks for:
domain ``localhost`` with mailbox ``postmaster``, data in ``./mailwright-data`` and an
inbound listener on 127.0.0.1:2525.
"""

from __future__ import annotations

import ipaddress
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailwright.smtp import limits as smtp_limits

EMBEDDED_DATA_DIR = "./mailwright-data"
EMBEDDED_INBOUND_PORT = 2525


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds one line per error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenerRole(StrEnum):
    """What a listener is for. Roles decide policy (RFC 6409 submission needs AUTH)."""

    INBOUND = "inbound"  # MX, port 25 in production
    SUBMISSION = "submission"  # RFC 6409, port 587
    SUBMISSIONS = "submissions"  # RFC 8314 implicit TLS, port 465


class ListenerConfig(_Frozen):
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = EMBEDDED_INBOUND_PORT
    role: ListenerRole = ListenerRole.INBOUND

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


class SmtpConfig(_Frozen):
    """Protocol limits; each default is the named constant in ``mailwright.smtp.limits``."""

    hostname: str = "localhost"
    max_message_size: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_RECIPIENTS
    max_errors: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_ERRORS
    vrfy: VrfyMode = VrfyMode.AMBIGUOUS
    expn: bool = False
    # Wait this long before the greeting and refuse clients that talk first
    # (Postfix postscreen's pregreet test).  0 checks only what already arrived.
    greeting_delay: Annotated[float, Field(ge=0, le=30)] = 0.0
    command_timeout: Annotated[float, Field(gt=0)] = smtp_limits.COMMAND_TIMEOUT
    data_block_timeout: Annotated[float, Field(gt=0)] = smtp_limits.DATA_BLOCK_TIMEOUT
    session_timeout: Annotated[float, Field(gt=0)] = smtp_limits.SESSION_TIMEOUT
    max_connections: Annotated[int, Field(gt=0)] = smtp_limits.DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: Annotated[int, Field(gt=0)] = (
        smtp_limits.DEFAULT_MAX_CONNECTIONS_PER_IP
    )
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0


class DomainConfig(_Frozen):
    """A local domain: its mailboxes, aliases and optional catch-all.

    ``aliases`` maps a local part to one or more targets; a target is a local part of
    this domain or a full address in another *local* domain (forwarding to remote
    domains arrives with the relay).  ``catch_all`` names the mailbox that receives
    mail for any unknown local part.
    """

    name: str
    mailboxes: list[str] = Field(default_factory=list)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    catch_all: str | None = None

    @field_validator("name")
    @classmethod
    def _lower_domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if not value or len(value) > smtp_limits.MAX_DOMAIN_LENGTH:
            raise ValueError("domain name is empty or longer than 255 octets")
        return value

    @field_validator("mailboxes")
    @classmethod
    def _lower_mailboxes(cls, value: list[str]) -> list[str]:
        out = []
        for box in value:
            if not box or "@" in box or "/" in box or box.startswith("."):
                raise ValueError(f"{box!r} is not a valid mailbox name")
            out.append(box.lower())
        return out

    @field_validator("aliases")
    @classmethod
    def _lower_aliases(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, targets in value.items():
            if not targets:
                raise ValueError(f"alias {name!r} has no targets")
            out[name.lower()] = [t.lower() for t in targets]
        return out


class DeliveryConfig(_Frozen):
    """Local delivery and retry schedule (chasquid/Postfix-like backoff)."""

    recipient_delimiter: str = "+"
    # First retry after this many seconds; each later retry doubles it, capped below.
    retry_initial: Annotated[float, Field(gt=0)] = 60.0
    retry_max: Annotated[float, Field(gt=0)] = 3600.0
    # Postfix's maximal_queue_lifetime default is 5 days.
    max_queue_lifetime: Annotated[float, Field(gt=0)] = 5 * 24 * 3600.0
    concurrency: Annotated[int, Field(gt=0)] = 16

    @field_validator("recipient_delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) > 1 or value in ("@", '"', "\\"):
            raise ValueError("must be empty or a single character other than @ \" \\")
        return value


class LogConfig(_Frozen):
    # Mail log: "-" is standard error, otherwise a file path (relative to data_dir).
    mail_log: str = "-"
    json_format: bool = False  # one JSON object per mail-log line
    debug: bool = False


class Config(_Frozen):
    data_dir: Path = Path(EMBEDDED_DATA_DIR)
    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [ListenerConfig()], alias="listener"
    )
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    domains: list[DomainConfig] = Field(default_factory=list, alias="domain")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check_cross_references(self) -> Self:
        names = [d.name for d in self.domains]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"domain listed twice: {', '.join(sorted(dupes))}")
        ports = [(listener.address, listener.port) for listener in self.listeners]
        if len(set(ports)) != len(ports):
            raise ValueError("two listeners share the same address and port")
        local = {d.name: d for d in self.domains}
        for domain in self.domains:
            boxes = set(domain.mailboxes)
            if domain.catch_all is not None and domain.catch_all.lower() not in boxes:
                raise ValueError(
                    f"domain {domain.name}: catch_all {domain.catch_all!r} is not a mailbox"
                )
            for alias, targets in domain.aliases.items():
                for target in targets:
                    local_part, _, target_domain = target.rpartition("@")
                    if not target_domain or not local_part:
                        local_part, target_domain = target, domain.name
                    if target_domain not in local:
                        raise ValueError(
                            f"domain {domain.name}: alias {alias!r} points to {target!r}, "
                            "which is not in a local domain"
                        )
                    target_boxes = set(local[target_domain].mailboxes)
                    target_aliases = local[target_domain].aliases
                    if local_part not in target_boxes and local_part not in target_aliases:
                        raise ValueError(
                            f"domain {domain.name}: alias {alias!r} points to {target!r}, "
                            "which is neither a mailbox nor an alias"
                        )
        return self

    @classmethod
    def embedded(cls, data_dir: Path | str = EMBEDDED_DATA_DIR) -> Config:
        """The no-config default: a working server for ``postmaster@localhost``."""
        return cls(
            data_dir=Path(data_dir),
            domains=[DomainConfig(name="localhost", mailboxes=["postmaster"])],
        )


def _format_error(err: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location}: {message}"


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError listing every problem."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e) for e in exc.errors()]) from None
    if not config.data_dir.is_absolute() and source not in ("<config>", "<embedded>"):
        # A relative data_dir is taken relative to the config file, as nginx does for
        # its prefix: the server then behaves the same from any working directory.
        base = Path(source).resolve().parent
        config = config.model_copy(update={"data_dir": base / config.data_dir})
    return config


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["file is not valid UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, str(path))
