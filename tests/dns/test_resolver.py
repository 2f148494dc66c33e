"""DnsResolver against a DNS server of the test's own on loopback (``LoopbackDns``):
typed answers per record type, the three outcomes, the cache (proven by the queries the
server saw), timeouts, and when AD may be believed."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helpers.clock import FakeClock
from helpers.dnsserver import LoopbackDns, MakeDns
from mailwright.dns.cache import MAX_NEGATIVE_TTL
from mailwright.dns.names import query_name
from mailwright.dns.resolver import DnsResolver, system_nameservers
from mailwright.dns.servers import parse_nameserver
from mailwright.dns.types import Answer, DnsTemporaryError, MxRecord, TlsaRecord

T = TypeVar("T")

TLSA_HASH = "0123456789abcdef" * 4
ZONE = f"""
$ORIGIN example.test.
$TTL 300
@            IN SOA ns hostmaster 1 3600 600 86400 60
@            IN MX 10 mx
@            IN MX 20 mx2.other.test.
mx           IN A 192.0.2.10
mx           IN A 192.0.2.11
mx           IN AAAA 2001:db8::10
alias        60 IN CNAME alias2
alias2       120 IN CNAME mx
dangling     IN CNAME nowhere
loop1        IN CNAME loop2
loop2        IN CNAME loop1
spf          IN TXT "v=spf1 ip4:192.0.2.0/24 " "-all"
spf          IN TXT "second record"
_25._tcp.mx  IN TLSA 3 1 1 {TLSA_HASH}
nullmx       IN MX 0 .
child        IN NS ns.elsewhere.test.
xn--bcher-kva IN A 192.0.2.30
10.2.0.192.in-addr.arpa. IN PTR mx.example.test.
0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR mx.example.test.
"""
SHORT_TIMEOUT = 0.3  # the silent-server tests: long enough for loopback, short for a test


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def resolver(server: LoopbackDns, **kwargs: Any) -> DnsResolver:
    kwargs.setdefault("timeout", 2.0)
    return DnsResolver([server.address], **kwargs)


def test_every_record_type(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    r = resolver(server)
    assert run(r.mx("example.test")) == Answer(
        records=(MxRecord(10, "mx.example.test"), MxRecord(20, "mx2.other.test")),
        canonical_name="example.test",
    )
    assert sorted(run(r.a("mx.example.test")).records) == ["192.0.2.10", "192.0.2.11"]
    assert run(r.aaaa("mx.example.test")).records == ("2001:db8::10",)
    assert run(r.tlsa("_25._tcp.mx.example.test")).records == (
        TlsaRecord(usage=3, selector=1, matching_type=1, data=bytes.fromhex(TLSA_HASH)),
    )
    assert run(r.ptr("192.0.2.10")).records == ("mx.example.test",)
    assert run(r.ptr("2001:db8::10")).records == ("mx.example.test",)


def test_txt_strings_of_one_record_are_joined(loopback_dns: MakeDns) -> None:
    r = resolver(loopback_dns(ZONE))
    assert sorted(run(r.txt("spf.example.test")).records) == [
        "second record",
        "v=spf1 ip4:192.0.2.0/24 -all",
    ]


def test_nodata_and_nxdomain_are_told_apart(loopback_dns: MakeDns) -> None:
    r = resolver(loopback_dns(ZONE))
    nodata = run(r.mx("mx.example.test"))
    assert nodata.records == () and nodata.exists
    nxdomain = run(r.mx("nope.example.test"))
    assert nxdomain.records == () and not nxdomain.exists
    dangling = run(r.a("dangling.example.test"))  # the rcode speaks for the chain's end
    assert not dangling.exists and dangling.canonical_name == "nowhere.example.test"


def test_null_mx(loopback_dns: MakeDns) -> None:
    r = resolver(loopback_dns(ZONE))
    assert run(r.mx("nullmx.example.test")).records == (MxRecord(0, ""),)


def test_cname_chain_is_followed(loopback_dns: MakeDns) -> None:
    r = resolver(loopback_dns(ZONE))
    answer = run(r.a("alias.example.test"))
    assert sorted(answer.records) == ["192.0.2.10", "192.0.2.11"]
    assert answer.canonical_name == "mx.example.test"


def test_cname_loop_is_a_temporary_error(loopback_dns: MakeDns) -> None:
    r = resolver(loopback_dns(ZONE))
    with pytest.raises(DnsTemporaryError, match="CNAME chain"):
        run(r.a("loop1.example.test"))


def test_names_with_dot_case_and_idn(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    r = resolver(server)
    assert run(r.a("MX.Example.Test.")).records == run(r.a("mx.example.test")).records
    assert server.asked("mx.example.test", "A") == 1  # one cache entry for both spellings
    assert run(r.a("BÜCHER.example.test")).records == ("192.0.2.30",)
    assert server.queries[-1] == ("xn--bcher-kva.example.test", "A")
    assert query_name("_25._tcp.mx.example.test") is not None  # underscores are DNS names
    for impossible in ("", ".", "a..b", "x" * 64 + ".test"):
        assert run(r.a(impossible)) == Answer(records=(), exists=False)
    assert run(r.ptr("not-an-ip")) == Answer(records=(), exists=False)
    assert len(server.queries) == 2  # the impossible names never went out


def test_positive_answer_cached_for_its_ttl(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    clock = FakeClock()
    r = resolver(server, clock=clock)
    first = run(r.a("alias.example.test"))
    server.set_zone(ZONE.replace("192.0.2.10", "192.0.2.99"))
    clock.advance(59)  # the chain's smallest TTL is the first CNAME's 60 s
    assert run(r.a("alias.example.test")) == first
    assert server.asked("alias.example.test", "A") == 1
    clock.advance(1)
    assert "192.0.2.99" in run(r.a("alias.example.test")).records
    assert server.asked("alias.example.test", "A") == 2


def test_negative_answer_cached_for_soa_minimum(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    clock = FakeClock()
    r = resolver(server, clock=clock)
    assert not run(r.a("new.example.test")).exists
    assert run(r.mx("mx.example.test")).records == ()
    server.set_zone(ZONE + "new IN A 192.0.2.40\nmx IN MX 5 mx\n")
    clock.advance(59)  # min(SOA TTL 300, SOA minimum 60) = 60 s (RFC 2308 §5)
    assert not run(r.a("new.example.test")).exists
    assert run(r.mx("mx.example.test")).records == ()
    clock.advance(1)
    assert run(r.a("new.example.test")).records == ("192.0.2.40",)
    assert run(r.mx("mx.example.test")).records == (MxRecord(5, "mx.example.test"),)
    assert server.asked("new.example.test", "A") == 2


def test_negative_ttl_is_capped(loopback_dns: MakeDns) -> None:
    zone = ZONE.replace("1 3600 600 86400 60", "1 3600 600 86400 604800").replace(
        "$TTL 300", "$TTL 604800"
    )
    server = loopback_dns(zone)
    clock = FakeClock()
    r = resolver(server, clock=clock)
    run(r.a("new.example.test"))
    clock.advance(MAX_NEGATIVE_TTL)
    run(r.a("new.example.test"))
    assert server.asked("new.example.test", "A") == 2


def test_negative_answer_without_soa_not_cached(loopback_dns: MakeDns) -> None:
    server = loopback_dns("host.unzoned.test. 300 IN A 192.0.2.50")
    r = resolver(server)
    run(r.mx("host.unzoned.test"))
    run(r.mx("host.unzoned.test"))
    assert server.asked("host.unzoned.test", "MX") == 2


def test_servfail_is_temporary_and_not_cached(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, servfail=["broken.test"])
    r = resolver(server)
    for _ in range(2):
        with pytest.raises(DnsTemporaryError, match="SERVFAIL"):
            run(r.mx("broken.test"))
    assert server.asked("broken.test", "MX") == 2


def test_silent_server_times_out_within_the_bound(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, silent=["example.test"])
    r = resolver(server, timeout=SHORT_TIMEOUT, attempts=1)
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="no answer"):
        run(r.mx("example.test"))
    assert time.monotonic() - started < SHORT_TIMEOUT + 1.0


def test_lost_query_is_asked_again(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, drop=1)
    r = resolver(server, timeout=SHORT_TIMEOUT)  # two attempts by default
    assert run(r.mx("example.test")).records
    assert server.asked("example.test", "MX") == 2


def test_attempts_bound_the_lookup(loopback_dns: MakeDns) -> None:
    silent = loopback_dns(ZONE, silent=["example.test"])
    failing = loopback_dns(ZONE, servfail=["example.test"])
    r = DnsResolver([silent.address, failing.address], timeout=SHORT_TIMEOUT, attempts=3)
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="SERVFAIL") as info:
        run(r.mx("example.test"))
    assert time.monotonic() - started < 3 * SHORT_TIMEOUT + 1.0
    assert "no answer in 0.3s" in str(info.value)
    # The silent server is tried every round; the one that said SERVFAIL only once.
    assert silent.asked("example.test", "MX") == 3
    assert failing.asked("example.test", "MX") == 1


def test_next_server_answers_when_first_fails(loopback_dns: MakeDns) -> None:
    bad = loopback_dns(ZONE, servfail=["example.test"])
    silent = loopback_dns(ZONE, silent=["example.test"])
    good = loopback_dns(ZONE)
    r = DnsResolver([bad.address, silent.address, good.address], timeout=SHORT_TIMEOUT)
    assert run(r.mx("example.test")).records[0] == MxRecord(10, "mx.example.test")
    assert [s.asked("example.test", "MX") for s in (bad, silent, good)] == [1, 1, 1]


def test_referral_from_a_non_recursive_server_is_not_nodata(loopback_dns: MakeDns) -> None:
    lame = loopback_dns(ZONE)
    with pytest.raises(DnsTemporaryError, match="referral"):
        run(resolver(lame).mx("child.example.test"))
    recursive = loopback_dns(ZONE.replace("child ", "; child "))  # not delegated there
    r = DnsResolver([lame.address, recursive.address], timeout=2.0)
    assert not run(r.mx("child.example.test")).exists  # the second server's answer
    assert lame.asked("child.example.test", "MX") == 2  # once each lookup: not re-asked


def test_refused_by_unreachable_server_is_temporary(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    server.stop()  # its port now answers UDP with ICMP port unreachable
    r = resolver(server, timeout=SHORT_TIMEOUT)
    with pytest.raises(DnsTemporaryError):
        run(r.a("mx.example.test"))


def test_ad_believed_only_from_a_trusted_server(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, authentic=["mx.example.test"])
    trusting = resolver(server)  # default: loopback is trusted
    assert run(trusting.tlsa("_25._tcp.mx.example.test")).authentic
    assert not run(trusting.mx("example.test")).authentic  # no AD on that answer
    assert run(trusting.mx("mx.example.test")).authentic  # authenticated NODATA
    distrusting = resolver(server, trusted=[])
    answer = run(distrusting.tlsa("_25._tcp.mx.example.test"))
    assert answer.records and not answer.authentic
    elsewhere = resolver(server, trusted=[ipaddress.ip_network("192.0.2.0/24")])
    assert not run(elsewhere.tlsa("_25._tcp.mx.example.test")).authentic


def test_ipv6_nameserver(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE, host="::1", authentic=["example.test"])
    r = DnsResolver([parse_nameserver(server.nameserver)], timeout=2.0)
    answer = run(r.a("mx.example.test"))
    assert sorted(answer.records) == ["192.0.2.10", "192.0.2.11"] and answer.authentic


def test_large_answer_retried_over_tcp(loopback_dns: MakeDns) -> None:
    many = "\n".join(f'big IN TXT "{i:03d}{"x" * 200}"' for i in range(20))
    r = resolver(loopback_dns(ZONE + many))
    assert len(run(r.txt("big.example.test")).records) == 20


def test_overlapping_lookups_share_one_query(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    r = resolver(server)

    async def many() -> list[Answer[MxRecord]]:
        return await asyncio.gather(*(r.mx("example.test") for _ in range(5)))

    answers = run(many())
    assert len(set(answers)) == 1 and answers[0].records
    assert server.asked("example.test", "MX") == 1


def test_caller_giving_up_does_not_cancel_the_shared_query(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    r = resolver(server)

    async def impatient_and_patient() -> Answer[MxRecord]:
        impatient = asyncio.ensure_future(r.mx("example.test"))
        patient = asyncio.ensure_future(r.mx("example.test"))
        await asyncio.sleep(0)  # both are waiting on the one query now
        impatient.cancel()
        return await patient

    assert run(impatient_and_patient()).records
    assert run(r.mx("example.test")).records  # from the cache
    assert server.asked("example.test", "MX") == 1


def test_cache_is_bounded_lru(loopback_dns: MakeDns) -> None:
    server = loopback_dns(ZONE)
    r = resolver(server, cache_size=2)
    for name in ("mx.example.test", "alias.example.test", "mx.example.test", "spf.example.test"):
        run(r.a(name))
    run(r.a("mx.example.test"))  # recently used: still cached
    run(r.a("alias.example.test"))  # least recently used: evicted, asked again
    assert server.asked("mx.example.test", "A") == 1
    assert server.asked("alias.example.test", "A") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:DB8::1]", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    "text", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[127.0.0.1]:53", "[::1", "[::1]:"]
)
def test_parse_nameserver_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"nameserver {text!r}")):
        parse_nameserver(text)


def test_system_nameservers_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.test\nnameserver 127.0.0.53\nnameserver ::1\n")
    assert system_nameservers(str(conf)) == [("127.0.0.53", 53), ("::1", 53)]
    conf.write_text("search example.test\n")  # no server: the local one (resolv.conf(5))
    assert system_nameservers(str(conf)) == [("127.0.0.1", 53)]
    assert system_nameservers(str(tmp_path / "missing")) == [("127.0.0.1", 53)]
