"""What hooks may know about a session: read-mostly facts plus a notes dict.

The listener's policy (AUTH required, sender-login matching) is carried as typed,
required fields, never as ``notes`` keys: a misspelt or dropped key read with
``notes.get`` is falsy, so a check keyed on it would fail *open* (AUTH-before-MAIL
off on port 587).  A missing field fails at construction instead.  ``notes`` is left
for hooks' own scratch data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailwright.config import ListenerRole


@dataclass(slots=True)
class SessionContext:
    session_id: str
    peer_ip: str
    peer_port: int
    role: ListenerRole
    local_ip: str = ""  # the address the client connected to (ours), "" if unknown
    helo: str | None = None
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is on
    auth_user: str | None = None
    # The listener's policy (config.ListenerConfig.auth_required,
    # .sender_login_matching and .from_header_match), keyword-only and required: see
    # the module docstring.
    require_auth: bool = field(kw_only=True)
    sender_login_match: bool = field(kw_only=True)
    from_header_match: bool = field(kw_only=True)
    # Hooks' own scratch data, shared within a session (Haraka's connection.notes);
    # never the listener's policy (the typed fields above).
    notes: dict[str, Any] = field(default_factory=dict)
