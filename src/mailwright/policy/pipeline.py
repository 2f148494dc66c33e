"""The hook pipeline: ordered hooks per stage, run until one decides.

Rules (Haraka's, made fail-closed as DESIGN asks):

* Stages: connect, helo, mail, rcpt, data, message.  Hooks are registered explicitly, in
  configuration order; nothing is discovered by name.
* The first verdict other than Continue ends the stage.
* A hook that raises or exceeds ``HOOK_TIMEOUT`` yields TempFail 451 4.3.0: a broken
  check must never turn into an accepted message or an open relay.
* A hook is a plain function (decides from memory: no timeout needed, no timer armed
  per command) or a coroutine function (may wait on DNS, a database...: it runs
  under ``HOOK_TIMEOUT``).  The kind is read once, at registration.  A stage whose
  hooks are all plain functions is decided at once by ``run_now``, which lets the
  session answer the command without a task switch.
* At ``rcpt``, Continue from every hook means *nobody accepted*: the recipient is
  refused with 550 5.7.1.  Accepting a recipient always takes an explicit Accept
  (from the local-recipient hook now, from relay and trusted-network hooks later).
* ``message`` runs after the last body byte and before the spool commit, with a
  ``message.MessageTransaction`` (envelope, header section, size, results); its hooks
  may add header fields to it and reject or temp-fail the message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import CONTINUE, Continue, Reject, TempFail, Verdict
from mailwright.smtp import codes

log = logging.getLogger(__name__)

# Haraka's default plugin timeout is 30 s; SMTP clients wait 5 minutes per command
# (RFC 5321 §4.5.3.2), so a hook must answer well within that.
HOOK_TIMEOUT = 30.0

Hook = Callable[..., Awaitable[Verdict | None]] | Callable[..., Verdict | None]


class Stage(StrEnum):
    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    MESSAGE = "message"


class Pipeline:
    def __init__(self, timeout: float = HOOK_TIMEOUT) -> None:
        self._hooks: dict[Stage, list[tuple[str, Hook, bool]]] = {stage: [] for stage in Stage}
        self._sync: dict[Stage, bool] = {stage: True for stage in Stage}
        self._timeout = timeout

    def register(self, stage: Stage, name: str, hook: Hook) -> None:
        is_async = inspect.iscoroutinefunction(hook)
        self._hooks[stage].append((name, hook, is_async))
        self._sync[stage] = self._sync[stage] and not is_async

    def hooks(self, stage: Stage) -> list[str]:
        return [name for name, _, _ in self._hooks[stage]]

    def run_now(
        self, stage: Stage, ctx: SessionContext, *args: Any
    ) -> Verdict | Awaitable[Verdict]:
        """The verdict at once when every hook of ``stage`` is a plain function (the
        session then answers without a task switch), else the coroutine of ``run``.
        Never a mix: a stage is not half run before it has to wait."""
        if not self._sync[stage]:
            return self.run(stage, ctx, *args)
        for name, hook, _ in self._hooks[stage]:
            try:
                verdict = hook(ctx, *args)
            except Exception:
                return _raised(name, stage)
            if verdict is not None and not isinstance(verdict, Continue):
                return verdict  # type: ignore[return-value]
        return _nobody_decided(stage)

    async def run(self, stage: Stage, ctx: SessionContext, *args: Any) -> Verdict:
        if self._sync[stage]:
            return self.run_now(stage, ctx, *args)  # type: ignore[return-value]
        verdict: Verdict | None
        for name, hook, is_async in self._hooks[stage]:
            try:
                if is_async:
                    async with asyncio.timeout(self._timeout):
                        verdict = await hook(ctx, *args)  # type: ignore[misc]
                else:
                    verdict = hook(ctx, *args)  # type: ignore[assignment]
            except TimeoutError:
                log.warning("hook %s timed out at %s", name, stage)
                return TempFail(codes.R451_TEMP_POLICY, f"hook {name} timed out")
            except Exception:
                return _raised(name, stage)
            if verdict is not None and not isinstance(verdict, Continue):
                return verdict
        return _nobody_decided(stage)


def _raised(name: str, stage: Stage) -> Verdict:
    log.exception("hook %s failed at %s", name, stage)
    return TempFail(codes.R451_TEMP_POLICY, f"hook {name} raised")


def _nobody_decided(stage: Stage) -> Verdict:
    if stage is Stage.RCPT:
        return Reject(codes.R550_RELAY_DENIED, "no hook accepted the recipient")
    return CONTINUE
