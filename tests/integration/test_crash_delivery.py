"""Crash safety of delivery, end to end (issue 10): ``kill -9`` while a ``mailwright
serve`` delivers to local Maildirs and relays to a remote MX, restart, drain.

The server (with its delivery worker and session processes: every process it started
is killed at once) takes a few hundred messages over several SMTP sessions — local
recipients, remote ones (``far.test``, whose MX a ``LoopbackDns`` points at Postfix's
``smtp-sink`` on 127.0.0.21, dumping every transaction it takes) and messages with
both.  It is killed once the mail log shows deliveries done and the queue still holds
mail (so the kill lands while deliveries are in flight; ``early``: after the first
few, ``middle``: after about half), restarted on the same data folder, and left to
drain (bounded).  Then, for every message that got its 250 (and, more weakly, for those
whose 250 the kill cut off, which may or may not have been stored):

* every recipient reached exactly one final state: the queue is empty, the mail log
  has a ``delivered`` line for it and no ``bounced``/``expired`` line for anyone, and
  no bounce (a null-sender transaction) reached the sender's MX;
* each remote recipient received the message at least once (the sink's dumps): the
  remote's 250 may be lost with the process, then the relay sends again (RFC 5321
  §6.1: a duplicate rather than a loss);
* each local mailbox holds the message exactly once, counted by Message-ID over
  ``new/`` and ``cur/``: a re-delivery recognises its own earlier copy
  (``delivery.maildir``, "Re-delivery after a crash"), also one a reader moved from
  ``new/`` to ``cur/`` while the server was down (bob's, as Dovecot would).

What the test asserts does not depend on where exactly the kill lands.

``test_kill_9_after_the_fast_mx_took_it_delivers_it_once`` is the narrow case: one
message to a fast MX and one that hangs in DATA, killed once the fast MX has it; the
fast MX's 250 was recorded when it came (``queue.progress``), so after the restart
only the hanging recipient is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import signal
import smtplib
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.procs import wait_until
from helpers.relaykit import SmtpSink, free_shared_port, sinks
from helpers.servers import EXAMPLE, HOST, SubprocessServer

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
far          IN MX 10 mx.far
mx.far       IN A 127.0.0.21
hang         IN MX 10 mx.hang
mx.hang      IN A 127.0.0.22
"""
MX = "127.0.0.21"
HANG_MX = "127.0.0.22"  # hang.test's MX: aiosmtpd that holds DATA until released
SENDER = "sender@far.test"  # a bounce would go to the sink too: none may
MESSAGES = 240
SESSIONS = 3
# Kill once this many recipients were logged delivered (of 320: every third message
# has a local and a remote recipient).
KILL_AFTER = {"early": 8, "middle": 150}
KILL_TIMEOUT = 60.0  # s until the kill point is reached
DRAIN_TIMEOUT = 90.0  # s for the restarted server to empty its queue
SMTP_TIMEOUT = 10.0


def recipients_of(n: int) -> tuple[str, ...]:
    """Message ``n``: local only, remote only, or one local and one remote recipient."""
    kind = n % 3
    if kind == 0:
        return ("alice@example.test",)
    if kind == 1:
        return (f"r{n % 7}@far.test",)
    return ("bob@example.test", f"r{n % 5}@far.test")


def message_id(n: int) -> str:
    return f"<crash-{n}@far.test>"


def wire(n: int) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{recipients_of(n)[0]}>\r\nSubject: crash {n}\r\n"
        f"Message-ID: {message_id(n)}\r\n\r\nmessage {n}\r\n"
    ).encode()


@dataclass
class Load:
    """What the clients sent: Message-ID -> queue id of the acknowledged ones, and the
    Message-IDs whose 250 never came (the kill cut the session)."""

    acked: dict[str, str] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)  # anything but the kill
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self, port: int, numbers: list[int]) -> None:
        pending = list(numbers)
        try:
            with smtplib.SMTP(HOST, port, local_hostname="load.test", timeout=SMTP_TIMEOUT) as c:
                c.ehlo()
                while pending:
                    n = pending[0]
                    with self.lock:
                        self.cut.add(message_id(n))  # until its 250 arrives
                    c.mail(SENDER)
                    for rcpt in recipients_of(n):
                        code, text = c.rcpt(rcpt)
                        assert code == 250, (rcpt, code, text)
                    code, text = c.data(wire(n))
                    assert code == 250, (code, text)
                    with self.lock:
                        self.cut.discard(message_id(n))
                        self.acked[message_id(n)] = text.decode().rsplit(" ", 1)[-1]
                    pending.pop(0)
        except (OSError, smtplib.SMTPException):
            pass  # the kill: what was not acknowledged stays in ``cut``
        except BaseException as exc:  # reported in the test's thread
            self.errors.append(exc)


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... from /proc (Linux)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        task = Path(f"/proc/{parent}/task")
        for tid in os.listdir(task) if task.is_dir() else []:
            try:
                children = (task / tid / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def kill_all(server: SubprocessServer) -> int:
    """SIGKILL the server and every process it started, all at once (a crash of the
    whole service, as ``systemctl kill -s KILL`` does); returns how many there were."""
    assert server.proc is not None
    pids = [server.proc.pid, *descendants(server.proc.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(10)
    for pid in pids[1:]:  # not our children: wait until the kernel reaped them
        assert wait_until(lambda p=pid: not Path(f"/proc/{p}").exists() or _zombie(p), 10)
    return len(pids)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def read_by_a_reader(server: SubprocessServer, box: str) -> int:
    """What an IMAP server does with mail it has shown: ``new/X`` -> ``cur/X:2,S``
    (Dovecot keeps the base name).  Returns how many files it moved."""
    new = server.maildir(EXAMPLE, box) / "new"
    moved = 0
    for path in sorted(new.iterdir()) if new.is_dir() else []:
        path.rename(new.parent / "cur" / f"{path.name}:2,S")
        moved += 1
    return moved


def delivered_lines(server: SubprocessServer) -> int:
    return server.mail_log().count(": delivered to=")


def local_copies(server: SubprocessServer, box: str) -> Counter[str]:
    """Message-IDs of every message in ``box``'s new/ and cur/ (a copy a reader moved)."""
    ids: Counter[str] = Counter()
    for sub in ("new", "cur"):
        folder = server.maildir(EXAMPLE, box) / sub
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            parsed = email.message_from_bytes(path.read_bytes())
            ids[str(parsed["Message-ID"])] += 1
    return ids


def remote_copies(sink: SmtpSink) -> tuple[Counter[tuple[str, str]], int]:
    """(Message-ID, recipient) of each complete transaction the sink took, and how many
    of them had the null sender (a bounce)."""
    got: Counter[tuple[str, str]] = Counter()
    bounces = 0
    for parsed in sink.messages():
        if parsed["Message-ID"] is None:
            continue  # the kill cut this transaction before its end: not a delivery
        if "<>" in str(parsed.get("X-Mail-Args", "")):
            bounces += 1
        for rcpt in parsed.get_all("X-Rcpt-Args") or []:
            got[(str(parsed["Message-ID"]), rcpt.split()[0].strip("<>"))] += 1
    return got, bounces


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


@pytest.mark.parametrize("kill_point", sorted(KILL_AFTER))
def test_kill_9_during_deliveries_then_restart(make_subprocess_server, dns, kill_point):
    port = free_shared_port([MX])
    with sinks((MX, ()), port=port) as (sink,):
        server = make_subprocess_server(
            extra={
                "relay": {"trusted_networks": ["127.0.0.1/32"]},
                "dns": {"nameservers": [dns.nameserver]},
                "outbound": {"port": port, "allow_private_addresses": True},
            }
        )
        load = Load()
        numbers = list(range(MESSAGES))
        clients = [
            threading.Thread(target=load.session, args=(server.port, numbers[i::SESSIONS]))
            for i in range(SESSIONS)
        ]
        for client in clients:
            client.start()
        threshold = KILL_AFTER[kill_point]
        reached = wait_until(lambda: delivered_lines(server) >= threshold, KILL_TIMEOUT)
        processes = kill_all(server)
        for client in clients:
            client.join(SMTP_TIMEOUT * 2)
        assert reached, f"only {delivered_lines(server)} deliveries in {KILL_TIMEOUT}s"
        # In flight: some recipients were delivered, and the queue still held mail.
        assert processes >= 2, "the delivery worker was not running"
        queued_at_kill = server.queue_rows()
        assert queued_at_kill > 0, "the queue had drained before the kill"
        delivered_at_kill = delivered_lines(server)
        seen = read_by_a_reader(server, "bob")

        server.start()
        server.wait_queue_empty(DRAIN_TIMEOUT)
        # The sink's last transaction is complete once its dump holds the message.
        alice, bob = local_copies(server, "alice"), local_copies(server, "bob")
        remote, bounces = remote_copies(sink)
        log = server.mail_log()

    assert not load.errors, load.errors
    assert load.acked, "no message was acknowledged before the kill"
    expected_local = {"alice@example.test": alice, "bob@example.test": bob}
    missing, duplicated, remote_duplicates = [], [], 0
    for n in range(MESSAGES):
        mid = message_id(n)
        if mid not in load.acked and mid not in load.cut:
            continue  # never sent: the kill came first
        for rcpt in recipients_of(n):
            if rcpt in expected_local:
                count = expected_local[rcpt][mid]
                if count > 1:
                    duplicated.append((mid, rcpt, count))
            else:
                count = remote[(mid, rcpt)]
                remote_duplicates += count > 1
            if mid in load.acked and count == 0:
                missing.append((mid, rcpt))
            if mid in load.acked:
                qid = load.acked[mid]
                assert f" {qid}: delivered to=<{rcpt}>" in log, (qid, rcpt)
    assert not missing, f"acknowledged with 250 but never delivered: {missing}"
    assert not duplicated, f"local Maildir copies duplicated after the crash: {duplicated}"
    # Exactly one final state: delivered, never also bounced; nothing left queued.
    assert ": bounced to=" not in log and ": expired to=" not in log
    assert bounces == 0
    assert server.queue_rows() == 0
    sent = set(load.acked) | load.cut
    assert set(alice) | set(bob) <= sent and {mid for mid, _ in remote} <= sent
    print(
        f"{kill_point}: killed {processes} processes with {delivered_at_kill} recipients "
        f"delivered and {queued_at_kill} messages queued; {len(load.acked)} acknowledged, "
        f"{len(load.cut)} cut; {seen} of bob's moved to cur/; "
        f"remote duplicates (at-least-once): {remote_duplicates}"
    )


class HangingData:
    """aiosmtpd handler (its own thread and loop): every DATA waits for ``release``;
    ``entered`` counts the transactions that reached it."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.entered += 1
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.release.wait, DRAIN_TIMEOUT):
            return "451 4.4.2 Held too long"
        return "250 2.0.0 Queued"


def test_kill_9_after_the_fast_mx_took_it_delivers_it_once(make_subprocess_server, dns):
    """One message to a@far.test (smtp-sink) and b@hang.test (DATA held).  SIGKILL once
    the fast sink has its copy (and, given a few seconds, the 250 was recorded), with
    the hanging transaction still open; restart; release the hanging MX: the fast
    sink holds the message exactly once, each recipient has one "delivered" line."""
    port = free_shared_port([MX, HANG_MX])
    handler = HangingData()
    controller = Controller(handler, hostname=HANG_MX, port=port)
    controller.start()
    try:
        with sinks((MX, ()), port=port) as (sink,):
            server = make_subprocess_server(
                extra={
                    "relay": {"trusted_networks": ["127.0.0.1/32"]},
                    "dns": {"nameservers": [dns.nameserver]},
                    "outbound": {"port": port, "allow_private_addresses": True},
                }
            )
            mid = "<crash-progress@far.test>"
            body = f"From: <{SENDER}>\r\nSubject: two MX\r\nMessage-ID: {mid}\r\n\r\nhi\r\n"
            with smtplib.SMTP(
                HOST, server.port, local_hostname="load.test", timeout=SMTP_TIMEOUT
            ) as client:
                refused = client.sendmail(SENDER, ["a@far.test", "b@hang.test"], body)
            assert refused == {}

            def fast_has_it() -> bool:
                return any(m["Message-ID"] == mid for m in sink.messages())

            assert wait_until(lambda: fast_has_it() and handler.entered == 1, KILL_TIMEOUT)
            # The 250 is recorded a moment after the sink wrote its copy; the mail
            # log's line (flushed within log.flush_interval) says it was.  Without
            # early recording it never comes while b hangs: then kill anyway.
            recorded = wait_until(lambda: "delivered to=<a@far.test>" in server.mail_log(), 5)
            kill_all(server)
            assert handler.entered == 1  # b's transaction was open when it died

            server.start()
            assert wait_until(lambda: handler.entered >= 2, DRAIN_TIMEOUT), "b not retried"
            handler.release.set()
            server.wait_queue_empty(DRAIN_TIMEOUT)
            copies = sum(1 for m in sink.messages() if m["Message-ID"] == mid)
            log = server.mail_log()
    finally:
        handler.release.set()
        controller.stop()
    assert copies == 1, f"the fast MX got the message {copies} times"
    assert recorded
    assert log.count("delivered to=<a@far.test>") == 1
    assert log.count("delivered to=<b@hang.test>") == 1
    assert ": bounced to=" not in log and ": deferred to=<a@far.test>" not in log
