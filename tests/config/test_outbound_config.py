"""``[outbound]`` and ``[[transport]]``: what an operator writes, what the relay gets,
and every mistake named in plain words (one line per problem, all at once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwright.config import (
    DEFAULT_MX_ADDRESSES,
    DEFAULT_MX_SESSIONS,
    SMTP_PORT,
    ConfigError,
    NextHopKind,
    load_config,
    parse_config,
    parse_nexthop,
)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_defaults_mirror_postfix():
    outbound = parse_config({}).outbound
    assert outbound.port == SMTP_PORT == 25
    assert not outbound.allow_private_addresses
    assert outbound.relayhost is None and outbound.relay_nexthop is None
    assert (
        (outbound.max_mx_addresses, outbound.max_mx_sessions)
        == (
            DEFAULT_MX_ADDRESSES,
            DEFAULT_MX_SESSIONS,
        )
        == (5, 2)
    )
    assert outbound.max_connections_per_destination == 20
    assert outbound.connection_reuse_time == 300.0


@pytest.mark.parametrize(
    ("spec", "host", "port", "mx_lookup"),
    [
        ("smarthost.test", "smarthost.test", None, True),
        ("smarthost.test:587", "smarthost.test", 587, True),
        ("[smarthost.test]", "smarthost.test", None, False),
        ("[smarthost.test]:2525", "smarthost.test", 2525, False),
        ("[::1]:25", "::1", 25, False),
        ("192.0.2.1", "192.0.2.1", None, False),  # an address is never an MX lookup
        ("SmartHost.Test.", "smarthost.test", None, True),
    ],
)
def test_relayhost_syntax_is_postfix(spec, host, port, mx_lookup):
    nexthop = parse_config({"outbound": {"relayhost": spec}}).outbound.relay_nexthop
    assert nexthop is not None
    assert (nexthop.kind, nexthop.host, nexthop.port, nexthop.mx_lookup) == (
        NextHopKind.SMTP,
        host,
        port,
        mx_lookup,
    )


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("smtp:[mail.test]:2525", "smtp:[mail.test]:2525"),
        ("smtp:mail.test", "smtp:mail.test"),
        ("lmtp:127.0.0.1:24", "lmtp:[127.0.0.1]:24"),
        ("lmtp:dovecot.test:24", "lmtp:[dovecot.test]:24"),  # LMTP: never MX
        ("lmtp:unix:/run/dovecot/lmtp", "lmtp:unix:/run/dovecot/lmtp"),
        ("local", "local"),
    ],
)
def test_nexthop_forms(spec, text):
    assert str(parse_nexthop(spec)) == text


def test_transport_table_entries(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    path = tmp_path / "ok.toml"
    path.write_text(
        '[[transport]]\ndomain = ".Example.COM"\nnexthop = "smtp:[relay.test]:2525"\n'
        'username = "me"\npassword_file = "secret"\ntls = "verify"\n'
        '[[transport]]\ndomain = "lists.test"\nnexthop = "lmtp:unix:/run/lmtp"\n',
        "utf-8",
    )
    first, second = load_config(path).transports
    assert first.domain == ".example.com" and first.tls == "verify"
    assert first.password_file == tmp_path / "secret"  # relative to the config file
    assert first.matches("a.example.com") and not first.matches("example.com")
    assert second.matches("lists.test") and not second.matches("x.lists.test")
    assert second.nexthop.unix_path == "/run/lmtp"


def test_every_mistake_in_one_pass(tmp_path):
    found = problems(
        tmp_path,
        '[outbound]\nrelayhost = "[10.0.0.1"\nport = 0\n'
        '[[transport]]\ndomain = "a.test"\nnexthop = "smtq:x"\n'
        '[[transport]]\ndomain = "b.test"\nnexthop = "smtp:[h]:99999"\ntls = "maybe"\n'
        '[[transport]]\ndomain = "c.test"\nnexthop = "lmtp:unix:relative"\n',
    )
    assert found == [
        "outbound.port: must be greater than 0, not 0",
        "outbound.relayhost: '[10.0.0.1': missing ']'",
        "transport.0.nexthop: 'smtq:x': expected smtp:HOST, smtp:[HOST]:PORT, "
        "lmtp:HOST:PORT, lmtp:unix:/PATH or local",
        "transport.1.nexthop: '[h]:99999': port must be a number from 1 to 65535",
        "transport.1.tls: must be 'none', 'may', 'encrypt' or 'verify', not 'maybe'",
        "transport.2.nexthop: 'lmtp:unix:relative': the socket path must be absolute",
    ]


def test_password_is_never_inline(tmp_path):
    found = problems(tmp_path, '[outbound]\nrelayhost = "[r.test]"\npassword = "x"\n')
    assert found == ["outbound.password: unknown field"]
    found = problems(tmp_path, '[outbound]\nrelayhost = "[r.test]"\nusername = "me"\n')
    assert found == ["outbound: username and password_file go together (AUTH needs both)"]


def test_transport_needs_domain_and_nexthop(tmp_path):
    found = problems(tmp_path, '[[transport]]\ndomain = "@x"\n')
    assert found == [
        "transport.0.domain: '@x' is not a domain (or .domain for its subdomains)",
        "transport.0.nexthop: is required",
    ]
