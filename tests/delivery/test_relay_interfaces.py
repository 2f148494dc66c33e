"""This host's interface addresses as the relay's loop check reads them: Linux's
``/proc/net/fib_trie`` (IPv4 local host routes) and ``/proc/net/if_inet6``.

The parsers get the tables' real layout (copied from a Linux 6.x host, one public
address added); the live read is checked against what every Linux host has
(loopback), and the relay built by ``build_remote_agent`` carries the set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.dnsserver import MakeDns
from helpers.resolvers import resolver_for
from mailwright.config import parse_config
from mailwright.delivery.relay.build import build_remote_agent
from mailwright.delivery.relay.interfaces import (
    PROC_NET,
    fib_trie_addresses,
    if_inet6_addresses,
    interface_addresses,
)

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 80.80.0.0/24 2 0 2
        +-- 80.80.0.0/30 2 0 2
           |-- 80.80.0.0
              /24 link UNICAST
           |-- 80.80.0.2
              /32 host LOCAL
        |-- 80.80.0.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
"""

IF_INET6 = """\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
2a001450000000000000000000000090 04 40 00 80     eth0
"""


def test_fib_trie_yields_the_local_host_routes_only():
    # Not the network (80.80.0.0/24 UNICAST), not the broadcast, not 127.0.0.0/8.
    assert fib_trie_addresses(FIB_TRIE) == {"127.0.0.1", "80.80.0.2"}


def test_if_inet6_yields_every_address_in_text_form():
    assert if_inet6_addresses(IF_INET6) == {"fe80::fc:ff:fe00:1", "::1", "2a00:1450::90"}
    assert if_inet6_addresses("garbage\n\nzz 01\n") == set()


def test_tables_are_read_from_the_folder_and_a_missing_one_is_no_error(tmp_path: Path):
    (tmp_path / "fib_trie").write_text(FIB_TRIE, "ascii")
    assert interface_addresses(tmp_path) == {"127.0.0.1", "80.80.0.2"}
    (tmp_path / "if_inet6").write_text(IF_INET6, "ascii")
    assert "2a00:1450::90" in interface_addresses(tmp_path)
    assert interface_addresses(tmp_path / "absent") == frozenset()


@pytest.mark.skipif(not (PROC_NET / "fib_trie").exists(), reason="Linux /proc/net only")
def test_this_host_and_the_built_relay_know_its_loopback(tmp_path: Path, loopback_dns: MakeDns):
    live = interface_addresses()
    assert "127.0.0.1" in live
    dns = loopback_dns(
        "$ORIGIN test.\n@ 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"
    )
    doc = {"data_dir": str(tmp_path / "data"), "outbound": {"port": 2525}}
    agent = build_remote_agent(parse_config(doc), resolver_for(dns))
    assert "127.0.0.1" in agent.mx.own_addresses
