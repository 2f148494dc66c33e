"""Which next hop a recipient domain's mail goes to: the transport table, then the
relayhost, then the domain's own MX hosts (Postfix: transport_maps, relayhost,
DNS).  A ``Destination`` is also the unit of grouping (one transaction per
destination and message), of connection reuse and of per-destination concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailwright.config import (
    NextHop,
    NextHopKind,
    OutboundConfig,
    TransportConfig,
    TransportTls,
)

# RFC 2033 names no port for LMTP; 24 is the one IANA lists and Dovecot, Cyrus and
# Postfix's lmtp client use.
LMTP_PORT = 24


@dataclass(frozen=True, slots=True)
class Destination:
    """Where mail for some recipients goes, and with which settings."""

    nexthop: NextHop  # SMTP with mx_lookup: the MX hosts of ``nexthop.host``
    source: str  # which rule chose it: "mx", "relayhost", "transport .example.com"
    tls: TransportTls | None = None  # None: the default policy
    username: str | None = None
    password_file: Path | None = None

    @property
    def by_mx_of_recipient_domain(self) -> bool:
        """Plain MX routing of the recipient's domain: where the private-address rule
        applies (an operator's explicit next hop may well be private)."""
        return self.source == "mx"

    @property
    def lmtp(self) -> bool:
        return self.nexthop.kind is NextHopKind.LMTP

    def __str__(self) -> str:
        return str(self.nexthop)


def recipient_domain(address: str) -> str | None:
    """The domain of an address, lower case; None for the bare "Postmaster"."""
    _local, at, domain = address.rpartition("@")
    return domain.lower() if at else None


class RouteTable:
    """``[[transport]]`` entries in order (the first match wins, an exact domain
    before a ``.suffix`` one when both match), then ``[outbound] relayhost``."""

    def __init__(self, transports: list[TransportConfig], outbound: OutboundConfig) -> None:
        self.exact = {t.domain: t for t in reversed(transports) if not t.domain.startswith(".")}
        self.suffixes = [t for t in transports if t.domain.startswith(".")]
        relay = outbound.relay_nexthop
        self.relayhost = (
            Destination(
                relay,
                "relayhost",
                outbound.tls,
                outbound.username,
                outbound.password_file,
            )
            if relay is not None
            else None
        )

    def transport(self, domain: str) -> TransportConfig | None:
        found = self.exact.get(domain)
        if found is not None:
            return found
        # Postfix matches the longest parent first (a.b.example before .example).
        matching = [t for t in self.suffixes if t.matches(domain)]
        return max(matching, key=lambda t: len(t.domain), default=None)

    def kind(self, domain: str) -> NextHopKind | None:
        """The route a transport entry sets for ``domain``, None when none does."""
        entry = self.transport(domain)
        return entry.nexthop.kind if entry is not None else None

    def destination(self, domain: str) -> Destination:
        """The next hop of mail for ``domain`` (not local)."""
        entry = self.transport(domain)
        if entry is not None:
            return Destination(
                entry.nexthop,
                f"transport {entry.domain}",
                entry.tls,
                entry.username,
                entry.password_file,
            )
        if self.relayhost is not None:
            return self.relayhost
        return Destination(NextHop(kind=NextHopKind.SMTP, host=domain, mx_lookup=True), "mx")
