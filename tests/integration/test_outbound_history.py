"""What a relay attempt leaves behind, end to end: the attempt history's session per
recipient (host name and address, TLS version and cipher, the TLS policy, the replies
that concern that recipient), ``mailwright queue show`` printing it, the bounce's
Remote-MTA as a host name (RFC 3464 §2.3.5) read back with ``email``, and an MX that
is reachable over IPv6 only.

The peers are aiosmtpd servers (STARTTLS with a trustme certificate; per-recipient
RCPT replies) on loopback; DNS is a dnslib server on loopback.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.relaykit import (
    PerRecipient,
    RelayHarness,
    dsn_status,
    free_shared_port,
    relay_config,
    run,
)
from helpers.servers import to_toml
from mailwright.spool.model import RecipientStatus

pytestmark = pytest.mark.interop

SOA = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
ZONE = f"""
$ORIGIN test.
$TTL 300
{SOA}
partial      IN MX 10 mx.partial
mx.partial   IN A 127.0.0.8
six          IN MX 10 mx.six
mx.six       IN AAAA ::1
"""


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


def starttls_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a certificate for mx.partial.test (from a CA the relay
    does not trust: opportunistic TLS does not check it, RFC 7435)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.partial.test").configure_cert(context)
    return context


def queue_cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", "queue", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    return done.stdout


def test_attempt_history_keeps_each_recipients_session_and_queue_show_prints_it(
    tmp_path: Path, dns: LoopbackDns
) -> None:
    port = free_shared_port(["127.0.0.8"])
    handler = PerRecipient(data_reply="250 2.0.0 Queued as H1")
    controller = Controller(
        handler, hostname="127.0.0.8", port=port, tls_context=starttls_context(tmp_path)
    )
    controller.start()
    doc = relay_config(tmp_path, dns, port)
    try:

        async def main():
            h = RelayHarness(dns, doc)
            message = await h.put("ok@partial.test", "later@partial.test", "bad@partial.test")
            await h.run_once()
            (queued,) = await h.queued()
            history = await h.store.attempts(message.queue_id)
            bounces = await h.bounces()
            await h.close()
            return queued, history, bounces

        queued, history, bounces = run(main())
    finally:
        controller.stop()
    assert {r.recipient.address: r.status for r in queued.recipients} == {
        "ok@partial.test": RecipientStatus.DELIVERED,
        "later@partial.test": RecipientStatus.PENDING,
        "bad@partial.test": RecipientStatus.FAILED,
    }
    assert handler.delivered == [["ok@partial.test"]]
    by_position = {a.position: a for a in history}
    assert sorted(by_position) == [0, 1, 2]
    for attempt in history:
        s = attempt.session
        assert s is not None
        assert (s.host, s.address, s.port) == ("mx.partial.test", "127.0.0.8", port)
        assert s.tls_version in ("TLSv1.2", "TLSv1.3") and s.tls_cipher
        assert (s.tls_mode, s.tls_source) == ("may", "default")
        assert attempt.remote_host == f"mx.partial.test[127.0.0.8]:{port}"
    ok, later, bad = (by_position[i].session for i in range(3))
    assert ok is not None and later is not None and bad is not None
    # The opening (EHLO again after STARTTLS, RFC 3207 §4.2), MAIL, its own RCPT, the data.
    opening = ["greeting", "ehlo", "starttls", "ehlo", "mail"]
    assert [r.stage for r in ok.replies] == [*opening, "rcpt", "data", "message"]
    assert [r.stage for r in bad.replies] == [*opening, "rcpt", "data", "message"]
    rcpts = {
        r.command: str(r.reply) for s in (ok, later, bad) for r in s.replies if r.stage == "rcpt"
    }
    assert rcpts == {
        "RCPT TO:<ok@partial.test>": "250 2.1.5 Ok",
        "RCPT TO:<later@partial.test>": "450 4.2.1 Mailbox busy, try later",
        "RCPT TO:<bad@partial.test>": "550 5.1.1 No such user",
    }
    for session, address in ((ok, "ok@"), (later, "later@"), (bad, "bad@")):
        named = [r.command for r in session.replies if "@partial.test" in r.command]
        assert all(address in c for c in named)  # no other recipient's RCPT in its timeline
    assert str(ok.replies[-1].reply) == "250 2.0.0 Queued as H1"

    # The bounce names the host that refused, by name, and carries its reply.
    (dsn,) = bounces
    assert dsn_status(dsn) == [("rfc822; bad@partial.test", "failed", "5.1.1")]
    (block,) = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
    fields = block.get_payload()[1]
    assert fields["Remote-MTA"] == "dns; mx.partial.test"
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    # The peer's own reply: "host ... said:" (RFC 3464 §2.3.6, diagnostic type smtp).
    human = next(p for p in dsn.walk() if p.get_content_type() == "text/plain")
    text = human.get_payload(decode=True).decode()
    said = f"<bad@partial.test>: host mx.partial.test[127.0.0.8]:{port} said: 550 5.1.1"
    assert f"{said} No such user" in text.splitlines()

    # queue show: the per-recipient timeline, as text and JSON.
    config = tmp_path / "cfg.toml"
    config.write_text(to_toml(doc), "utf-8")
    text = queue_cli(config, "show", queued.queue_id)
    timeline = text.split("History:\n", 1)[1]
    assert f"host mx.partial.test [127.0.0.8]:{port}, TLSv1." in timeline
    assert "tls policy may (default: opportunistic STARTTLS)" in timeline
    bad_part = timeline.split("\n  bad@partial.test\n", 1)[1]
    assert "RCPT TO:<bad@partial.test> -> 550 5.1.1 No such user" in bad_part
    assert "  bounced  550 5.1.1 No such user" in bad_part
    later_part = timeline.split("\n  later@partial.test\n", 1)[1].split("\n  bad@", 1)[0]
    assert "RCPT TO:<later@partial.test> -> 450 4.2.1 Mailbox busy" in later_part
    assert "<bad@partial.test>" not in later_part and "<ok@partial.test>" not in later_part
    record = json.loads(queue_cli(config, "show", queued.queue_id, "--json"))
    sessions = {h["address"]: h["session"] for h in record["history"]}
    assert sessions["bad@partial.test"]["host"] == "mx.partial.test"
    assert sessions["bad@partial.test"]["address"] == "127.0.0.8"
    assert sessions["bad@partial.test"]["tls_policy"]["mode"] == "may"
    assert sessions["bad@partial.test"]["tls"]["version"].startswith("TLSv1.")
    assert sessions["bad@partial.test"]["replies"][-3]["reply"] == {
        "code": 550,
        "enhanced": "5.1.1",
        "text": "No such user",
    }


def free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def ipv6_loopback() -> bool:
    try:
        free_ipv6_port()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
def test_mx_with_only_an_ipv6_address_gets_the_mail(tmp_path: Path, dns: LoopbackDns) -> None:
    """An MX whose only address is an AAAA record (::1 here): the relay connects over
    IPv6 and the history names the address; ``[outbound] port`` is global, so the
    peer listens on that port on ::1."""
    port = free_ipv6_port()
    handler = PerRecipient(data_reply="250 2.0.0 Queued as H1")
    controller = Controller(handler, hostname="::1", port=port)
    controller.start()
    try:

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            await h.put("ok@six.test")
            await h.run_once()
            queued = await h.queued()
            await h.close()
            return h, queued

        h, queued = run(main())
    finally:
        controller.stop()
    assert queued == []  # delivered: nothing left (the history goes with the message)
    assert handler.delivered == [["ok@six.test"]]
    assert [kind for kind, _, _ in h.events] == ["delivered"]
    (result,) = h.results
    assert result.remote_host == f"mx.six.test[::1]:{port}"
    assert result.session is not None
    assert (result.session.host, result.session.address) == ("mx.six.test", "::1")
    assert ("mx.six.test", "AAAA") in dns.queries
