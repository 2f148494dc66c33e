"""The attempt history's ``session`` column: a ``RemoteSession`` as one JSON object.

One column instead of a table per reply: the history is written once per attempt and
read whole (``queue show``), never queried by its parts.  The keys are short and
stable; a value this module did not write (hand-edited, truncated) reads as None, so
one bad row never hides the rest of a message's history.
"""

from __future__ import annotations

import json
from typing import Any

from mailwright.spool.model import RemoteReply, RemoteSession, SessionReply


def dump(session: RemoteSession | None) -> str | None:
    if session is None:
        return None
    return json.dumps(
        {
            "host": session.host,
            "address": session.address,
            "port": session.port,
            "tls_version": session.tls_version,
            "tls_cipher": session.tls_cipher,
            "tls_mode": session.tls_mode,
            "tls_source": session.tls_source,
            "tls_reason": session.tls_reason,
            "replies": [
                [r.stage, r.command, r.reply.code, r.reply.enhanced, r.reply.text]
                for r in session.replies
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def load(text: object) -> RemoteSession | None:
    if not isinstance(text, str):
        return None
    try:
        data: Any = json.loads(text)
        return RemoteSession(
            host=str(data["host"]),
            address=str(data["address"]),
            port=int(data["port"]),
            tls_version=_opt(data.get("tls_version")),
            tls_cipher=_opt(data.get("tls_cipher")),
            tls_mode=_opt(data.get("tls_mode")),
            tls_source=_opt(data.get("tls_source")),
            tls_reason=str(data.get("tls_reason") or ""),
            replies=tuple(
                SessionReply(str(stage), str(command), RemoteReply(int(code), str(enh), str(txt)))
                for stage, command, code, enh, txt in data.get("replies", ())
            ),
        )
    except (ValueError, TypeError, KeyError):
        return None


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
