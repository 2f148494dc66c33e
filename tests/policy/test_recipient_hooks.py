"""RCPT policy as the server wires it (``compose.build_pipeline``): local recipients
(deliver or 550 5.1.1), then relay access (authenticated users, trusted networks),
then the pipeline's default 550 5.7.1 — never an open relay.  The hooks take their
facts from the session context only, so each case is one context and one RCPT."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.servers import build_config
from mailwright.accounts.users import UserStore
from mailwright.config import ListenerRole
from mailwright.policy.builtin.recipients import LocalRecipients, envelope_recipient
from mailwright.policy.builtin.relay import RelayAccess, in_networks, parse_networks
from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Pipeline, Stage
from mailwright.policy.verdict import Accept, Reject, Verdict
from mailwright.runtime.compose import build_directory, build_pipeline
from mailwright.smtp import Address, RcptTo, codes

# An inbound (port 25) listener's policy: no AUTH required, no sender-login match.
INBOUND = {"require_auth": False, "sender_login_match": False, "from_header_match": False}

TRUSTED = ["192.0.2.0/24", "2001:db8::/32"]
OUTSIDE_IP = "203.0.113.5"
SERVER_IP = "198.51.100.1"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    config = build_config(tmp_path / "data", extra={"relay": {"trusted_networks": TRUSTED}})
    (config.data_dir / "spool").mkdir(parents=True)
    users = UserStore.in_data_dir(config.data_dir)
    return build_pipeline(config, build_directory(config), users)


def session(peer_ip: str = OUTSIDE_IP, user: str | None = None) -> SessionContext:
    return SessionContext(
        "s1", peer_ip, 40000, ListenerRole.INBOUND, local_ip=SERVER_IP, auth_user=user, **INBOUND
    )


def rcpt(pipeline: Pipeline, ctx: SessionContext, local: str, domain: str) -> Verdict:
    verdict = pipeline.run_now(Stage.RCPT, ctx, RcptTo(Address(local, domain)))
    assert not hasattr(verdict, "__await__"), "the RCPT hooks are plain functions"
    return verdict  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("local", "domain"),
    [
        ("alice", "example.test"),
        ("ALICE", "Example.Test"),
        ("team", "example.test"),  # an alias
        ("bob+lists", "example.test"),  # plus-addressing
        ("anyone", "catchall.test"),  # the catch-all
        ("postmaster", "catchall.test"),  # its catch-all takes postmaster too
    ],
)
def test_local_recipients_are_accepted_from_anyone(
    pipeline: Pipeline, local: str, domain: str
) -> None:
    assert rcpt(pipeline, session(), local, domain) == Accept()


def test_an_unknown_local_recipient_is_550_5_1_1_even_for_a_trusted_or_logged_in_client(
    pipeline: Pipeline,
) -> None:
    for ctx in (session(), session("192.0.2.10"), session(user="alice@example.test")):
        verdict = rcpt(pipeline, ctx, "nobody", "example.test")
        assert isinstance(verdict, Reject)
        assert verdict.reply == codes.R550_NO_SUCH_USER


def test_a_stranger_may_not_relay(pipeline: Pipeline) -> None:
    verdict = rcpt(pipeline, session(), "someone", "elsewhere.test")
    assert isinstance(verdict, Reject)
    assert verdict.reply == codes.R550_RELAY_DENIED


@pytest.mark.parametrize("peer_ip", ["192.0.2.10", "::ffff:192.0.2.10", "2001:db8::25"])
def test_a_client_in_a_trusted_network_may_relay(pipeline: Pipeline, peer_ip: str) -> None:
    assert rcpt(pipeline, session(peer_ip), "someone", "elsewhere.test") == Accept()


def test_an_authenticated_client_may_relay_from_anywhere(pipeline: Pipeline) -> None:
    ctx = session(user="alice@example.test")
    assert rcpt(pipeline, ctx, "someone", "elsewhere.test") == Accept()


@pytest.mark.parametrize(
    ("local", "domain"),
    [
        ('"someone@elsewhere.test"', "example.test"),  # quoted relay trick
        ("someone%elsewhere.test", "example.test"),  # percent hack
        ("elsewhere.test!someone", "example.test"),  # bang path
    ],
)
def test_relay_tricks_that_parse_as_local_are_judged_locally(
    pipeline: Pipeline, local: str, domain: str
) -> None:
    # example.test has no catch-all: they are unknown local users, never relayed,
    # not even for a trusted client.
    verdict = rcpt(pipeline, session("192.0.2.10"), local, domain)
    assert isinstance(verdict, Reject) and verdict.reply == codes.R550_NO_SUCH_USER


def test_postmaster_at_our_own_address_literal_is_local(pipeline: Pipeline) -> None:
    ctx = session()
    assert rcpt(pipeline, ctx, "postmaster", f"[{SERVER_IP}]") == Accept()
    assert envelope_recipient(Address("PostMaster", f"[{SERVER_IP}]"), SERVER_IP) == "postmaster"
    # Any other mailbox at our literal, or postmaster at someone else's, is relaying.
    for local, domain in (("alice", f"[{SERVER_IP}]"), ("postmaster", "[203.0.113.99]")):
        verdict = rcpt(pipeline, ctx, local, domain)
        assert isinstance(verdict, Reject) and verdict.reply == codes.R550_RELAY_DENIED


def test_postmaster_at_our_ipv6_literal_through_a_dual_stack_socket() -> None:
    hook = LocalRecipients(None)  # type: ignore[arg-type]  # literals need no directory
    ctx = SessionContext(
        "s1", "2001:db8::9", 1, ListenerRole.INBOUND, local_ip="2001:db8::1", **INBOUND
    )
    assert hook.on_rcpt(ctx, RcptTo(Address("postmaster", "[IPv6:2001:db8::1]"))) == Accept()
    mapped = SessionContext(
        "s1", "::ffff:10.0.0.9", 1, ListenerRole.INBOUND, "::ffff:10.0.0.1", **INBOUND
    )
    assert hook.on_rcpt(mapped, RcptTo(Address("postmaster", "[10.0.0.1]"))) == Accept()


def test_relay_access_alone_has_no_opinion_on_strangers() -> None:
    hook = RelayAccess(parse_networks(["10.0.0.0/8"]))
    stranger = SessionContext("s1", OUTSIDE_IP, 1, ListenerRole.INBOUND, **INBOUND)
    assert hook.on_rcpt(stranger, RcptTo(Address("x", "elsewhere.test"))) is None
    assert not in_networks("not an address", parse_networks(["0.0.0.0/0"]))
    assert in_networks("10.1.2.3", parse_networks(["10.1.2.3/8"]))  # host bits allowed
