"""What ``mailwright session`` needs before it connects: the target, the address to
dial (through ``--dns`` when given, never the system resolver then), the history file.
Errors are ``ValueError`` with the one line the command prints."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from mailwright.dns.resolver import DnsResolver
from mailwright.dns.types import DnsError

DEFAULT_PORT = 25  # RFC 5321 §4.5.4.1's port; submission (587) is asked for by name
DNS_PORT = 53
HISTORY_FILE = "session_history"


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_dns(text: str) -> tuple[str, int]:
    """``--dns IP[:PORT]``: the nameserver to ask instead of the system's."""
    host, port = parse_host_port(text, DNS_PORT)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--dns {text}: an IP address is needed") from None
    return host, port


def history_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/mailwright/session_history``, by default under
    ``~/.local/state`` (the XDG Base Directory specification's state home)."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and Path(state).is_absolute() else Path(env.get("HOME", "~"))
    if not (state and Path(state).is_absolute()):
        base = base.expanduser() / ".local" / "state"
    return base / "mailwright" / HISTORY_FILE


def prepare_history(path: Path) -> None:
    """Create the history's folder (private: it holds what was typed)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"history file {path}: {exc.strerror or exc}") from None


async def resolve(host: str, nameserver: tuple[str, int] | None) -> str:
    """The address to connect to: ``host`` itself when it is an address or no
    nameserver was named (the system resolver then does it at connect time); else
    its first A record, or AAAA when it has none."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if nameserver is None:
        return host
    resolver = DnsResolver([nameserver])
    try:
        for lookup in (resolver.a, resolver.aaaa):
            answer = await lookup(host)
            if answer.records:
                return answer.records[0]
            if not answer.exists:
                raise ValueError(f"{host}: no such domain (NXDOMAIN from {nameserver[0]})")
    except DnsError as exc:
        raise ValueError(f"{host}: DNS lookup failed: {exc}") from None
    raise ValueError(f"{host}: no A or AAAA record")
