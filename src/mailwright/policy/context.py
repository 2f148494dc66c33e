"""What hooks may know about a session: read-mostly facts plus a notes dict."""

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
    # Free-form facts hooks share within a session (Haraka's connection.notes).
    notes: dict[str, Any] = field(default_factory=dict)
