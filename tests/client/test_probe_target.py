"""``client.probe.target.split_target``: HOST[:PORT] as users write it."""

from __future__ import annotations

import pytest

from mailwright.client.probe.dialog import Target
from mailwright.client.probe.target import TargetError, split_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.org", ("mx.example.org", 25)),
        ("mx.example.org:2525", ("mx.example.org", 2525)),
        ("192.0.2.25", ("192.0.2.25", 25)),
        ("192.0.2.25:587", ("192.0.2.25", 587)),
        ("[2001:db8::25]:465", ("2001:db8::25", 465)),
        ("[2001:db8::25]", ("2001:db8::25", 25)),
        ("2001:db8::25", ("2001:db8::25", 25)),
        (" mx.example.org. ", ("mx.example.org.", 25)),
    ],
)
def test_targets_users_write(text: str, expected: tuple[str, int]) -> None:
    assert split_target(text) == expected


@pytest.mark.parametrize(
    "text", ["", ":25", "mx.example.org:", "mx.example.org:0", "mx..example", "[mx]:25",
             "[2001:db8::1]25", "-mx.example.org", "2001:db8::zz"],
)  # fmt: skip
def test_bad_targets_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(TargetError):
        split_target(text)


@pytest.mark.parametrize(
    ("host", "domain"),
    [("mx.example.org", "mx.example.org"), ("192.0.2.1", "[192.0.2.1]"),
     ("2001:db8::1", "[IPv6:2001:db8::1]")],
)  # fmt: skip
def test_relay_forms_use_an_address_literal_for_an_ip_target(host: str, domain: str) -> None:
    # RFC 5321 §4.1.3: the domain of user%other@HOST when HOST is an address.
    assert Target(host, host).domain_part == domain
