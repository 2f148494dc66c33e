"""``queue show``'s attempt history: per recipient, each attempt in order with the
session that gave its reply (who: host name, address and port; how: TLS version and
cipher, the TLS policy that applied and why; what: the replies that concern that
recipient, each with the command it answered).  The text and the JSON form come from
here, so the CLI only prints (and a later HTTP API returns the same records).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mailwright.queue.admin import attempt_state
from mailwright.spool.model import Attempt, RemoteReply, RemoteSession


def _reply(reply: RemoteReply) -> dict[str, Any]:
    return {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text}


def session_record(session: RemoteSession | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "host": session.host,
        "address": session.address,
        "port": session.port,
        "tls": (
            {"version": session.tls_version, "cipher": session.tls_cipher}
            if session.tls_version
            else None
        ),
        "tls_policy": (
            {"mode": session.tls_mode, "source": session.tls_source, "reason": session.tls_reason}
            if session.tls_mode
            else None
        ),
        "replies": [
            {"stage": r.stage, "command": r.command, "reply": _reply(r.reply)}
            for r in session.replies
        ],
    }


def attempt_record(attempt: Attempt, addresses: Sequence[str]) -> dict[str, Any]:
    """One history row as JSON (``queue show --json``)."""
    position = attempt.position
    return {
        "address": addresses[position] if position < len(addresses) else None,
        "at": attempt.at,
        "state": str(attempt_state(attempt)),
        "reply": _reply(attempt.reply),
        "remote_host": attempt.remote_host,
        "session": session_record(attempt.session),
    }


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def session_lines(session: RemoteSession) -> list[str]:
    """The session of one attempt, one line each: who, TLS, the policy, the replies."""
    tls = f"{session.tls_version} {session.tls_cipher or ''}".rstrip()
    lines = [f"host {session.host} [{session.address}]:{session.port}, {tls or 'no TLS'}"]
    if session.tls_mode:
        why = f": {session.tls_reason}" if session.tls_reason else ""
        lines.append(f"tls policy {session.tls_mode} ({session.tls_source}{why})")
    for r in session.replies:
        said = f"{r.command} -> " if r.command else f"{r.stage}: "
        lines.append(f"{said}{r.reply}")
    return lines


def timeline_lines(history: Sequence[Attempt], addresses: Sequence[str]) -> list[str]:
    """The text of ``queue show``'s History: per recipient (envelope order), its
    attempts oldest first, each with its session indented below it."""
    by_position: dict[int, list[Attempt]] = {}
    for attempt in history:
        by_position.setdefault(attempt.position, []).append(attempt)
    lines: list[str] = []
    for position in sorted(by_position):
        name = addresses[position] if position < len(addresses) else f"#{position}"
        lines.append(f"  {name}")
        for a in by_position[position]:
            where = f"  [{a.remote_host}]" if a.remote_host else ""
            lines.append(f"    {_when(a.at)}  {attempt_state(a)}  {a.reply}{where}")
            if a.session is not None:
                lines += [f"      {line}" for line in session_lines(a.session)]
    return lines
