"""The hook pipeline: order, fail-closed errors, and ``run_now`` (decide at once when
every hook of a stage is a plain function, else hand back the coroutine)."""

from __future__ import annotations

import asyncio
import inspect

from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Pipeline, Stage
from mailwright.policy.verdict import CONTINUE, Accept, Reject, TempFail
from mailwright.smtp import codes


def ctx() -> SessionContext:
    return SessionContext(
        session_id="s1",
        peer_ip="192.0.2.1",
        peer_port=25000,
        role="inbound",
        require_auth=False,
        sender_login_match=False,
        from_header_match=False,
    )


def test_run_now_decides_at_once_when_every_hook_is_plain():
    pipeline = Pipeline()
    calls: list[str] = []
    pipeline.register(Stage.MAIL, "first", lambda c, e: calls.append("first"))
    pipeline.register(Stage.MAIL, "second", lambda c, e: Reject(codes.R550_RELAY_DENIED, "no"))
    pipeline.register(Stage.MAIL, "third", lambda c, e: calls.append("third"))
    verdict = pipeline.run_now(Stage.MAIL, ctx(), None)
    assert verdict == Reject(codes.R550_RELAY_DENIED, "no")
    assert calls == ["first"]  # the first decision ends the stage
    assert pipeline.run_now(Stage.HELO, ctx(), None) is CONTINUE


def test_run_now_rcpt_nobody_accepted_is_a_relay_refusal():
    verdict = Pipeline().run_now(Stage.RCPT, ctx(), None)
    assert isinstance(verdict, Reject) and verdict.reply == codes.R550_RELAY_DENIED


def test_run_now_a_raising_plain_hook_fails_closed():
    pipeline = Pipeline()

    def broken(c, e):
        raise RuntimeError("bug")

    pipeline.register(Stage.RCPT, "broken", broken)
    pipeline.register(Stage.RCPT, "accept", lambda c, e: Accept())
    verdict = pipeline.run_now(Stage.RCPT, ctx(), None)
    assert isinstance(verdict, TempFail) and verdict.reply.code == 451


def test_run_now_with_a_coroutine_hook_runs_nothing_before_it_is_awaited():
    """A stage is never half run: with one coroutine hook, even the plain hooks before
    it wait until the session task awaits the stage."""
    pipeline = Pipeline()
    calls: list[str] = []
    pipeline.register(Stage.MAIL, "plain", lambda c, e: calls.append("plain"))

    async def slow(c, e):
        calls.append("slow")
        return Accept()

    pipeline.register(Stage.MAIL, "slow", slow)
    pending = pipeline.run_now(Stage.MAIL, ctx(), None)
    assert inspect.isawaitable(pending)
    assert calls == []
    assert asyncio.run(pending) == Accept()  # type: ignore[arg-type]
    assert calls == ["plain", "slow"]
