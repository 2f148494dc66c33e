"""``build_remote_agent``: the relay agent and its route table from the validated
config; the composition root's one call.  Password files are read here, at
start-up, so a missing or unreadable one is a configuration error naming its field,
not a deferral of every message to that smarthost."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from mailwright.config import Config, ConfigError, TransportConfig
from mailwright.delivery.relay.agent import RelayAgent, RelaySettings
from mailwright.delivery.relay.interfaces import interface_addresses
from mailwright.delivery.relay.routes import RouteTable
from mailwright.delivery.tlspolicy.decide import TlsPolicyDecider
from mailwright.dns.types import Resolver
from mailwright.net.outbound.model import Credentials


def read_password(path: Path, where: str, problems: list[str]) -> str:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        problems.append(f"{where}.password_file: cannot read {path}: {why}")
        return ""
    # The first line: editors add a final newline, which is not part of the secret.
    password = text.splitlines()[0] if text else ""
    if not password:
        problems.append(f"{where}.password_file: {path} is empty")
    return password


def credentials(config: Config, source: str = "<config>") -> dict[str, Credentials]:
    """AUTH credentials by destination (``str(Destination)``)."""
    found: dict[str, Credentials] = {}
    problems: list[str] = []
    entries: list[tuple[str, str | None, Path | None, str]] = []
    outbound = config.outbound
    if outbound.relay_nexthop is not None:
        hop = str(outbound.relay_nexthop)
        entries.append(("outbound", outbound.username, outbound.password_file, hop))
    for i, entry in enumerate(config.transports):
        entries.append(_transport_entry(i, entry))
    for where, username, path, key in entries:
        if username is None or path is None:
            continue
        password = read_password(path, where, problems)
        found.setdefault(key, Credentials(username, password))
    if problems:
        raise ConfigError(source, problems)
    return found


def _transport_entry(i: int, entry: TransportConfig) -> tuple[str, str | None, Path | None, str]:
    return (f"transport.{i}", entry.username, entry.password_file, str(entry.nexthop))


def own_endpoints(config: Config) -> frozenset[tuple[str, int]]:
    """Our listeners' (address, port): an MX that is one of them is a loop.  An
    unspecified address (0.0.0.0, ::) binds every interface: loopback stands for it."""
    endpoints = set()
    for listener in config.listeners:
        address = listener.address
        if ipaddress.ip_address(address).is_unspecified:
            address = "::1" if ":" in address else "127.0.0.1"
        endpoints.add((address, listener.port))
    return frozenset(endpoints)


def build_remote_agent(
    config: Config,
    resolver: Resolver,
    *,
    decider: TlsPolicyDecider | None = None,
    source: str = "<config>",
) -> RelayAgent:
    outbound = config.outbound
    settings = RelaySettings(
        helo_name=outbound.helo_name or config.smtp.hostname,
        port=outbound.port,
        max_mx_addresses=outbound.max_mx_addresses,
        max_mx_sessions=outbound.max_mx_sessions,
        allow_private_addresses=outbound.allow_private_addresses,
        own_endpoints=own_endpoints(config),
        own_addresses=interface_addresses(),  # read once, at start
        max_connections=outbound.max_connections,
        max_connections_per_destination=outbound.max_connections_per_destination,
        connection_reuse_time=outbound.connection_reuse_time,
        ca_file=outbound.ca_file,
    )
    return RelayAgent(
        settings,
        RouteTable(config.transports, outbound),
        resolver,
        credentials=credentials(config, source),
        decider=decider,
    )
