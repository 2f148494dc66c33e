"""The TLS policy one outbound connection must meet: decided by the relay (transport
table, MTA-STS, DANE — ``delivery``), enforced by the client session (``net.outbound``).

Precedence when deciding (RFC 8461 §2, RFC 7672 §2.2): DANE > MTA-STS enforce >
per-domain configuration > opportunistic.  Whatever applies, a policy above
OPPORTUNISTIC never falls back to plaintext.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class TlsMode(StrEnum):
    NONE = "none"  # never STARTTLS (a transport entry that says so)
    OPPORTUNISTIC = "may"  # STARTTLS when offered, certificate not checked (RFC 7435)
    ENCRYPT = "encrypt"  # STARTTLS required, certificate not checked
    VERIFY = "verify"  # STARTTLS required, certificate valid for one of match_names
    DANE = "dane"  # STARTTLS required, the peer's chain matches a TLSA record (RFC 7672)


# The peer check a policy may carry: called once the handshake is done, with the TLS
# object; returns None when the peer is acceptable, else the reason (for the log and
# the attempt history).  DANE and MTA-STS name matching plug in here.
PeerCheck = Callable[[ssl.SSLObject], str | None]


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    mode: TlsMode
    source: str = "default"  # which rule chose it: "default", "transport", "mta-sts", "dane"
    reason: str = ""  # why, in words, for the delivery log line
    match_names: tuple[str, ...] = ()  # VERIFY: names the certificate must match
    peer_check: PeerCheck | None = None  # extra check after the handshake (DANE, STS)

    @property
    def required(self) -> bool:
        return self.mode not in (TlsMode.NONE, TlsMode.OPPORTUNISTIC)


OPPORTUNISTIC = TlsPolicy(TlsMode.OPPORTUNISTIC, "default", "opportunistic STARTTLS")
