"""``mailwright send`` without --server: the MX hosts of the first recipient's domain
from a loopback DNS server (``--dns``), tried in preference order, every address until
one answers; implicit MX, null MX and NXDOMAIN."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.dnsserver import LoopbackDns
from helpers.sendcli import send
from helpers.servers import InProcessServer
from mailwright.client.outcome import EXIT_CONNECT, EXIT_USAGE

ZONE = """
$ORIGIN example.test.
$TTL 300
@            IN SOA ns hostmaster 1 3600 600 86400 60
@            IN MX 10 mx1
@            IN MX 20 mx2
@            IN MX 30 mx3
mx1          IN A 127.0.0.2
mx2          IN A 127.0.0.3
mx2          IN A 127.0.0.1
mx3          IN A 127.0.0.1
implicit     IN A 127.0.0.1
nullmx       IN MX 0 .
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[LoopbackDns]:
    with LoopbackDns(ZONE) as server:
        yield server


def test_mx_hosts_in_order_every_address_until_one_answers(
    mw: InProcessServer, dns: LoopbackDns
) -> None:
    run = send(
        "--dns", dns.nameserver, "--port", str(mw.ports["inbound"]),
        "--from", "a@client.test", "--to", "alice@example.test", "--quit-after", "banner",
    )  # fmt: skip
    assert run.status == 0, run
    tries = [line for line in run.lines() if "Trying" in line or line.startswith("T ***")]
    assert tries == [
        "T === Trying mx1.example.test[127.0.0.2]:PORT...",
        "T *** connect: connect failed: Connection refused",
        "T === Trying mx2.example.test[127.0.0.3]:PORT...",
        "T *** connect: connect failed: Connection refused",
        "T === Trying mx2.example.test[127.0.0.1]:PORT...",
    ]
    assert run.lines()[-1].startswith("ok via mx2.example.test[127.0.0.1]:PORT: stopped after")
    assert ("example.test", "MX") in dns.queries


def test_implicit_mx_is_the_domain_itself(mw: InProcessServer, dns: LoopbackDns) -> None:
    run = send(
        "--dns", dns.nameserver, "--port", str(mw.ports["inbound"]),
        "--to", "x@implicit.example.test", "--quit-after", "ehlo",
    )  # fmt: skip
    assert run.status == 0, run
    assert run.lines()[0] == "T === Trying implicit.example.test[127.0.0.1]:PORT..."


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        ("nullmx.example.test", "null MX, the domain accepts no mail (RFC 7505)"),
        ("missing.example.test", "no such domain (NXDOMAIN)"),
    ],
)
def test_domain_without_mail_is_said_so(dns: LoopbackDns, domain: str, problem: str) -> None:
    run = send("--dns", dns.nameserver, "--to", f"x@{domain}")
    assert run.status == EXIT_USAGE, run
    assert run.lines()[0] == f"T *** {domain}: {problem}"


def test_dns_failure_is_the_connection_status() -> None:
    with LoopbackDns(ZONE, servfail=["broken.example.test"]) as server:
        run = send("--dns", server.nameserver, "--to", "x@broken.example.test", "--timeout", "2")
    assert run.status == EXIT_CONNECT, run
    assert run.lines()[0].startswith("T *** MX lookup of broken.example.test failed")
