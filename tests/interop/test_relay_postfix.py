"""The relay delivering to a real Postfix MX (a private instance, DNS off): one
transaction for two recipients, Postfix accepts one into its Maildir and refuses
the other at RCPT; the refusal comes back as one DSN parsed with ``email``."""

from __future__ import annotations

from email import message_from_bytes

import pytest

from helpers.dnsserver import MakeDns
from helpers.postfix import private_postfix
from helpers.procs import wait_until
from helpers.relaykit import RelayHarness, dsn_status, free_shared_port, relay_config, run

pytestmark = pytest.mark.interop

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
pf      IN MX 10 mx.pf
mx.pf   IN A 127.0.0.13
"""


def test_relay_to_a_private_postfix(tmp_path, loopback_dns: MakeDns):
    dns = loopback_dns(ZONE)
    port = free_shared_port(["127.0.0.13"])
    with private_postfix(
        address="127.0.0.13", port=port, domain="pf.test", hostname="mx.pf.test", users=["erin"]
    ) as postfix:

        async def main():
            h = RelayHarness(dns, relay_config(tmp_path, dns, port))
            await h.put("erin@pf.test", "nobody@pf.test")
            await h.run_once()
            bounces = await h.bounces()
            remaining = await h.queued()
            await h.close()
            return h, bounces, remaining

        h, bounces, remaining = run(main())
        (raw,) = postfix.messages("erin")
        stored = message_from_bytes(raw)
        # postlogd writes the delivery and the disconnect lines a moment after the
        # message is in the Maildir and the session ended: wait (bounded) for both.
        wait_until(lambda: "status=sent" in postfix.log() and "rcpt=" in postfix.log(), 10)
        log = postfix.log()
    assert stored["Subject"] == "relayed"
    assert remaining == []
    assert sorted(h.events)[0][:2] == ("bounced", "nobody@pf.test")
    assert ("delivered", "erin@pf.test") in [e[:2] for e in h.events]
    remote = {r.remote_host for r in h.results}
    assert remote == {f"mx.pf.test[127.0.0.13]:{port}"}
    (dsn,) = bounces
    assert dsn_status(dsn) == [("rfc822; nobody@pf.test", "failed", "5.1.1")]
    # Postfix's own log: one connection from us, the message delivered to erin.
    assert "to=<erin@pf.test>, relay=virtual" in log and "status=sent" in log
    # One session (the other connect is the start-up probe), one transaction: both
    # RCPTs in it, one of two accepted.
    assert log.count(" ehlo=1 ") == 1 and "rcpt=1/2" in log, log
