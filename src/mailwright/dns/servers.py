"""Which servers the resolver asks, and how long: what ``[dns]`` is validated against.

Kept apart from the resolver (and free of dnspython) so that reading the configuration
does not load the DNS library: every CLI command reads the configuration.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS_PORT = 53  # RFC 1035 §4.2
DEFAULT_TIMEOUT = 5.0  # seconds per server; resolv.conf(5) "timeout:n" default (RES_TIMEOUT)
DEFAULT_ATTEMPTS = 2  # rounds over the servers; resolv.conf(5) "attempts:n" default
MAX_ATTEMPTS = 5  # resolv.conf(5): "attempts:n ... capped to 5"
# Whose AD bit is believed by default: a resolver on this host, reached over a path
# nobody else can tamper with (RFC 4035 §4.9.3).
DEFAULT_TRUSTED: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"IP"``, ``"IP:port"``, ``"IPv6"`` or ``"[IPv6]:port"`` -> ``(ip, port)``;
    ``ValueError`` naming the entry otherwise.  Names are refused: the resolver cannot
    resolve its own servers' names."""
    entry = text.strip()
    host, port_text = entry, ""
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6] or [IPv6]:port")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise ValueError(f"nameserver {text!r}: empty port")
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"nameserver {text!r}: not an IP address (IP, IP:port or [IPv6]:port)"
        ) from None
    if entry.startswith("[") and address.version != 6:
        raise ValueError(f"nameserver {text!r}: brackets are for IPv6 addresses")
    port = DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"nameserver {text!r}: port must be 1-65535")
        port = int(port_text)
    return str(address), port
