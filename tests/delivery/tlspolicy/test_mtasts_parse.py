"""RFC 8461 values without I/O: the TXT record (§3.1), the policy body (§3.2) and MX
pattern matching (§4.1)."""

from __future__ import annotations

import pytest

from mailwright.delivery.tlspolicy.discover import policy_domain
from mailwright.delivery.tlspolicy.mtasts import (
    MAX_AGE_MAX,
    MAX_POLICY_BYTES,
    StsError,
    StsMode,
    StsPolicy,
    mx_matches,
    parse_policy,
    parse_txt_record,
    parse_txt_records,
)


@pytest.mark.parametrize(
    ("text", "policy_id"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),  # RFC 8461 §3.1 example
        ("v=STSv1;id=abc", "abc"),  # the final delimiter is optional
        ("v=STSv1 ; id=abc ; ext_1=some-value;", "abc"),  # WSP around ";", an extension
    ],
)
def test_valid_txt_records_give_their_id(text: str, policy_id: str) -> None:
    record = parse_txt_records([text])
    assert record is not None and record.id == policy_id


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=STSv1;", "no id"),
        ("v=STSv1; id=;", "1-32 letters"),
        ("v=STSv1; id=" + "a" * 33, "1-32 letters"),
        ("v=STSv1; id=a-b;", "1-32 letters"),
        ("v=STSv1; id=a; id=b;", "more than one id"),
        ("v=STSv1; id=a;; x=y", "empty field"),
        ("v=STSv1; id=a; novalue", "no '='"),
        ("v=STSv1; id=a; ext=with space", "malformed"),
        ("v=STSv1 id=a;", "does not begin with v=STSv1"),
    ],
)
def test_invalid_txt_records_say_why(text: str, problem: str) -> None:
    with pytest.raises(StsError, match=problem):
        parse_txt_record(text)
    assert parse_txt_records([text]) is None


def test_records_not_starting_with_the_version_are_discarded() -> None:
    # §3.1: other TXT records at _mta-sts (SPF, verification tokens) do not count...
    record = parse_txt_records(["google-site-verification=x", "v=STSv1; id=one;", "v=STSv12;"])
    assert record is not None and record.id == "one"
    # ...but two STS records are ambiguous: no policy.
    assert parse_txt_records(["v=STSv1; id=one;", "v=STSv1; id=two;"]) is None
    assert parse_txt_records([]) is None


def test_policy_body_crlf_or_lf_unknown_keys_ignored() -> None:
    body = b"version: STSv1\r\nmode: enforce\r\nmx: MX1.example.com.\nmx: *.example.net\r\n"
    body += b"max_age:604800\nfuture_key: whatever\n"
    assert parse_policy(body) == StsPolicy(
        StsMode.ENFORCE, ("mx1.example.com", "*.example.net"), 604800
    )


def test_policy_mode_none_needs_no_mx_and_first_value_wins() -> None:
    policy = parse_policy(b"version: STSv1\nmode: none\nmode: enforce\nmax_age: 0")
    assert policy.mode is StsMode.NONE and policy.mx == () and policy.max_age == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"mode: enforce\nmx: a.example\nmax_age: 1", "version"),
        (b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1", "version"),
        (b"version: STSv1\nmx: a.example\nmax_age: 1", "no mode"),
        (b"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1", "not enforce"),
        (b"version: STSv1\nmode: testing\nmax_age: 1", "no mx"),
        (b"version: STSv1\nmode: enforce\nmx: a.example", "no max_age"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1", "not a number"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901", "not a number"),
        (
            b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: %d" % (MAX_AGE_MAX + 1),
            "above the maximum",
        ),
        (b"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1", "not a host name"),
        (b"version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1", "not a host name"),
        (b"version: STSv1\ngarbage\nmode: enforce\nmx: a.example\nmax_age: 1", "key: value"),
        (b"version: STSv1\xff\n", "UTF-8"),
        (b"version: STSv1\n" + b"#" * MAX_POLICY_BYTES, "more than"),
    ],
)
def test_invalid_policies_say_why(body: bytes, problem: str) -> None:
    with pytest.raises(StsError, match=problem):
        parse_policy(body)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),  # case and trailing dot
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mx1.example.com", True),  # RFC 8461 §4.1's own examples
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "mx1.example.com.evil", False),
    ],
)
def test_mx_pattern_matching(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("given", "looked_up"),
    [
        ("Example.COM.", "example.com"),
        (".example.com", None),
        ("[192.0.2.1]", None),
        ("[IPv6:2001:db8::1]", None),
        ("192.0.2.1", None),
        ("a..b", None),
        ("", None),
    ],
)
def test_policy_domain(given: str, looked_up: str | None) -> None:
    """Which recipient domains MTA-STS is looked up for: names, never address literals."""
    assert policy_domain(given) == looked_up
