"""MX routing (RFC 5321 §5.1, RFC 7505) against a real DNS server on loopback: the
candidates a destination yields, in order, and the permanent or temporary failure
each kind of DNS answer means.

Public-looking addresses (80.80.0.x) stand in for MX hosts: the documentation ranges
(192.0.2.0/24, 2001:db8::/32) are special-use, which routing rightly refuses.  Nothing
here connects anywhere.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.resolvers import resolver_for
from mailwright.delivery.relay.mx import (
    MxSettings,
    RouteError,
    host_candidates,
    mx_candidates,
    order_mx,
)
from mailwright.dns.types import MxRecord
from mailwright.smtp import codes

SOA = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
ZONE = f"""
$ORIGIN test.
$TTL 300
{SOA}
several      IN MX 10 mx1.several
several      IN MX 20 mx2.several
several      IN MX 30 mx3.several
mx1.several  IN A 80.80.0.1
mx2.several  IN A 80.80.0.2
mx2.several  IN AAAA 2a00:1450::2
mx3.several  IN A 80.80.0.3
equal        IN MX 10 a.equal
equal        IN MX 10 b.equal
a.equal      IN A 80.80.0.11
b.equal      IN A 80.80.0.12
implicit     IN A 80.80.0.20
implicit     IN TXT "no MX here"
nullmx       IN MX 0 .
cname        IN MX 10 alias.cname
alias.cname  IN CNAME real.cname
real.cname   IN A 80.80.0.30
private      IN MX 10 mx.private
mx.private   IN A 10.1.2.3
mixed        IN MX 10 lo.mixed
mixed        IN MX 20 pub.mixed
lo.mixed     IN A 127.0.0.1
pub.mixed    IN A 80.80.0.40
noaddr       IN MX 10 ghost.noaddr
bare         IN TXT "exists, nothing else"
broken       IN MX 10 mx.broken
mx.broken    IN A 80.80.0.50
many         IN MX 10 m1.many
many         IN MX 20 m2.many
m1.many      IN A 80.80.0.61
m1.many      IN A 80.80.0.62
m1.many      IN A 80.80.0.63
m2.many      IN A 80.80.0.64
m2.many      IN A 80.80.0.65
xn--bcher-kva IN MX 10 mx.xn--bcher-kva
mx.xn--bcher-kva IN A 80.80.0.70
smarthost    IN A 80.80.0.80
self         IN MX 10 mx.self
self         IN MX 20 mx.other
mx.self      IN A 80.80.0.90
mx.self      IN AAAA 2a00:1450::90
mx.other     IN A 80.80.0.91
selfonly     IN MX 10 mx.self
"""
SETTINGS = MxSettings(port=25, max_addresses=5)


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE, servfail={"mx.broken.test", "down.test"})


def candidates(dns: LoopbackDns, domain: str, settings: MxSettings = SETTINGS, seed: int = 0):
    found = asyncio.run(mx_candidates(resolver_for(dns), domain, settings, rng=random.Random(seed)))
    return [str(c) for c in found]


def failure(dns: LoopbackDns, domain: str, settings: MxSettings = SETTINGS) -> RouteError:
    with pytest.raises(RouteError) as info:
        candidates(dns, domain, settings)
    return info.value


def test_mx_hosts_by_preference_with_every_address(dns):
    assert candidates(dns, "several.test") == [
        "mx1.several.test[80.80.0.1]:25",
        "mx2.several.test[80.80.0.2]:25",
        "mx2.several.test[2a00:1450::2]:25",
        "mx3.several.test[80.80.0.3]:25",
    ]


def test_equal_preferences_are_shuffled_by_the_injected_random(dns):
    orders = {tuple(candidates(dns, "equal.test", seed=seed)) for seed in range(20)}
    assert orders == {
        ("a.equal.test[80.80.0.11]:25", "b.equal.test[80.80.0.12]:25"),
        ("b.equal.test[80.80.0.12]:25", "a.equal.test[80.80.0.11]:25"),
    }


def test_order_mx_keeps_preference_order_whatever_the_shuffle():
    records = tuple(MxRecord(p, f"h{i}") for i, p in enumerate([30, 10, 20, 10, 30]))
    for seed in range(10):
        prefs = [r.preference for r in order_mx(records, random.Random(seed))]
        assert prefs == [10, 10, 20, 30, 30]


def test_no_mx_means_the_domain_itself(dns):
    assert candidates(dns, "implicit.test") == ["implicit.test[80.80.0.20]:25"]


def test_null_mx_fails_permanently_with_5_1_10(dns):
    error = failure(dns, "nullmx.test")
    assert error.reply == codes.R556_NULL_MX
    assert str(error.reply) == "556 5.1.10 Recipient address has null MX"


def test_nxdomain_is_permanent_5_1_2(dns):
    error = failure(dns, "nowhere.test")
    assert (error.reply.code, error.reply.enhanced) == (550, "5.1.2")
    assert "NXDOMAIN" in error.reason


def test_domain_without_mx_or_address_is_permanent(dns):
    assert failure(dns, "bare.test").reply == codes.R550_NO_ADDRESS


def test_mx_through_a_cname(dns):
    assert candidates(dns, "cname.test") == ["alias.cname.test[80.80.0.30]:25"]


def test_idn_domain_is_looked_up_by_its_a_labels(dns):
    assert candidates(dns, "bücher.test") == ["mx.xn--bcher-kva.test[80.80.0.70]:25"]
    assert ("xn--bcher-kva.test", "MX") in dns.queries


def test_private_mx_is_a_mail_loop_unless_allowed(dns):
    error = failure(dns, "private.test")
    assert error.reply == codes.R554_MAIL_LOOP
    assert "mx.private.test[10.1.2.3]:25" in error.reason
    allowed = MxSettings(port=25, max_addresses=5, allow_private=True)
    assert candidates(dns, "private.test", allowed) == ["mx.private.test[10.1.2.3]:25"]


def test_a_loopback_mx_is_skipped_when_a_public_one_exists(dns):
    assert candidates(dns, "mixed.test") == ["pub.mixed.test[80.80.0.40]:25"]


def test_our_own_listener_is_a_loop_even_when_private_is_allowed(dns):
    own = MxSettings(
        port=25, max_addresses=5, allow_private=True, own_endpoints={("127.0.0.1", 25)}
    )
    assert candidates(dns, "mixed.test", own) == ["pub.mixed.test[80.80.0.40]:25"]
    other_port = MxSettings(
        port=2525, max_addresses=5, allow_private=True, own_endpoints={("127.0.0.1", 25)}
    )
    assert candidates(dns, "mixed.test", other_port) == [
        "lo.mixed.test[127.0.0.1]:2525",
        "pub.mixed.test[80.80.0.40]:2525",
    ]


def test_an_mx_on_one_of_our_interface_addresses_is_a_loop_unless_allowed(dns):
    """A public address of this host's interfaces is ourselves whatever the port
    (Postfix: "loops back to myself"); written in any form, it still matches."""
    ours = {"80.80.0.90", "2a00:1450:0:0:0:0:0:90"}
    own = MxSettings(port=2525, max_addresses=5, own_addresses=ours)
    assert candidates(dns, "self.test", own) == ["mx.other.test[80.80.0.91]:2525"]
    error = failure(dns, "selfonly.test", own)
    assert error.reply == codes.R554_MAIL_LOOP and error.reply.enhanced == "5.4.6"
    assert "mx.self.test[80.80.0.90]:2525" in error.reason
    assert "mx.self.test[2a00:1450::90]:2525" in error.reason
    allowed = MxSettings(port=2525, max_addresses=5, allow_private=True, own_addresses=ours)
    assert candidates(dns, "selfonly.test", allowed) == [
        "mx.self.test[80.80.0.90]:2525",
        "mx.self.test[2a00:1450::90]:2525",
    ]
    assert candidates(dns, "selfonly.test") == [  # not ours: a public MX like any other
        "mx.self.test[80.80.0.90]:25",
        "mx.self.test[2a00:1450::90]:25",
    ]


def test_addresses_are_bounded(dns):
    three = MxSettings(port=25, max_addresses=3)
    assert candidates(dns, "many.test", three) == [
        "m1.many.test[80.80.0.61]:25",
        "m1.many.test[80.80.0.62]:25",
        "m1.many.test[80.80.0.63]:25",
    ]
    assert ("m2.many.test", "A") not in dns.queries  # not even looked up


def test_mx_hosts_without_address_are_temporary(dns):
    error = failure(dns, "noaddr.test")
    assert error.reply == codes.R451_NO_MX_ADDRESS
    assert "ghost.noaddr.test" in error.reason


def test_dns_failure_is_temporary_4_4_3(dns):
    error = failure(dns, "down.test")
    assert error.reply == codes.R451_DNS_TEMPORARY
    assert (error.reply.code, error.reply.enhanced) == (451, "4.4.3")
    assert failure(dns, "broken.test").reply == codes.R451_DNS_TEMPORARY


def test_address_literal_needs_no_dns(dns):
    allowed = MxSettings(port=2525, max_addresses=5, allow_private=True)
    assert candidates(dns, "[127.0.0.2]", allowed) == ["127.0.0.2[127.0.0.2]:2525"]
    assert dns.queries == []
    assert failure(dns, "[127.0.0.2]").reply == codes.R554_MAIL_LOOP


def test_explicit_next_hop_skips_mx_and_the_private_rule(dns):
    found = asyncio.run(host_candidates(resolver_for(dns), "smarthost.test", SETTINGS, 587))
    assert [str(c) for c in found] == ["smarthost.test[80.80.0.80]:587"]
    assert ("smarthost.test", "MX") not in dns.queries
    found = asyncio.run(host_candidates(resolver_for(dns), "10.0.0.5", SETTINGS, 25))
    assert [str(c) for c in found] == ["10.0.0.5[10.0.0.5]:25"]


def test_mx_filter_keeps_only_allowed_hosts_and_refusing_all_is_temporary(dns):
    async def only_mx2(hosts, authentic):
        assert authentic is False  # LoopbackDns set no AD for these names
        return [h for h in hosts if h.startswith("mx2.")], {
            h: f"{h} not in policy" for h in hosts if not h.startswith("mx2.")
        }

    async def none(hosts, authentic):
        return [], {h: f"{h} not in policy" for h in hosts}

    def run(mx_filter):
        return asyncio.run(
            mx_candidates(
                resolver_for(dns),
                "several.test",
                SETTINGS,
                rng=random.Random(0),
                mx_filter=mx_filter,
            )
        )

    assert [str(c) for c in run(only_mx2)] == [
        "mx2.several.test[80.80.0.2]:25",
        "mx2.several.test[2a00:1450::2]:25",
    ]
    with pytest.raises(RouteError) as info:
        run(none)
    assert info.value.reply == codes.R451_MTA_STS_NO_MX
    assert "mx1.several.test not in policy" in info.value.reason
