"""``[dns]``: validated where the operator writes it (each bad entry named, exit 2), and
turned into the resolver the server uses (``delivery.resolver.build_resolver``)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.dnsserver import MakeDns
from mailwright.cli.main import cli
from mailwright.config import ConfigError, DnsConfig, load_config
from mailwright.delivery.resolver import build_resolver
from mailwright.dns.resolver import system_nameservers
from mailwright.dns.servers import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT

EXIT_CONFIG = 2
GOOD_DOMAIN = '[[domain]]\nname = "example.test"\nmailboxes = ["alice"]\n'


def problems(tmp_path: Path, dns_section: str) -> list[str]:
    path = tmp_path / "mailwright.toml"
    path.write_text(GOOD_DOMAIN + "[dns]\n" + dns_section, "utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


@pytest.mark.parametrize(
    ("section", "line"),
    [
        (
            'nameservers = ["127.0.0.1:5353", "ns.example.test"]',
            "dns.nameservers: nameserver 'ns.example.test': not an IP address "
            "(IP, IP:port or [IPv6]:port)",
        ),
        (
            'nameservers = ["127.0.0.1:99999"]',
            "dns.nameservers: nameserver '127.0.0.1:99999': port must be 1-65535",
        ),
        ("timeout = 0", "dns.timeout: must be greater than 0, not 0"),
        ("attempts = 6", "dns.attempts: must be less than or equal to 5, not 6"),
        (
            'trusted_resolvers = ["10.0.0.0/33"]',
            "dns.trusted_resolvers: '10.0.0.0/33' is not an IP network (CIDR)",
        ),
        ("nameserver = []", "dns.nameserver: unknown field"),
    ],
)
def test_bad_dns_setting_named(tmp_path: Path, section: str, line: str) -> None:
    assert problems(tmp_path, section + "\n") == [line]


def test_check_config_exits_2_naming_the_bad_nameserver(tmp_path: Path) -> None:
    path = tmp_path / "mailwright.toml"
    path.write_text(GOOD_DOMAIN + '[dns]\nnameservers = ["[::1"]\n', "utf-8")
    done = CliRunner().invoke(cli, ["check-config", str(path)], catch_exceptions=False)
    assert done.exit_code == EXIT_CONFIG
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: dns.nameservers: nameserver '[::1': expected [IPv6] or [IPv6]:port"
    ]


def test_defaults() -> None:
    resolver = build_resolver(DnsConfig())
    assert resolver.nameservers == system_nameservers()
    assert (resolver.timeout, resolver.attempts) == (DEFAULT_TIMEOUT, DEFAULT_ATTEMPTS)
    assert resolver.trusted == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_configured_resolver_answers_from_the_listed_server(
    tmp_path: Path, loopback_dns: MakeDns
) -> None:
    server = loopback_dns("mx.example.test. 300 IN A 192.0.2.7", authentic=["example.test"])
    path = tmp_path / "mailwright.toml"
    path.write_text(
        GOOD_DOMAIN + f'[dns]\nnameservers = ["{server.nameserver}"]\ntimeout = 1.5\nattempts = 1\n'
        'trusted_resolvers = ["192.0.2.0/24"]\n',
        "utf-8",
    )
    resolver = build_resolver(load_config(path).dns)
    assert resolver.nameservers == [server.address]
    assert (resolver.timeout, resolver.attempts) == (1.5, 1)
    answer = asyncio.run(resolver.a("mx.example.test"))
    assert answer.records == ("192.0.2.7",)
    assert not answer.authentic  # AD from 127.0.0.1, which this config does not trust
