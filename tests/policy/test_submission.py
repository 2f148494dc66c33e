"""AUTH before MAIL on a submission listener (RFC 4954 §6, RFC 6409) holds whatever
the hooks keep in ``ctx.notes`` and in every process mode.

The listener's policy travels as typed fields of the policy context; it used to be
``ctx.notes["require_auth"]``, read with ``notes.get``, so a renamed or dropped key
turned AUTH-before-MAIL off on port 587 without a word (it failed open).
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.secure import ALICE, BOB, connect, secure_extra, write_users
from helpers.servers import InProcessServer, SubprocessServer, build_config
from mailwright.policy.builtin.submission import RequireAuth, SenderLoginMatch
from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import Reject
from mailwright.smtp import MailFrom, parse_path


def submission_ctx(**policy: bool) -> SessionContext:
    return SessionContext(
        session_id="s1",
        peer_ip="192.0.2.1",
        peer_port=25000,
        role="submission",
        require_auth=policy.get("require_auth", True),
        sender_login_match=policy.get("sender_login_match", True),
        from_header_match=False,
    )


def mail_from(address: str) -> MailFrom:
    return MailFrom(parse_path(f"<{address}>", allow_null=False))


@pytest.mark.parametrize(
    "notes",
    [{}, {"requires_auth": True}, {"require_auth": False}],
    ids=["cleared", "renamed", "contradicting"],
)
def test_require_auth_reads_the_typed_policy_not_notes(notes: dict[str, Any]):
    ctx = submission_ctx()
    ctx.notes.clear()
    ctx.notes.update(notes)
    verdict = RequireAuth().on_mail(ctx, mail_from(ALICE))
    assert isinstance(verdict, Reject)
    assert (verdict.reply.code, verdict.reply.enhanced) == (530, "5.7.0")


def test_require_auth_off_lets_mail_through_and_auth_user_passes():
    assert RequireAuth().on_mail(submission_ctx(require_auth=False), mail_from(ALICE)) is None
    ctx = submission_ctx()
    ctx.auth_user = ALICE
    assert RequireAuth().on_mail(ctx, mail_from(ALICE)) is None


def test_sender_login_match_reads_the_typed_policy_not_notes():
    class NobodyOwnsAnything:
        def owns_address(self, login: str, address: str) -> bool:
            return False

    ctx = submission_ctx()
    ctx.auth_user = ALICE
    ctx.notes.clear()
    verdict = SenderLoginMatch(NobodyOwnsAnything()).on_mail(ctx, mail_from(BOB))
    assert isinstance(verdict, Reject)
    assert (verdict.reply.code, verdict.reply.enhanced) == (553, "5.7.1")


def test_policy_context_cannot_be_built_without_the_listener_policy():
    """A context without the policy is a TypeError at once, not a silent default."""
    with pytest.raises(TypeError):
        SessionContext(session_id="s1", peer_ip="192.0.2.1", peer_port=1, role="submission")  # type: ignore[call-arg]


# -- every process mode --------------------------------------------------------------

MODES = ["in-process", "processes-0", "processes-2"]


@pytest.fixture(params=MODES)
def submission_server(request: pytest.FixtureRequest, tmp_path) -> Any:
    """A server with every role's listener in one of the process modes: in the test's
    process (queue runner in-process), ``serve`` with no session process, and
    ``serve`` with two session processes (both with their delivery worker)."""
    mode = request.param
    if mode == "in-process":
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        write_users(data_dir)
        server: Any = InProcessServer(build_config(data_dir, extra=secure_extra()))
        server.start()
        yield server
        server.stop()
        return
    processes = int(mode.rsplit("-", 1)[1])
    workdir = tmp_path / "proc"
    workdir.mkdir()
    server = SubprocessServer(workdir, smtp={"processes": processes}, extra=secure_extra())
    server.data_dir.mkdir()
    write_users(server.data_dir)
    server.start()
    yield server
    server.kill()


def test_submission_requires_auth_in_every_process_mode(submission_server: Any):
    server = submission_server
    # Several sessions per listener, so with session processes both of them serve some.
    for role, tls in [("submission", True), ("submission", False), ("submissions", True)] * 2:
        with connect(server, role, tls=tls) as c:
            reply = c.cmd(f"MAIL FROM:<{ALICE}>")
            assert (reply.code, reply.enhanced) == (530, "5.7.0"), (role, tls, reply)
            assert c.cmd(f"RCPT TO:<{BOB}>").code == 503
    # The inbound listener does not ask for AUTH.
    with connect(server, "inbound", tls=False) as c:
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
    server.assert_nothing_stored()
