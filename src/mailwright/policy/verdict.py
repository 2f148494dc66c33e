"""The verdict vocabulary of policy hooks (Haraka's CONT/OK/DENY/DENYSOFT/DISCONNECT).

A hook returns ``None`` (= Continue) or one of these; the first non-Continue verdict
ends its stage.  Hooks never write to the wire: the session turns a verdict into the
reply it sends (DESIGN principle 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.smtp import Reply


@dataclass(frozen=True, slots=True)
class Continue:
    """No opinion; ask the next hook."""


@dataclass(frozen=True, slots=True)
class Accept:
    """Accept and stop the stage (e.g. a recipient is local, or relay is allowed)."""

    reply: Reply | None = None  # None: the session's normal positive reply


@dataclass(frozen=True, slots=True)
class Reject:
    """Permanent refusal: ``reply`` is 5xx.  ``reason`` goes to the log only."""

    reply: Reply
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reply.is_permanent:
            raise ValueError("Reject needs a 5xx reply")


@dataclass(frozen=True, slots=True)
class TempFail:
    """Temporary refusal: ``reply`` is 4xx."""

    reply: Reply
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reply.is_transient:
            raise ValueError("TempFail needs a 4xx reply")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Refuse and close: ``reply`` should be 421 or 5xx (RFC 5321 §3.8)."""

    reply: Reply
    reason: str = ""


Verdict = Continue | Accept | Reject | TempFail | Disconnect
CONTINUE = Continue()
