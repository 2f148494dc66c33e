"""MAIL policy on submission listeners (RFC 6409) as the server wires it: AUTH before
MAIL (530 5.7.0) and senders tied to their login (553 5.7.1).

``listener_session`` builds the context the way the inbound session does from its
listener's config; it is the one place that knows how a listener's rules reach the
hooks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from helpers.servers import build_config
from mailwright.accounts.users import UserStore
from mailwright.config import ListenerConfig, ListenerRole
from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Pipeline, Stage
from mailwright.policy.verdict import Continue, Reject, Verdict
from mailwright.runtime.compose import build_directory, build_pipeline
from mailwright.smtp import Address, MailFrom, codes

LOGIN = "alice@example.test"
EXTRA_ADDRESS = "a.smith@example.test"


def listener_session(listener: ListenerConfig, auth_user: str | None = None) -> SessionContext:
    """As ``net.inbound`` sets up a session on ``listener`` (then AUTH as ``auth_user``)."""
    return SessionContext(
        "s1",
        "203.0.113.5",
        40000,
        listener.role,
        local_ip="127.0.0.1",
        auth_user=auth_user,
        require_auth=listener.auth_required,
        sender_login_match=listener.sender_login_matching,
        from_header_match=listener.from_header_match,
    )


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    config = build_config(tmp_path / "data")
    (config.data_dir / "spool").mkdir(parents=True)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only
    users = UserStore.in_data_dir(config.data_dir, hasher=cheap, scram_iterations=4096)
    users.add(LOGIN, "secret", addresses=[EXTRA_ADDRESS])
    return build_pipeline(config, build_directory(config), users)


def mail(pipeline: Pipeline, ctx: SessionContext, sender: str | None) -> Verdict:
    address = None if sender is None else Address(*sender.split("@"))
    verdict = pipeline.run_now(Stage.MAIL, ctx, MailFrom(address))
    assert not hasattr(verdict, "__await__"), "the MAIL hooks are plain functions"
    return verdict  # type: ignore[return-value]


SUBMISSION = ListenerConfig(role=ListenerRole.SUBMISSION)
SUBMISSIONS = ListenerConfig(role=ListenerRole.SUBMISSIONS)
INBOUND = ListenerConfig(role=ListenerRole.INBOUND)


@pytest.mark.parametrize("listener", [SUBMISSION, SUBMISSIONS])
def test_mail_before_auth_on_a_submission_listener_is_530_5_7_0(
    pipeline: Pipeline, listener: ListenerConfig
) -> None:
    verdict = mail(pipeline, listener_session(listener), "alice@example.test")
    assert isinstance(verdict, Reject) and verdict.reply == codes.R530_AUTH_REQUIRED
    assert verdict.reply.enhanced == "5.7.0"


def test_mail_without_auth_is_fine_on_an_inbound_listener(pipeline: Pipeline) -> None:
    assert isinstance(mail(pipeline, listener_session(INBOUND), "x@remote.test"), Continue)


def test_require_auth_follows_the_listener_setting(pipeline: Pipeline) -> None:
    open_submission = ListenerConfig(role=ListenerRole.SUBMISSION, require_auth=False)
    verdict = mail(pipeline, listener_session(open_submission), "x@remote.test")
    assert isinstance(verdict, Continue)
    strict_inbound = ListenerConfig(role=ListenerRole.INBOUND, require_auth=True)
    verdict = mail(pipeline, listener_session(strict_inbound), "x@remote.test")
    assert isinstance(verdict, Reject) and verdict.reply == codes.R530_AUTH_REQUIRED


@pytest.mark.parametrize("sender", [LOGIN, "ALICE@Example.Test", EXTRA_ADDRESS, None])
def test_a_user_may_send_as_its_own_addresses_and_the_null_sender(
    pipeline: Pipeline, sender: str | None
) -> None:
    ctx = listener_session(SUBMISSION, auth_user=LOGIN)
    assert isinstance(mail(pipeline, ctx, sender), Continue)


@pytest.mark.parametrize("sender", ["bob@example.test", "alice@elsewhere.test"])
def test_a_user_may_not_send_as_someone_else(pipeline: Pipeline, sender: str) -> None:
    verdict = mail(pipeline, listener_session(SUBMISSION, auth_user=LOGIN), sender)
    assert isinstance(verdict, Reject) and verdict.reply == codes.R553_SENDER_NOT_OWNED
    assert verdict.reply.code == 553 and verdict.reply.enhanced == "5.7.1"
    assert verdict.reason == f"{LOGIN} may not send as {sender}"


def test_sender_login_matching_follows_the_listener_setting(pipeline: Pipeline) -> None:
    loose = ListenerConfig(role=ListenerRole.SUBMISSION, sender_login_match=False)
    ctx = listener_session(loose, auth_user=LOGIN)
    assert isinstance(mail(pipeline, ctx, "bob@example.test"), Continue)
    # On an inbound listener an authenticated user is not matched by default either.
    ctx = listener_session(INBOUND, auth_user=LOGIN)
    assert isinstance(mail(pipeline, ctx, "bob@example.test"), Continue)
