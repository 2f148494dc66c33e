"""Token buckets and the MAIL/RCPT rate limits, on an injected clock."""

from __future__ import annotations

import pytest

from helpers.clock import FakeClock
from mailwright.config import ListenerRole
from mailwright.policy.builtin import ratelimit
from mailwright.policy.builtin.ratelimit import RateLimits, TokenBuckets
from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import TempFail
from mailwright.smtp import Address, MailFrom, RcptTo

MAIL = MailFrom(Address("sender", "remote.test"))
RCPT = RcptTo(Address("alice", "example.test"))


def session(ip: str = "192.0.2.1", user: str | None = None) -> SessionContext:
    return SessionContext(
        "s1",
        ip,
        40000,
        ListenerRole.INBOUND,
        auth_user=user,
        require_auth=False,
        sender_login_match=False,
        from_header_match=False,
    )


def limits(clock: FakeClock, **overrides: float) -> RateLimits:
    settings = {
        "ip_messages_per_minute": 6.0,  # one token every 10 s
        "ip_recipients_per_minute": 60.0,
        "user_messages_per_minute": 12.0,
        "user_recipients_per_minute": 60.0,
        "burst_messages": 2.0,
        "burst_recipients": 3.0,
        **overrides,
    }
    return RateLimits(**settings, clock=clock)


def test_token_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=0.5, burst=3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(2.0)  # one token at 0.5/s
    clock.advance(1.0)
    assert buckets.take("k") == pytest.approx(1.0)  # half a token back, half to go


def test_token_bucket_refills_at_its_rate_and_never_beyond_the_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock)
    buckets.take("k")
    buckets.take("k")
    clock.advance(1.0)
    assert buckets.take("k") == 0.0
    assert buckets.take("k") > 0
    clock.advance(3600.0)  # an hour idle earns the burst, not 3600 tokens
    assert [buckets.take("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("k") > 0


def test_token_bucket_keys_are_independent() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, clock=FakeClock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_token_bucket_with_rate_zero_never_refills() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=0.0, burst=1, clock=clock)
    assert buckets.take("k") == 0.0
    clock.advance(1e9)
    assert buckets.take("k") == float("inf")


def test_token_bucket_forgets_the_least_recently_used_key_beyond_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "MAX_TRACKED_KEYS", 2)
    buckets = TokenBuckets(rate=0.001, burst=1, clock=FakeClock())
    for key in ("a", "b"):
        buckets.take(key)
    buckets.take("a")  # "a" used last, so "b" is the oldest
    buckets.take("c")  # a third key pushes "b" out
    assert buckets.take("a") > 0  # still remembered, still empty
    assert buckets.take("b") == 0.0  # forgotten: a fresh, full bucket


def test_messages_over_the_ip_limit_get_451_4_7_1_with_a_retry_hint() -> None:
    clock = FakeClock()
    hook = limits(clock)
    ctx = session()
    assert hook.on_mail(ctx, MAIL) is None
    assert hook.on_mail(ctx, MAIL) is None
    verdict = hook.on_mail(ctx, MAIL)
    assert isinstance(verdict, TempFail)
    assert (verdict.reply.code, verdict.reply.enhanced) == (451, "4.7.1")
    assert verdict.reply.text == "Too many messages, slow down; try again in 10 s"
    assert verdict.reason == "messages rate limit for ip:192.0.2.1"
    clock.advance(10.0)
    assert hook.on_mail(ctx, MAIL) is None


def test_the_retry_hint_is_at_least_one_second() -> None:
    clock = FakeClock()
    hook = limits(clock, ip_messages_per_minute=600.0, burst_messages=1.0)
    ctx = session()
    hook.on_mail(ctx, MAIL)
    clock.advance(0.09)  # 0.01 s to go
    verdict = hook.on_mail(ctx, MAIL)
    assert isinstance(verdict, TempFail)
    assert verdict.reply.text.endswith("try again in 1 s")


def test_recipients_have_their_own_budget() -> None:
    hook = limits(FakeClock())
    ctx = session()
    assert [hook.on_rcpt(ctx, RCPT) for _ in range(3)] == [None, None, None]
    verdict = hook.on_rcpt(ctx, RCPT)
    assert isinstance(verdict, TempFail) and verdict.reply.enhanced == "4.7.1"
    assert "Too many recipients" in verdict.reply.text
    assert hook.on_mail(ctx, MAIL) is None  # the message budget is untouched


def test_an_authenticated_user_is_counted_per_user_not_per_ip() -> None:
    hook = limits(FakeClock())
    stranger = session()
    for _ in range(2):
        hook.on_mail(stranger, MAIL)
    assert isinstance(hook.on_mail(stranger, MAIL), TempFail)
    # Same IP (a NAT), but logged in: a budget of its own, of user size.
    alice = session(user="alice@example.test")
    assert [hook.on_mail(alice, MAIL) for _ in range(2)] == [None, None]
    verdict = hook.on_mail(alice, MAIL)
    assert isinstance(verdict, TempFail)
    assert verdict.reason == "messages rate limit for user:alice@example.test"
    assert verdict.reply.text.endswith("try again in 5 s")  # 12/min
    # Another user on another IP is not affected by either.
    assert hook.on_mail(session("192.0.2.9", "bob@example.test"), MAIL) is None


def test_a_rate_of_zero_disables_that_limit() -> None:
    hook = limits(FakeClock(), ip_messages_per_minute=0, ip_recipients_per_minute=0)
    ctx = session()
    assert all(hook.on_mail(ctx, MAIL) is None for _ in range(100))
    assert all(hook.on_rcpt(ctx, RCPT) is None for _ in range(100))
    assert hook.enabled  # the per-user limits remain
    off = limits(
        FakeClock(),
        ip_messages_per_minute=0,
        ip_recipients_per_minute=0,
        user_messages_per_minute=0,
        user_recipients_per_minute=0,
    )
    assert not off.enabled
