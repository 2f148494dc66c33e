"""DANE's TLSA lookup end to end through the queue (RFC 7672 §2.2): the real spool,
runner and relay agent (``RelayHarness``), DNS from a loopback server that sets AD on
the signed names and answers SERVFAIL for the TLSA name — what a validating resolver
returns when an attacker strips or forges the TLSA records — and Postfix's
``smtp-sink`` as the MX hosts (which offers no STARTTLS: any delivery to it is
plaintext)."""

from __future__ import annotations

import logging

import pytest

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.mtasts_env import ServedPolicies
from helpers.relaykit import RelayHarness, free_shared_port, relay_config, run, sinks
from helpers.resolvers import resolver_for
from mailwright.config import parse_config
from mailwright.delivery.tlspolicy.build import build_decider
from mailwright.delivery.tlspolicy.dane import tlsa_name
from mailwright.spool.model import RecipientStatus

pytestmark = pytest.mark.interop

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
far        IN MX 10 mx1.far
mx1.far    IN A 127.0.0.2
backup     IN MX 10 mx1.far
backup     IN MX 20 mx2.backup
mx2.backup IN A 127.0.0.3
"""
MX1 = "mx1.far.test"
ADDRESSES = ["127.0.0.2", "127.0.0.3"]


@pytest.fixture
def port() -> int:
    return free_shared_port(ADDRESSES)


@pytest.fixture
def dns(loopback_dns: MakeDns, port: int) -> LoopbackDns:
    # Everything signed; the TLSA lookup for mx1 fails (bogus at a validating resolver).
    # TLSA names carry the port the MX hosts are contacted on (RFC 7672 §2.2.3).
    return loopback_dns(ZONE, authentic=["test"], servfail=[tlsa_name(MX1, port)])


def harness(tmp_path, dns: LoopbackDns, port: int) -> RelayHarness:
    doc = relay_config(tmp_path, dns, port)
    # DANE and MTA-STS as the composition root builds them (no MTA-STS record here).
    decider = build_decider(parse_config(doc), resolver_for(dns), fetcher=ServedPolicies(b""))
    return RelayHarness(dns, doc, decider=decider)


def test_tlsa_servfail_on_an_authenticated_mx_is_never_a_plaintext_downgrade(tmp_path, dns, port):
    """Regression (security): the only MX host's TLSA lookup fails after a signed MX
    answer.  Before the fix the relay fell back to opportunistic TLS and delivered in
    plaintext to the sink; now the host is unusable and the mail is deferred with
    4.7.5, no connection made, no bounce."""
    with sinks(("127.0.0.2", ()), port=port) as (mx1,):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("x@far.test")
            await h.run_once()
            (queued,) = await h.queued()
            bounces = await h.bounces()
            await h.close()
            return h, queued, bounces

        h, queued, bounces = run(main())
    assert {r.recipient.address: r.status for r in queued.recipients} == {
        "x@far.test": RecipientStatus.PENDING
    }
    (event,) = h.events
    assert event[0] != "delivered" and event[2].startswith("451 4.7.5"), h.events
    reason = h.results[0].reason
    skipped = f"{MX1}[127.0.0.2]:{port}: skipped: TLSA lookup for {tlsa_name(MX1, port)} failed"
    assert skipped in reason
    assert f"MX host {MX1} unusable (RFC 7672 §2.2)" in reason
    assert mx1.dumps() == []
    assert bounces == []


def test_unusable_mx_host_is_skipped_for_the_next_one(tmp_path, dns, port, caplog):
    """The next MX host gets its own DANE decision (authenticated denial of TLSA:
    opportunistic) and takes the mail; the skipped one is never contacted, and the
    log says why it was skipped."""
    caplog.set_level(logging.INFO, logger="mailwright.delivery.relay.agent")
    with sinks(("127.0.0.2", ()), ("127.0.0.3", ()), port=port) as (mx1, mx2):

        async def main():
            h = harness(tmp_path, dns, port)
            await h.put("y@backup.test")
            await h.run_once()
            queued = await h.queued()
            await h.close()
            return h, queued

        h, queued = run(main())
    assert queued == []
    assert [kind for kind, _, _ in h.events] == ["delivered"]
    assert h.results[0].remote_host == f"mx2.backup.test[127.0.0.3]:{port}"
    assert f"no TLSA records at {tlsa_name('mx2.backup.test', port)} (authenticated denial)" in (
        h.results[0].reason
    )
    assert mx1.dumps() == [] and len(mx2.dumps()) == 1
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and f"TLSA lookup for {tlsa_name(MX1, port)} failed" in skipped[0]
