"""What a command handler decides: the reply, the reason to log, whether to close.

Handlers return an ``Outcome`` (or an awaitable of one) and write nothing; the session
writes the reply, logs ``reason`` with a refusal and closes after the reply when
``close`` is set (DESIGN principle 5).  ``reason`` is private: it goes to the mail
log, never to the peer (principle 4).

Outcomes are immutable, so the common ones are built once: ``Outcome.of`` keeps one
per reply it has seen (module constants and the few EHLO/HELO replies a server
builds), and a command answered with a fixed reply allocates nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import ClassVar

from mailwright.policy.verdict import Accept, Continue, Disconnect, Reject, TempFail, Verdict
from mailwright.smtp import Reply


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: Reply
    reason: str = ""  # for the mail log with a refusal; never sent
    close: bool = False  # close the connection once the reply is written

    # One outcome per distinct reply without reason or close (see ``of``).  Keyed by
    # the reply's identity: replies are module constants or cached per server, so
    # the set stays small; equal replies built anew would each add an entry.
    _plain: ClassVar[dict[int, tuple[Reply, Outcome]]] = {}

    @staticmethod
    def of(reply: Reply) -> Outcome:
        """The shared outcome of ``reply`` with no reason and no close.  Only for
        replies that live as long as the server (constants, cached EHLO replies)."""
        found = Outcome._plain.get(id(reply))
        if found is not None and found[0] is reply:
            return found[1]
        outcome = Outcome(reply)
        # The reply is kept with its outcome, so its id cannot be reused.
        Outcome._plain[id(reply)] = (reply, outcome)
        return outcome


Answer = Outcome | Awaitable[Outcome]


def verdict_outcome(verdict: Verdict, positive: Outcome) -> Outcome:
    """The outcome of a policy stage's verdict; ``positive`` when it lets the command
    through.  A ``Disconnect`` closes after its reply."""
    match verdict:
        case Continue():
            return positive
        case Accept(reply):
            return positive if reply is None else Outcome(reply)
        case Disconnect(reply, reason):
            return Outcome(reply, reason, close=True)
        case Reject(reply, reason) | TempFail(reply, reason):
            return Outcome(reply, reason)
    raise TypeError(f"not a verdict: {verdict!r}")  # pragma: no cover
