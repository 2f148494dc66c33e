"""The TLS policy for one connection from the route's configuration.

Precedence (net.outbound.tlspolicy): DANE > MTA-STS enforce > per-destination
configuration > opportunistic.  The first two come from ``delivery.tlspolicy`` for
mail routed by MX; this module is the configuration part: a transport's or the
relayhost's ``tls`` (Postfix smtp_tls_security_level names), else the default.
"""

from __future__ import annotations

from mailwright.config import TransportTls
from mailwright.delivery.relay.routes import Destination
from mailwright.net.outbound.tlspolicy import OPPORTUNISTIC, TlsMode, TlsPolicy

_MODES = {
    TransportTls.NONE: TlsMode.NONE,
    TransportTls.MAY: TlsMode.OPPORTUNISTIC,
    TransportTls.ENCRYPT: TlsMode.ENCRYPT,
    TransportTls.VERIFY: TlsMode.VERIFY,
}


def configured_policy(destination: Destination, host: str) -> TlsPolicy:
    """What the route's configuration asks of a connection to ``host``."""
    if destination.tls is None:
        if destination.lmtp:
            # Postfix's lmtp_tls_security_level is empty (no TLS): an LMTP store is a
            # local socket or a host on a trusted link, and Dovecot offers no
            # STARTTLS on LMTP by default.
            return TlsPolicy(TlsMode.NONE, "default", "LMTP: no TLS unless configured")
        return OPPORTUNISTIC
    source = "relayhost" if destination.source == "relayhost" else "transport"
    reason = f"tls = {destination.tls.value} ({destination.source})"
    mode = _MODES[destination.tls]
    names = (host,) if mode is TlsMode.VERIFY else ()
    return TlsPolicy(mode, source, reason, match_names=names)
