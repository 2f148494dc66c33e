"""The Received header we prepend to every accepted message (RFC 5321 §4.4).

    Received: from <helo> ([<ip>])
            by <hostname> (mailwright) with <protocol> id <queue id>
            for <recipient>; <date>

``with`` uses the protocol names registered by RFC 3848 (ESMTP, ESMTPS, ESMTPA,
ESMTPSA) and RFC 6531 §3.7.3 (UTF8SMTP...).  ``for`` is given only for a single
recipient, as Postfix does, so a Bcc list is never disclosed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

# RFC 5322 §2.1.1 recommends folding at 78 characters; we fold between clauses.
_FOLD = "\r\n\t"


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    if not esmtp:
        return "SMTP"
    name = "UTF8SMTP" if smtputf8 else "ESMTP"
    if tls:
        name += "S"
    if authenticated:
        name += "A"
    return name


_UNSAFE = str.maketrans("()\\", "???")
# One second's RFC 5322 date, formatted once: every message of that second shares it.
_date_cache: tuple[int, str] = (-1, "")


def _clean(text: str) -> str:
    # The HELO argument comes from the peer: keep it printable and paren-free so it
    # cannot break the header structure or inject a line.
    if text.isprintable():  # the usual case: one C-level pass instead of one per char
        return text.translate(_UNSAFE)[:255]
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)[:255]


def _date(timestamp: float | None) -> str:
    global _date_cache
    second = int(time.time() if timestamp is None else timestamp)
    cached_second, text = _date_cache
    if second != cached_second:
        text = format_datetime(datetime.fromtimestamp(second, UTC))  # "+0000"
        _date_cache = (second, text)
    return text


def received_header(
    *,
    helo: str,
    peer_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    tls_info: str | None = None,
    timestamp: float | None = None,
) -> bytes:
    literal = f"IPv6:{peer_ip}" if ":" in peer_ip else peer_ip
    parts = [f"Received: from {_clean(helo) or 'unknown'} ([{literal}])"]
    by = f"by {hostname} (mailwright) with {protocol}"
    if tls_info:
        by += f" ({_clean(tls_info)})"
    parts.append(f"{by} id {queue_id}")
    if recipient:
        parts.append(f"for <{_clean(recipient)}>;")
    else:
        parts[-1] += ";"
    parts.append(_date(timestamp))  # RFC 5322 date-time
    return (_FOLD.join(parts) + "\r\n").encode("utf-8")
