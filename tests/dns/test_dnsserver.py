"""The loopback DNS server the suite's DNS tests stand on, checked with dnspython's
plain query functions (not our resolver), so a fault here is not masked by one there."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from helpers.dnsserver import LoopbackDns, MakeDns

ZONE = """
$ORIGIN example.test.
$TTL 300
@            IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@            IN MX 10 mx
mx           IN A 192.0.2.10
mx           IN AAAA 2001:db8::10
alias        IN CNAME mx
txt          IN TXT "v=spf1 " "-all"
_25._tcp.mx  IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
a.b.deep     IN A 192.0.2.20
child        IN NS ns.elsewhere.test.
"""
QUERY_TIMEOUT = 2.0


def ask(server: LoopbackDns, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    query.flags |= dns.flags.AD  # as our resolver asks (RFC 6840 §5.7)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, timeout=QUERY_TIMEOUT, port=server.port)


def test_records_nodata_and_nxdomain(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    mx = ask(server, "example.test", "MX")
    assert [r.to_text() for r in mx.answer[0]] == ["10 mx.example.test."]
    nodata = ask(server, "mx.example.test", "TXT")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    ent = ask(server, "b.deep.example.test", "A")  # an empty non-terminal exists
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
    missing = ask(server, "nope.example.test", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    assert server.queries[-1] == ("nope.example.test", "A")


def test_cname_txt_tlsa_and_tcp(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    alias = ask(server, "ALIAS.example.test.", "A", tcp=True)
    assert [rrset.rdtype for rrset in alias.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    txt = ask(server, "txt.example.test", "TXT")
    assert txt.answer[0][0].strings == (b"v=spf1 ", b"-all")
    tlsa = ask(server, "_25._tcp.mx.example.test", "TLSA")
    assert tlsa.answer[0][0].usage == 3 and len(tlsa.answer[0][0].cert) == 32


def test_ad_servfail_and_silent(loopback_dns: MakeDns) -> None:
    server = loopback_dns(
        ZONE,
        authentic=["mx.example.test"],
        servfail=["txt.example.test"],
        silent=["deep.example.test"],
    )
    assert ask(server, "_25._tcp.mx.example.test", "TLSA").flags & dns.flags.AD
    assert not ask(server, "example.test", "MX").flags & dns.flags.AD
    assert ask(server, "txt.example.test", "TXT").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(dns.exception.Timeout):
        ask(server, "a.b.deep.example.test", "A")


def test_insecure_names_below_an_authentic_one_get_no_ad(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, authentic=["example.test"], insecure=["_25._tcp.mx.example.test"])
    assert ask(server, "mx.example.test", "A").flags & dns.flags.AD
    assert not ask(server, "_25._tcp.mx.example.test", "TLSA").flags & dns.flags.AD


def test_large_udp_answer_is_truncated(loopback_dns: MakeDns) -> None:
    many = "\n".join(f'big IN TXT "{i:03d}{"x" * 60}"' for i in range(20))
    server = loopback_dns(ZONE + many)
    udp = ask(server, "big.example.test", "TXT")
    assert udp.flags & dns.flags.TC
    assert len(ask(server, "big.example.test", "TXT", tcp=True).answer[0]) == 20


def test_set_zone_and_ipv6(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, host="::1")
    assert server.nameserver == f"[::1]:{server.port}"
    assert ask(server, "mx.example.test", "A").answer[0][0].address == "192.0.2.10"
    server.set_zone(ZONE.replace("192.0.2.10", "192.0.2.99"))
    assert ask(server, "mx.example.test", "A").answer[0][0].address == "192.0.2.99"
    assert server.asked("MX.example.test.", "A") == 2


def test_delegated_name_gets_a_referral(loopback_dns: MakeDns) -> None:
    referral = ask(loopback_dns(ZONE), "host.child.example.test", "A")
    assert referral.rcode() == dns.rcode.NOERROR and not referral.answer
    assert [r.rdtype for r in referral.authority] == [dns.rdatatype.NS]
    assert not referral.flags & dns.flags.RA
