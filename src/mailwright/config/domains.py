"""The mail this host keeps: local domains (``[[domain]]``) and delivery (``[delivery]``).

A domain lists its mailboxes, aliases and catch-all; ``[delivery]`` holds the
recipient delimiter, the retry schedule (Postfix maximal_queue_lifetime,
delay_warning_time) and how the delivery worker runs.  Whether aliases point at real
mailboxes is checked with the whole document (``mailwright.config.root``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from mailwright.config.base import Frozen, domain_name


class DomainConfig(Frozen):
    """A local domain: its mailboxes, aliases and optional catch-all.

    ``aliases`` maps a local part to one or more targets; a target is a local part of
    this domain or a full address in another *local* domain (forwarding to remote
    domains arrives with the relay).  ``catch_all`` names the mailbox that receives
    mail for any unknown local part.
    """

    name: str
    mailboxes: list[str] = Field(default_factory=list)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    catch_all: str | None = None

    @field_validator("name")
    @classmethod
    def _lower_domain(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("mailboxes")
    @classmethod
    def _lower_mailboxes(cls, value: list[str]) -> list[str]:
        out = []
        for box in value:
            if not box or "@" in box or "/" in box or box.startswith("."):
                raise ValueError(f"{box!r} is not a valid mailbox name")
            out.append(box.lower())
        return out

    @field_validator("aliases")
    @classmethod
    def _lower_aliases(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, targets in value.items():
            if not targets:
                raise ValueError(f"alias {name!r} has no targets")
            out[name.lower()] = [t.lower() for t in targets]
        return out


class DeliveryConfig(Frozen):
    """Local delivery and retry schedule (chasquid/Postfix-like backoff)."""

    recipient_delimiter: str = "+"
    # First retry after this many seconds; each later retry doubles it, capped below.
    retry_initial: Annotated[float, Field(gt=0)] = 60.0
    retry_max: Annotated[float, Field(gt=0)] = 3600.0
    # Postfix's maximal_queue_lifetime default is 5 days.
    max_queue_lifetime: Annotated[float, Field(gt=0)] = 5 * 24 * 3600.0
    # Seconds after arrival when a sender is told its mail is still undelivered (a
    # delay DSN, RFC 3464 "Action: delayed"), once; 0 = never.  4 h as sendmail's
    # Timeout.queuewarn; Postfix's delay_warning_time is the same knob (default off).
    delay_warning_time: Annotated[float, Field(ge=0)] = 4 * 3600.0
    concurrency: Annotated[int, Field(gt=0)] = 16
    # Run the queue runner in its own process (``mailwright.runtime.worker``), as Postfix
    # runs its queue manager and delivery agents apart from smtpd: delivery work then
    # never takes the acceptor's CPU or interpreter lock.  False runs it inside the
    # server process (fewer processes; used by in-process tests).
    worker: bool = True
    # The worker's CPU priority.  idle (Linux SCHED_IDLE): it runs only on CPU time
    # that receiving mail leaves unused, so a burst is acknowledged at full speed and
    # delivered as soon as the burst ends; under CPU saturation that never ends it takes
    # the normal share while mail waits (``runtime.priority``).  false: a normal process
    # at nice ``worker_nice`` (0-19), which always gets its fair share.
    worker_idle: bool = True
    worker_nice: Annotated[int, Field(ge=0, le=19)] = 10

    @field_validator("recipient_delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) > 1 or value in ("@", '"', "\\"):
            raise ValueError('must be empty or a single character other than @ " \\')
        return value
