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
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from mailwright.dns.servers import DEFAULT_ATTEMPTS as DNS_DEFAULT_ATTEMPTS
from mailwright.dns.servers import DEFAULT_TIMEOUT as DNS_DEFAULT_TIMEOUT
from mailwright.dns.servers import DEFAULT_TRUSTED as DNS_DEFAULT_TRUSTED
from mailwright.dns.servers import MAX_ATTEMPTS as DNS_MAX_ATTEMPTS
from mailwright.dns.servers import parse_nameserver
from mailwright.smtp import limits as smtp_limits

EMBEDDED_DATA_DIR = "./mailwright-data"
EMBEDDED_INBOUND_PORT = 2525
# More session processes than this is a typo, not a machine (smtp.processes).
MAX_SESSION_PROCESSES = 256


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds one line per error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _ip_networks(value: list[str]) -> list[str]:
    """Validate a list of CIDR networks; the error names the bad entry."""
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP network (CIDR)") from None
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenerRole(StrEnum):
    """What a listener is for. Roles decide policy (RFC 6409 submission needs AUTH)."""

    INBOUND = "inbound"  # MX, port 25 in production
    SUBMISSION = "submission"  # RFC 6409, port 587
    SUBMISSIONS = "submissions"  # RFC 8314 implicit TLS, port 465


# The unprivileged loopback ports for the embedded default.
EMBEDDED_SUBMISSION_PORT = 2587
EMBEDDED_SUBMISSIONS_PORT = 2465


class ListenerConfig(_Frozen):
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


class SmtpConfig(_Frozen):
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
    # many smtpd processes under its master.  Set it to the number of CPU cores on a
    # busy MX: one Python process uses one core.
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
    # Seconds after arrival when a sender is told its mail is still undelivered (a
    # delay DSN, RFC 3464 "Action: delayed"), once; 0 = never.  4 h as sendmail's
    # Timeout.queuewarn; Postfix's delay_warning_time is the same knob (default off).
    delay_warning_time: Annotated[float, Field(ge=0)] = 4 * 3600.0
    concurrency: Annotated[int, Field(gt=0)] = 16
    # Run the queue runner in its own process (``mailwright.runtime.worker``), as Postfix
    # runs its queue manager and delivery agents apart from smtpd: delivery work then
    # never takes the acceptor's CPU or interpreter lock.  False runs it inside the
    # server process (fewer processes; used by in-process tests).
    worker: bool = True
    # The worker's CPU priority.  idle (Linux SCHED_IDLE): it runs only on CPU time
    # that receiving mail leaves unused, so a burst is acknowledged at full speed and
    # delivered as soon as the burst ends; under CPU saturation that never ends it takes
    # the normal share while mail waits (``runtime.priority``).  false: a normal process
    # at nice ``worker_nice`` (0-19), which always gets its fair share.
    worker_idle: bool = True
    worker_nice: Annotated[int, Field(ge=0, le=19)] = 10

    @field_validator("recipient_delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) > 1 or value in ("@", '"', "\\"):
            raise ValueError('must be empty or a single character other than @ " \\')
        return value


class LogConfig(_Frozen):
    # Mail log: "-" is standard error, otherwise a file path (relative to data_dir).
    mail_log: str = "-"
    json_format: bool = False  # one JSON object per mail-log line
    debug: bool = False
    # Seconds between mail-log flushes; 0 writes every line at once.  Batching keeps
    # log writes off the per-message path (they were 10% of it under load).
    flush_interval: Annotated[float, Field(ge=0, le=10)] = 0.2


class DnsConfig(_Frozen):
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
        return _ip_networks(value)


class CertificateConfig(_Frozen):
    """One certificate: ``cert`` is the PEM chain (leaf first), ``key`` its PEM private key.

    Relative paths are taken relative to the config file's directory (``parse_config``),
    like ``data_dir``; files are read by ``mailwright.net.tls.TlsManager`` at start-up and
    on reload, so a missing file is reported there, with its path.
    """

    cert: Path
    key: Path

    @model_validator(mode="before")
    @classmethod
    def _both_files(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("cert", "key"):
                if not data.get(name):
                    raise ValueError(
                        f"{name} is missing: each certificate needs cert (the PEM "
                        "certificate chain file) and key (the PEM private key file)"
                    )
        return data

    def resolved(self, base: Path) -> CertificateConfig:
        return CertificateConfig(cert=base / self.cert, key=base / self.key)


class TlsConfig(_Frozen):
    """TLS for STARTTLS (RFC 3207) and implicit TLS (RFC 8314).

    ``certificates`` are chosen by SNI; the first is the default for clients that send
    no (or an unknown) server name.  With none configured and ``self_signed`` on, a
    self-signed certificate for ``smtp.hostname`` is generated in ``data_dir/tls`` on
    first start.  With none and ``self_signed`` off, TLS is disabled (``enabled``).
    ``min_version`` defaults to TLS 1.2 (RFC 8996 deprecates 1.0/1.1; RFC 8314 §4.1).
    """

    certificates: list[CertificateConfig] = Field(default_factory=list)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    self_signed: bool = True

    @field_validator("certificates")
    @classmethod
    def _no_duplicates(cls, value: list[CertificateConfig]) -> list[CertificateConfig]:
        seen = set()
        for cert in value:
            if cert.cert in seen:
                raise ValueError(f"certificate {cert.cert} is listed twice")
            seen.add(cert.cert)
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.certificates) or self.self_signed

    def resolved(self, base: Path) -> TlsConfig:
        """A copy with relative certificate paths made relative to ``base``."""
        certs = [c.resolved(base) for c in self.certificates]
        return self.model_copy(update={"certificates": certs})


class RelayConfig(_Frozen):
    """Who may relay besides authenticated users (Postfix ``mynetworks``).

    Empty by default: not even loopback is trusted, so a local process cannot use the
    server as an open relay by accident (Postfix's ``mynetworks_style = host`` trusts
    127.0.0.1; list it here to get that behaviour).
    """

    trusted_networks: list[str] = Field(default_factory=list)

    @field_validator("trusted_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return _ip_networks(value)


class TlsPolicyConfig(_Frozen):
    """One ``[[tls_policy]]`` entry: the TLS an outbound delivery to ``domain`` must
    meet, as Postfix's smtp_tls_policy_maps: ``none`` (never STARTTLS), ``may``
    (opportunistic), ``encrypt`` (TLS required), ``verify`` (TLS with a certificate
    valid for the MX host name).  DANE and an enforced MTA-STS policy take precedence
    (``mailwright.delivery.tlspolicy.decide``)."""

    domain: str
    mode: Literal["none", "may", "encrypt", "verify"]

    @field_validator("domain")
    @classmethod
    def _lower_domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if not value or len(value) > smtp_limits.MAX_DOMAIN_LENGTH:
            raise ValueError("domain name is empty or longer than 255 octets")
        return value


class AbuseConfig(_Frozen):
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


class ProcessConfig(_Frozen):
    """Privilege drop: bind ports as root, then run as this user and group."""

    user: str | None = None
    group: str | None = None


# -- outbound: the relay (delivery.relay) -------------------------------------------

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


class NextHopKind(StrEnum):
    SMTP = "smtp"
    LMTP = "lmtp"  # RFC 2033: a mailbox store (Dovecot)
    LOCAL = "local"  # this host's Maildir agent


class NextHop(_Frozen):
    """Where a route leads.  Postfix's syntax: ``[host]`` means "this host, no MX
    lookup"; a bare host name is looked up as a mail domain (its MX records)."""

    kind: NextHopKind
    host: str = ""  # "" for local and for LMTP over a UNIX socket
    port: int | None = None  # None: the route's default ([outbound] port, LMTP 24)
    mx_lookup: bool = False
    unix_path: str = ""  # LMTP over a UNIX-domain socket

    def __str__(self) -> str:
        if self.kind is NextHopKind.LOCAL:
            return "local"
        if self.unix_path:
            return f"{self.kind}:unix:{self.unix_path}"
        host = self.host if self.mx_lookup else f"[{self.host}]"
        return f"{self.kind}:{host}" + (f":{self.port}" if self.port is not None else "")


def parse_host_port(spec: str) -> tuple[str, int | None, bool]:
    """``host``, ``host:port``, ``[host]``, ``[host]:port`` (IPv6 inside brackets) ->
    (host, port or None, MX lookup wanted).  ``ValueError`` names what is wrong."""
    spec = spec.strip()
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        mx_lookup = False
        if not bracket:
            raise ValueError(f"{spec!r}: missing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{spec!r}: expected [host]:port")
        port_text = rest[1:] if rest else None
    else:
        if spec.count(":") > 1:
            raise ValueError(f"{spec!r}: write an IPv6 address in brackets, e.g. [::1]:25")
        host, colon, port_text_ = spec.partition(":")
        port_text = port_text_ if colon else None
        mx_lookup = True
    host = host.strip().rstrip(".").lower()
    if not host:
        raise ValueError(f"{spec!r}: no host name")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"{spec!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    try:  # an address is never looked up as a mail domain
        ipaddress.ip_address(host)
        mx_lookup = False
    except ValueError:
        pass
    return host, port, mx_lookup


def parse_nexthop(spec: str) -> NextHop:
    """A transport's ``nexthop``: ``smtp:[host]:port``, ``smtp:host`` (MX lookup of
    host), ``lmtp:host:port``, ``lmtp:unix:/path``, ``local``."""
    kind_text, colon, rest = spec.strip().partition(":")
    try:
        kind = NextHopKind(kind_text.lower())
    except ValueError:
        raise ValueError(
            f"{spec!r}: expected smtp:HOST, smtp:[HOST]:PORT, lmtp:HOST:PORT, "
            "lmtp:unix:/PATH or local"
        ) from None
    if kind is NextHopKind.LOCAL:
        if colon:
            raise ValueError(f"{spec!r}: local takes no host")
        return NextHop(kind=kind)
    if kind is NextHopKind.LMTP and rest.startswith("unix:"):
        path = rest.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"{spec!r}: the socket path must be absolute")
        return NextHop(kind=kind, unix_path=path)
    host, port, mx_lookup = parse_host_port(rest)
    if kind is NextHopKind.LMTP:
        mx_lookup = False  # RFC 2033 §4: LMTP is never used with MX records
    return NextHop(kind=kind, host=host, port=port, mx_lookup=mx_lookup)


class TransportTls(StrEnum):
    """A route's TLS setting (Postfix smtp_tls_security_level names)."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    VERIFY = "verify"


class _Credentials(_Frozen):
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


class Config(_Frozen):
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
        # all errors at once, each naming its field); see _CrossReferenceErrors.
        problems = cross_reference_problems(self.domains, self.listeners, self.tls)
        if problems:
            raise _CrossReferenceErrors(problems)
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


class _CrossReferenceErrors(ValueError):
    """Problems between fields, each ``(field location, message)``.  pydantic keeps the
    exception in the error's ``ctx``, so ``_format_errors`` can give one line each."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        self.problems = problems


def _is_cross_reference(err: Any) -> bool:
    return isinstance((err.get("ctx") or {}).get("error"), _CrossReferenceErrors)


def _format_errors(err: Any) -> list[str]:
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _CrossReferenceErrors):
        return [f"{loc}: {msg}" for loc, msg in cause.problems]
    return [_format_error(err)]


# pydantic's messages in plain words, by error type: an operator reads "must be a
# whole number", not "Input is not a valid path for <class 'pathlib.Path'>".
_PLAIN_MESSAGES = {
    "path_type": "must be a path (a string)",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "missing": "is required",
    "extra_forbidden": "unknown field",
}
# Values short enough to repeat in an error line.
_MAX_SHOWN_INPUT = 60


def _format_error(err: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in err["loc"]) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "list_type" and isinstance(value, dict) and isinstance(err["loc"][-1], str):
        # TOML's [x] is one table; [[x]] is an array of tables.  The classic slip.
        name = location
        return f"{location}: write [[{name}]] (an array of tables), not [{name}]"
    message = _PLAIN_MESSAGES.get(kind)
    if message is None:
        message = err["msg"].removeprefix("Value error, ")
        if message.startswith("Input should be "):
            message = "must be " + message.removeprefix("Input should be ")
        elif kind not in ("value_error", "assertion_error"):
            # Leave pydantic's own words only where they are already plain.
            message = message.replace("Input", "value")
    if kind not in ("missing", "extra_forbidden", "value_error") and _shown(value):
        message += f", not {value!r}"
    return f"{location}: {message}"


def _shown(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= _MAX_SHOWN_INPUT


def _partial_cross_references(data: dict[str, Any]) -> list[str]:
    """Cross-reference problems among the sections that are valid on their own, for
    when other fields are not (the model validator only runs on a valid document).

    An invalid section takes no part: domain checks involve only the domains, listener
    checks only the listeners and TLS, so nothing is guessed about a broken section.
    """
    sections: dict[str, Any] = {}
    for key, adapter in _SECTION_ADAPTERS.items():
        try:
            sections[key] = adapter.validate_python(data.get(key, _SECTION_DEFAULTS[key]()))
        except ValidationError:
            sections[key] = None
    domains = sections["domain"] or []
    tls = sections["tls"]
    listeners = sections["listener"] if tls is not None and sections["listener"] else []
    problems = cross_reference_problems(domains, listeners, tls or TlsConfig())
    return [f"{loc}: {msg}" for loc, msg in problems]


_SECTION_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "domain": TypeAdapter(list[DomainConfig]),
    "listener": TypeAdapter(list[ListenerConfig]),
    "tls": TypeAdapter(TlsConfig),
}
_SECTION_DEFAULTS: dict[str, Any] = {
    "domain": list,
    "listener": lambda: [{}],
    "tls": dict,
}


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError listing every problem."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [line for e in errors for line in _format_errors(e)]
        if not any(_is_cross_reference(e) for e in errors):  # field errors stopped it
            problems += _partial_cross_references(data)
        raise ConfigError(source, problems) from None
    if not config.data_dir.is_absolute() and source not in ("<config>", "<embedded>"):
        # A relative data_dir is taken relative to the config file, as nginx does for
        # its prefix: the server then behaves the same from any working directory.
        base = Path(source).resolve().parent
        config = config.model_copy(update={"data_dir": base / config.data_dir})
    if config.tls.certificates and source not in ("<config>", "<embedded>"):
        # Certificate paths too, for the same reason (absolute paths are kept as given).
        tls = config.tls.resolved(Path(source).resolve().parent)
        config = config.model_copy(update={"tls": tls})
    if source not in ("<config>", "<embedded>"):
        config = _resolve_password_files(config, Path(source).resolve().parent)
    return config


def _resolve_password_files(config: Config, base: Path) -> Config:
    """Relative ``password_file`` paths are relative to the config file, as above."""

    def resolved(item: Any) -> Any:
        if item.password_file is None or item.password_file.is_absolute():
            return item
        return item.model_copy(update={"password_file": base / item.password_file})

    return config.model_copy(
        update={
            "outbound": resolved(config.outbound),
            "transports": [resolved(t) for t in config.transports],
        }
    )


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
        raise ValueError(_format_error(exc.errors()[0]).split(": ", 1)[1]) from None


def with_overrides(
    config: Config,
    *,
    listeners: list[ListenerConfig] | None = None,
    data_dir: Path | None = None,
) -> Config:
    """``config`` with its listeners and/or data folder replaced (``serve --listen``
    and ``--data-dir``), validated again as a whole (two listeners on one port, a
    submissions listener without TLS); ``ConfigError`` from "command line"."""
    doc = config.model_dump()
    if listeners:
        doc["listeners"] = [listener.model_dump() for listener in listeners]
    if data_dir is not None:
        doc["data_dir"] = data_dir
    try:
        return Config.model_validate(doc)
    except ValidationError as exc:
        problems = [line for e in exc.errors() for line in _format_errors(e)]
        raise ConfigError("command line", problems) from None
