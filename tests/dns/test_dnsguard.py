"""The suite-wide guard (``helpers.dnsguard``, installed by ``tests/conftest.py``) stops
a test from reaching the system resolver or a DNS server off this host."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import dns.message
import dns.query
import pytest

from helpers import dnsguard
from helpers.dnsguard import SystemResolverUsed
from helpers.dnsserver import MakeDns
from mailwright.dns.resolver import DnsResolver
from mailwright.dns.types import DnsTemporaryError

TEST_NET = "192.0.2.53"  # RFC 5737 documentation address: never a real server


@pytest.fixture
def forgive() -> object:
    """The violations these tests make on purpose are not held against them."""
    yield
    dnsguard.violations.clear()


def test_getaddrinfo_of_a_name_is_refused(forgive: object) -> None:
    for lookup in (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex):
        args = ("mail.example.com", 25) if lookup is socket.getaddrinfo else ("mail.example.com",)
        with pytest.raises(SystemResolverUsed, match="use LoopbackDns"):
            lookup(*args)


def test_asyncio_getaddrinfo_is_refused(forgive: object) -> None:
    async def connect() -> None:
        await asyncio.open_connection("mail.example.com", 25)

    with pytest.raises(SystemResolverUsed, match=r"getaddrinfo\('mail.example.com'\)"):
        asyncio.run(connect())


def test_literals_and_localhost_are_allowed() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "LocalHost", None):
        assert socket.getaddrinfo(host, 25, type=socket.SOCK_STREAM)
    assert dnsguard.name_allowed("localhost.") and dnsguard.name_allowed("")
    assert dnsguard.name_allowed("mx.localhost") and dnsguard.name_allowed(b"fe80::1%lo")
    assert not dnsguard.name_allowed("localhost.example.com")
    assert dnsguard.violations == []


def test_resolver_cannot_swallow_a_query_off_this_host(forgive: object) -> None:
    # DnsResolver turns DNS failures into DnsTemporaryError; the guard is not one.
    resolver = DnsResolver([(TEST_NET, 53)], timeout=0.5)
    with pytest.raises(SystemResolverUsed, match=TEST_NET):
        asyncio.run(resolver.mx("example.test"))
    with pytest.raises(SystemResolverUsed):
        dns.query.udp(dns.message.make_query("example.test", "A"), TEST_NET, timeout=0.5)


def test_loopback_server_is_allowed(loopback_dns: MakeDns) -> None:
    server = loopback_dns("x.test. 60 IN A 192.0.2.1", host="::1")
    assert asyncio.run(DnsResolver([server.address]).a("x.test")).records == ("192.0.2.1",)


def test_a_caught_violation_still_fails_the_test(forgive: object) -> None:
    check = dnsguard.check()
    next(check)  # the test body starts
    with contextlib.suppress(BaseException):  # code under test that catches everything
        socket.getaddrinfo("mail.example.com", 25)
    with pytest.raises(AssertionError, match=r"mail\.example\.com.*LoopbackDns"):
        next(check, None)  # teardown


def test_resolver_still_reports_real_failures_as_temporary(loopback_dns: MakeDns) -> None:
    server = loopback_dns("x.test. 60 IN A 192.0.2.1", servfail=["x.test"])
    with pytest.raises(DnsTemporaryError):
        asyncio.run(DnsResolver([server.address]).a("x.test"))
