"""LocalDeliveryAgent and Router: per-recipient results, trace headers, fan-out."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailwright.accounts.directory import LocalDirectory
from mailwright.config import DomainConfig
from mailwright.delivery.base import DeliveryAgent, DeliveryResult, Progress
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.maildir import DeliveryKey, Maildir, maildir_path
from mailwright.delivery.router import NoRelayAgent, Route, Router
from mailwright.smtp import Reply
from mailwright.spool.model import Envelope, Recipient, SpooledMessage
from mailwright.spool.queueid import new_queue_id

BODY = b"From: sender@remote.test\r\nSubject: test\r\n\r\nHello.\r\n"


def message(mail_from: str, *rcpts: str) -> SpooledMessage:
    env = Envelope(mail_from=mail_from, recipients=tuple(Recipient(r) for r in rcpts))
    now = time.time()  # received by this agent's process: a first delivery
    return SpooledMessage(
        queue_id=new_queue_id(now), envelope=env, size=len(BODY), received_at=now, next_attempt=now
    )


def deliver(agent: DeliveryAgent, mail_from: str, *rcpts: str) -> dict[str, DeliveryResult]:
    msg = message(mail_from, *rcpts)
    return asyncio.run(agent.deliver(msg, BODY, list(msg.envelope.recipients)))


@pytest.fixture
def directory() -> LocalDirectory:
    return LocalDirectory(
        [
            DomainConfig(
                name="example.org",
                mailboxes=["alice", "bob", "postmaster"],
                aliases={"team": ["alice", "bob"], "both": ["alice", "friend@example.net"]},
            ),
            DomainConfig(name="example.net", mailboxes=["friend"]),
        ]
    )


@pytest.fixture
def agent(directory: LocalDirectory, tmp_path: Path) -> LocalDeliveryAgent:
    return LocalDeliveryAgent(directory, mail_root(tmp_path), "mx.example.org")


def new_files(agent: LocalDeliveryAgent, address: str) -> list[Path]:
    name, _, domain = address.partition("@")
    new = maildir_path(agent.mail_root, domain, name) / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def test_delivers_with_trace_headers_first(agent: LocalDeliveryAgent) -> None:
    results = deliver(agent, "sender@remote.test", "alice@example.org")
    result = results["alice@example.org"]
    assert result.ok and not result.permanent
    assert result.reply.code == 250 and result.reply.enhanced == "2.0.0"
    files = new_files(agent, "alice@example.org")
    assert len(files) == 1
    assert result.reason == str(files[0])
    data = files[0].read_bytes()
    # The Maildir file has LF line endings, trace headers included.
    assert data == (
        b"Return-Path: <sender@remote.test>\nDelivered-To: alice@example.org\n"
        b"From: sender@remote.test\nSubject: test\n\nHello.\n"
    )


def test_null_sender_return_path(agent: LocalDeliveryAgent) -> None:
    deliver(agent, "", "alice@example.org")
    assert new_files(agent, "alice@example.org")[0].read_bytes().startswith(b"Return-Path: <>\n")


def test_header_injection_in_sender_is_neutralised(agent: LocalDeliveryAgent) -> None:
    deliver(agent, "evil@x\r\nBcc: victim@y", "alice@example.org")
    head = new_files(agent, "alice@example.org")[0].read_bytes().split(b"\n")[:3]
    assert head[0] == b"Return-Path: <evil@xBcc: victim@y>"
    assert head[1] == b"Delivered-To: alice@example.org"


def test_alias_fan_out(agent: LocalDeliveryAgent) -> None:
    results = deliver(agent, "s@remote.test", "team@example.org")
    assert set(results) == {"team@example.org"}
    assert results["team@example.org"].ok
    for member in ("alice@example.org", "bob@example.org"):
        files = new_files(agent, member)
        assert len(files) == 1
        assert f"Delivered-To: {member}\n".encode() in files[0].read_bytes()
        assert str(files[0]) in results["team@example.org"].reason


def test_alias_across_domains(agent: LocalDeliveryAgent) -> None:
    results = deliver(agent, "s@remote.test", "both@example.org")
    assert results["both@example.org"].ok
    assert len(new_files(agent, "friend@example.net")) == 1


def test_duplicate_mailbox_gets_one_copy(agent: LocalDeliveryAgent) -> None:
    rcpts = ("alice@example.org", "team@example.org", "ALICE+tag@example.org", "alice@example.org")
    results = deliver(agent, "s@remote.test", *rcpts)
    assert set(results) == set(rcpts)
    assert all(r.ok for r in results.values())
    assert len(new_files(agent, "alice@example.org")) == 1
    assert len(new_files(agent, "bob@example.org")) == 1


def test_unknown_recipient_is_permanent_and_others_still_delivered(
    agent: LocalDeliveryAgent,
) -> None:
    results = deliver(agent, "s@remote.test", "nobody@example.org", "bob@example.org")
    unknown = results["nobody@example.org"]
    assert unknown.permanent and (unknown.reply.code, unknown.reply.enhanced) == (550, "5.1.1")
    assert results["bob@example.org"].ok


def test_non_local_domain_is_permanent(agent: LocalDeliveryAgent) -> None:
    result = deliver(agent, "s@remote.test", "x@elsewhere.test")["x@elsewhere.test"]
    assert result.permanent and result.reply.enhanced == "5.1.2"


def test_bare_postmaster(agent: LocalDeliveryAgent) -> None:
    assert deliver(agent, "s@remote.test", "Postmaster")["Postmaster"].ok
    assert len(new_files(agent, "postmaster@example.org")) == 1


def test_ensure_all_creates_maildirs(agent: LocalDeliveryAgent) -> None:
    agent.ensure_all()
    for box in ("alice", "bob", "postmaster"):
        assert (maildir_path(agent.mail_root, "example.org", box) / "new").is_dir()
    assert (agent.mail_root / "example.net" / "friend" / "tmp").is_dir()


def test_vanished_maildir_is_recreated(agent: LocalDeliveryAgent) -> None:
    deliver(agent, "s@remote.test", "alice@example.org")
    root = maildir_path(agent.mail_root, "example.org", "alice")
    root.rename(root.with_name("alice.moved"))
    assert deliver(agent, "s@remote.test", "alice@example.org")["alice@example.org"].ok
    assert len(new_files(agent, "alice@example.org")) == 1


@pytest.mark.parametrize(
    ("err", "code", "enhanced"),
    [
        (errno.ENOSPC, 452, "4.3.1"),
        (errno.EDQUOT, 452, "4.2.2"),
        (errno.EIO, 451, "4.3.0"),
        (errno.EACCES, 451, "4.3.0"),
    ],
)
def test_storage_errors_are_temporary(
    agent: LocalDeliveryAgent, monkeypatch: pytest.MonkeyPatch, err: int, code: int, enhanced: str
) -> None:
    agent.ensure_all()

    def fail(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", fail)
    results = deliver(agent, "s@remote.test", "alice@example.org", "nobody@example.org")
    result = results["alice@example.org"]
    assert not result.ok and not result.permanent
    assert (result.reply.code, result.reply.enhanced) == (code, enhanced)
    assert os.strerror(err) in result.reason
    assert results["nobody@example.org"].permanent
    root = maildir_path(agent.mail_root, "example.org", "alice")
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "new") == []


def test_permission_error_is_temporary(
    agent: LocalDeliveryAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent.ensure_all()

    def denied(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "link", denied)
    result = deliver(agent, "s@remote.test", "alice@example.org")["alice@example.org"]
    assert result.reply.code == 451 and result.reply.enhanced == "4.3.0"


def test_partial_alias_failure_fails_recipient_temporarily(
    agent: LocalDeliveryAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = maildir_path(agent.mail_root, "example.org", "bob")
    real_stage = Maildir.stage

    def flaky(self: Maildir, data: bytes, key: DeliveryKey | None = None) -> str:
        if self.root == bad:
            raise OSError(errno.EIO, "Input/output error")
        return real_stage(self, data, key)

    monkeypatch.setattr(Maildir, "stage", flaky)
    results = deliver(agent, "s@remote.test", "team@example.org", "alice@example.org")
    assert results["team@example.org"].reply.code == 451  # retried as a whole
    assert results["alice@example.org"].ok
    assert len(new_files(agent, "alice@example.org")) == 1


def test_retry_after_partial_alias_failure_keeps_one_copy(
    agent: LocalDeliveryAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``team`` = alice + bob; bob's write fails, so ``team`` is retried as a whole: the
    retry recognises alice's copy from the first attempt instead of writing a second."""
    bad = maildir_path(agent.mail_root, "example.org", "bob")
    real_stage = Maildir.stage

    def flaky(self: Maildir, data: bytes, key: DeliveryKey | None = None) -> str:
        if self.root == bad:
            raise OSError(errno.EIO, "Input/output error")
        return real_stage(self, data, key)

    msg = message("s@remote.test", "team@example.org")
    with monkeypatch.context() as patch:
        patch.setattr(Maildir, "stage", flaky)
        first = asyncio.run(agent.deliver(msg, BODY, list(msg.envelope.recipients)))
    assert first["team@example.org"].reply.code == 451
    retry = replace(msg, attempts=1)  # as the runner records the failed attempt
    second = asyncio.run(agent.deliver(retry, BODY, list(retry.envelope.recipients)))
    assert second["team@example.org"].ok
    assert len(new_files(agent, "alice@example.org")) == 1
    assert len(new_files(agent, "bob@example.org")) == 1


def redeliver_after_crash(agent: LocalDeliveryAgent, msg: SpooledMessage) -> LocalDeliveryAgent:
    """The restarted process: a new agent, the message still PENDING with the attempt
    counter it had before the crash (0: the crash came before ``record_attempt``)."""
    restarted = LocalDeliveryAgent(agent.directory, agent.mail_root, agent.hostname)
    assert msg.received_at < restarted.started
    results = asyncio.run(restarted.deliver(msg, BODY, list(msg.envelope.recipients)))
    assert all(r.ok for r in results.values()), results
    return restarted


def test_redelivery_after_crash_recognises_copy_in_new(agent: LocalDeliveryAgent) -> None:
    msg = message("s@remote.test", "alice@example.org", "team@example.org")
    asyncio.run(agent.deliver(msg, BODY, list(msg.envelope.recipients)))
    before = new_files(agent, "alice@example.org")
    assert len(before) == 1 and msg.queue_id in before[0].name
    redeliver_after_crash(agent, msg)
    assert new_files(agent, "alice@example.org") == before
    assert len(new_files(agent, "bob@example.org")) == 1


def test_redelivery_after_crash_recognises_copy_a_reader_moved_to_cur(
    agent: LocalDeliveryAgent,
) -> None:
    """Dovecot/mutt move ``new/X`` to ``cur/X:2,S`` once seen; the copy is still ours."""
    msg = message("s@remote.test", "alice@example.org")
    asyncio.run(agent.deliver(msg, BODY, list(msg.envelope.recipients)))
    (path,) = new_files(agent, "alice@example.org")
    cur = path.parent.parent / "cur"
    path.rename(cur / f"{path.name}:2,S")
    redeliver_after_crash(agent, msg)
    assert new_files(agent, "alice@example.org") == []
    assert os.listdir(cur) == [f"{path.name}:2,S"]


def test_first_delivery_does_not_list_the_folders(
    agent: LocalDeliveryAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: a message queued in this process's lifetime and never attempted
    costs no directory listing (a mailbox may hold 100,000 files)."""
    agent.ensure_all()

    def no_listing(path: object) -> None:
        raise AssertionError(f"{path} listed on a first delivery")

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", no_listing)
        patch.setattr(os, "listdir", no_listing)
        assert deliver(agent, "s@remote.test", "alice@example.org")["alice@example.org"].ok
    assert len(new_files(agent, "alice@example.org")) == 1


# -- router ---------------------------------------------------------------------


def test_router_splits_routes(agent: LocalDeliveryAgent, directory: LocalDirectory) -> None:
    router = Router(directory, agent)
    assert router.route("alice@EXAMPLE.org") is Route.LOCAL
    assert router.route("Postmaster") is Route.LOCAL
    assert router.route("x@elsewhere.test") is Route.REMOTE
    results = deliver(router, "s@remote.test", "alice@example.org", "x@elsewhere.test")
    assert results["alice@example.org"].ok
    remote = results["x@elsewhere.test"]
    assert remote.permanent and (remote.reply.code, remote.reply.enhanced) == (550, "5.7.1")
    assert "relay not configured" in remote.reply.text


def test_router_uses_given_remote_agent(
    agent: LocalDeliveryAgent, directory: LocalDirectory
) -> None:
    seen: list[list[str]] = []

    class Relay:
        async def deliver(
            self,
            message: SpooledMessage,
            body: bytes,
            recipients: list[Recipient],
            progress: Progress | None = None,
        ) -> dict[str, DeliveryResult]:
            seen.append([r.address for r in recipients])
            return {r.address: DeliveryResult(Reply.of(250, "2.0.0", "ok")) for r in recipients}

    router = Router(directory, agent, remote=Relay())
    results = deliver(router, "s@x", "a@one.test", "bob@example.org", "b@two.test")
    assert seen == [["a@one.test", "b@two.test"]]
    assert all(r.ok for r in results.values()) and len(results) == 3


def test_router_reports_a_finished_route_while_another_still_runs(
    agent: LocalDeliveryAgent, directory: LocalDirectory
) -> None:
    """The local route's 250 goes to ``progress`` (its file already in the Maildir)
    while the relay is still held; the route that finishes last is only returned."""
    release = asyncio.Event()
    reported: list[list[str]] = []
    first = asyncio.Event()

    class HeldRelay:
        async def deliver(
            self,
            message: SpooledMessage,
            body: bytes,
            recipients: list[Recipient],
            progress: Progress | None = None,
        ) -> dict[str, DeliveryResult]:
            await release.wait()
            return {r.address: DeliveryResult(Reply.of(250, "2.0.0", "ok")) for r in recipients}

    async def progress(results: dict[str, DeliveryResult]) -> None:
        reported.append(sorted(results))
        assert all(r.ok for r in results.values())
        first.set()

    async def main() -> dict[str, DeliveryResult]:
        msg = message("s@x", "bob@example.org", "z@r.test")
        router = Router(directory, agent, remote=HeldRelay())
        task = asyncio.create_task(
            router.deliver(msg, BODY, list(msg.envelope.recipients), progress)
        )
        await asyncio.wait_for(first.wait(), 5)
        assert reported == [["bob@example.org"]] and not task.done()
        assert len(new_files(agent, "bob@example.org")) == 1
        release.set()
        return await asyncio.wait_for(task, 5)

    results = asyncio.run(main())
    assert reported == [["bob@example.org"]]
    assert sorted(results) == ["bob@example.org", "z@r.test"]


def test_router_agent_error_is_temporary(directory: LocalDirectory) -> None:
    class Broken:
        async def deliver(
            self,
            message: SpooledMessage,
            body: bytes,
            recipients: list[Recipient],
            progress: Progress | None = None,
        ) -> dict[str, DeliveryResult]:
            raise RuntimeError("boom")

    class Forgetful:
        async def deliver(
            self,
            message: SpooledMessage,
            body: bytes,
            recipients: list[Recipient],
            progress: Progress | None = None,
        ) -> dict[str, DeliveryResult]:
            return {}

    results = deliver(
        Router(directory, Broken(), Forgetful()), "s@x", "bob@example.org", "z@r.test"
    )
    for result in results.values():
        assert result.reply.code == 451 and not result.permanent
    assert "boom" in results["bob@example.org"].reason


def test_no_relay_agent_long_domain() -> None:
    long_domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".test"
    results = deliver(NoRelayAgent(), "s@x", f"u@{long_domain}")
    assert results[f"u@{long_domain}"].permanent


def test_concurrent_messages_share_new_dir_fsyncs(agent: LocalDeliveryAgent) -> None:
    """A burst to one mailbox is written in batches: fewer fsyncs of new/ than messages,
    and every message is in new/ with nothing left in tmp/."""
    agent.ensure_all()

    async def main() -> list[dict[str, DeliveryResult]]:
        msgs = [message("s@remote.test", "alice@example.org") for _ in range(30)]
        return await asyncio.gather(
            *(agent.deliver(m, BODY, list(m.envelope.recipients)) for m in msgs)
        )

    results = asyncio.run(main())
    assert all(r["alice@example.org"].ok for r in results)
    assert len(new_files(agent, "alice@example.org")) == 30
    assert agent.batcher.dir_syncs < 30
    root = maildir_path(agent.mail_root, "example.org", "alice")
    assert os.listdir(root / "tmp") == []
