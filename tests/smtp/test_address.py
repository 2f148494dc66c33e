"""RFC 5321 §4.1.2 path grammar (with RFC 6531 UTF-8 and address literals)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.smtp import Address, AddressError, RcptTo, parse_path, to_ascii_domain
from mailwright.smtp._address import parse_domain
from mailwright.smtp.limits import MAX_DOMAIN_LENGTH, MAX_LOCAL_PART_LENGTH, MAX_PATH_LENGTH

from .helpers import EHLO, Driver, lines

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"


def mailbox(text: str) -> Address | None:
    return parse_path(text, allow_null=False)


# -- accepted forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "local", "domain"),
    [
        ("<bob@example.com>", "bob", "example.com"),
        ("<Bob.Smith@Example.COM>", "Bob.Smith", "example.com"),  # local part keeps case
        ("<a@b>", "a", "b"),
        ("<x!#$%&'*+-/=?^_`{|}~@example.com>", "x!#$%&'*+-/=?^_`{|}~", "example.com"),
        ('<"john doe"@example.com>', '"john doe"', "example.com"),
        ('<"a\\"b"@example.com>', '"a\\"b"', "example.com"),
        ('<"a\\\\b"@example.com>', '"a\\\\b"', "example.com"),
        ('<"a@b"@example.com>', '"a@b"', "example.com"),
        ('<"a>b"@example.com>', '"a>b"', "example.com"),
        ('<""@example.com>', '""', "example.com"),
        ("<a@123.example>", "a", "123.example"),
        ("<a@x-y.example>", "a", "x-y.example"),
        # RFC 5321 §4.1.3 address literals, normalised
        ("<a@[192.0.2.1]>", "a", "[192.0.2.1]"),
        ("<a@[IPv6:2001:db8::1]>", "a", "[IPv6:2001:db8::1]"),
        ("<a@[ipv6:2001:DB8:0:0:0:0:0:1]>", "a", "[IPv6:2001:db8::1]"),
        ("<a@[IPv6:0:0:0:0:0:0:0:1]>", "a", "[IPv6:::1]"),
        # RFC 5321 §4.1.1.3 / appendix C: source routes are accepted and ignored
        ("<@a.example:u@c.example>", "u", "c.example"),
        ("<@a.example,@b.example:u@c.example>", "u", "c.example"),
        ("<@[192.0.2.1]:u@c.example>", "u", "c.example"),
        # RFC 6531: UTF-8 local parts and U-label domains
        ("<jösé@example.com>", "jösé", "example.com"),
        ("<用户@例子.广告>", "用户", "例子.广告"),
        ("<a@BÜCHER.example>", "a", "bücher.example"),
    ],
)
def test_accepted(path: str, local: str, domain: str) -> None:
    assert mailbox(path) == Address(local, domain)


@pytest.mark.parametrize(
    ("path", "local", "domain"),
    [
        # Relay tests (Postfix's smtpd_relay_restrictions docs): these forms are local
        # addresses; an RFC 5321 parser never routes on "%", "!" or a quoted "@".
        ("<user%other.example@local.example>", "user%other.example", "local.example"),
        ('<"user@other.example"@local.example>', '"user@other.example"', "local.example"),
        ("<other.example!user@local.example>", "other.example!user", "local.example"),
        ("<@other.example:user@local.example>", "user", "local.example"),
    ],
)
def test_relay_test_forms_parse_to_what_they_are(path: str, local: str, domain: str) -> None:
    address = mailbox(path)
    assert address == Address(local, domain)
    assert address is not None and address.domain == "local.example"


def test_null_path() -> None:
    assert parse_path("<>", allow_null=True) is None
    with pytest.raises(AddressError):
        parse_path("<>", allow_null=False)


@pytest.mark.parametrize("path", ["<Postmaster>", "<postmaster>", "<POSTMASTER>"])
def test_postmaster_only_for_rcpt(path: str) -> None:
    assert parse_path(path, allow_null=False, allow_postmaster=True) == Address("postmaster", "")
    with pytest.raises(AddressError):
        parse_path(path, allow_null=True)  # MAIL FROM


def test_postmaster_with_domain_is_an_ordinary_address() -> None:
    address = parse_path("<postmaster@example.com>", allow_null=False, allow_postmaster=True)
    assert address == Address("postmaster", "example.com")


def test_address_views() -> None:
    address = Address("jösé", "bücher.example")
    assert str(address) == "jösé@bücher.example"
    assert address.to_path() == "<jösé@bücher.example>"
    assert address.is_utf8
    assert address.ascii_domain == "xn--bcher-kva.example"
    assert not Address("a", "b.example").is_utf8
    assert str(Address("postmaster", "")) == "postmaster"
    assert to_ascii_domain("[IPv6:::1]") == "[IPv6:::1]"


# -- rejected forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "<a@b@c>",
        "<a..b@c.example>",
        "<.a@c.example>",
        "<a.@c.example>",
        "<a@-b.example>",
        "<a@b-.example>",
        "<a@b_c.example>",
        "<a@b..example>",
        "<a@.b.example>",
        "<a@b.example.>",
        "a@b.example",
        "<a@b.example",
        "a@b.example>",
        "<a@>",
        "<@b.example>",
        "<a>",
        "<>",
        "<a b@c.example>",
        "<a@b c.example>",
        "<a@b:c.example>",
        '<"a"b@c.example>',
        '<"ab@c.example>',
        '<"a\x01"@c.example>',
        '<"a\\é"@c.example>',
        "<a\x01@c.example>",
        "<a(comment)@c.example>",
        "<a@[192.0.2.1>",
        "<a@[300.1.1.1]>",
        "<a@[192.0.2]>",
        "<a@[01.2.3.4]>",
        "<a@[IPv6:zz::1]>",
        "<a@[IPv6:192.0.2.1]>",
        "<a@[IPv6:fe80::1%eth0]>",  # zone ids are no part of RFC 5321 IPv6-addr
        "<a@[]>",
        "<a@[tag:content]>",
        "<@a.example,b.example:u@c.example>",
        "<@a_b.example:u@c.example>",
        "<@a.example u@c.example>",
        "<a@☃.example>",
        "<<a@b.example>>",
    ],
)
def test_rejected(path: str) -> None:
    with pytest.raises(AddressError):
        mailbox(path)


# -- lengths (RFC 5321 §4.5.3.1) --------------------------------------------------------


def _domain(length: int) -> str:
    """A valid domain of exactly ``length`` octets (labels of at most 63)."""
    labels = []
    while length > 63:
        take = 63 if length - 64 >= 1 else 62  # leave a non-empty last label
        labels.append("d" * take)
        length -= take + 1
    labels.append("d" * length)
    return ".".join(labels)


@pytest.mark.parametrize("n", [1, 100, 189, 254, 255, 256])
def test_domain_helper(n: int) -> None:
    assert len(_domain(n)) == n


def test_local_part_limit() -> None:
    ok = "l" * MAX_LOCAL_PART_LENGTH
    assert mailbox(f"<{ok}@example.com>") == Address(ok, "example.com")
    with pytest.raises(AddressError, match="local part"):
        mailbox(f"<{ok}l@example.com>")
    # octets, not characters
    with pytest.raises(AddressError, match="local part"):
        parse_path(f"<{'é' * 33}@example.com>", allow_null=False)


def test_domain_limit() -> None:
    assert parse_domain(_domain(MAX_DOMAIN_LENGTH)) == _domain(MAX_DOMAIN_LENGTH)
    with pytest.raises(AddressError, match="domain longer"):
        parse_domain(_domain(MAX_DOMAIN_LENGTH + 1))
    assert parse_domain("a" * 63 + ".example") == "a" * 63 + ".example"
    with pytest.raises(AddressError, match="63"):
        parse_domain("a" * 64 + ".example")


def test_path_limit() -> None:
    local = "l" * 64
    fits = f"<{local}@{_domain(MAX_PATH_LENGTH - 67)}>"
    assert len(fits) == MAX_PATH_LENGTH
    assert mailbox(fits) is not None
    too_long = f"<{local}@{_domain(MAX_PATH_LENGTH - 66)}>"
    with pytest.raises(AddressError, match="path longer"):
        mailbox(too_long)


def test_path_limit_through_the_server(mode: str) -> None:
    too_long = f"<{'l' * 64}@{_domain(MAX_PATH_LENGTH - 66)}>"
    d = Driver(mode).feed(
        EHLO + lines("MAIL FROM:<a@a.example>", f"RCPT TO:{too_long}", "RCPT TO:<Postmaster>")
    )
    assert (d.command_errors[0].code, d.command_errors[0].enhanced) == (501, "5.1.3")
    assert d.of_type(RcptTo) == [RcptTo(Address("postmaster", ""))]


# -- properties -----------------------------------------------------------------------

atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
dot_atom = (
    st.lists(atoms, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda s: len(s) <= MAX_LOCAL_PART_LENGTH)
)
labels = st.text(alphabet=LDH, min_size=1, max_size=20).filter(
    lambda s: s[0] != "-" and s[-1] != "-"
)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
qcontent = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@settings(deadline=None)
@given(dot_atom, domains)
def test_dot_atom_addresses_parse(local: str, domain: str) -> None:
    assert mailbox(f"<{local}@{domain.upper()}>") == Address(local, domain)


@settings(deadline=None)
@given(qcontent, domains)
def test_quoted_local_parts_parse(content: str, domain: str) -> None:
    quoted = '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if len(quoted) > MAX_LOCAL_PART_LENGTH:
        return
    address = mailbox(f"<{quoted}@{domain}>")
    assert address == Address(quoted, domain)


@settings(deadline=None)
@given(st.lists(domains, min_size=1, max_size=3), dot_atom, domains)
def test_source_routes_are_dropped(route: list[str], local: str, domain: str) -> None:
    adl = ",".join("@" + hop for hop in route)
    path = f"<{adl}:{local}@{domain}>"
    if len(path.encode()) > MAX_PATH_LENGTH:
        return
    assert mailbox(path) == Address(local, domain)


path_chars = st.text(alphabet='<>@."\\[]:,!%-_ \x01aZ09éß用.:IPv6', max_size=40)


@settings(max_examples=250, deadline=None)
@given(st.one_of(path_chars, path_chars.map(lambda s: f"<{s}>"), st.text(max_size=60)))
def test_any_text_parses_or_raises_address_error(text: str) -> None:
    try:
        address = parse_path(text, allow_null=True, allow_postmaster=True)
    except AddressError:
        return
    if address is None:
        return
    # Whatever was accepted is canonical: writing it out and reading it back is stable.
    assert parse_path(address.to_path(), allow_null=False, allow_postmaster=True) == address
