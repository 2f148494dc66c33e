"""LocalDirectory: which mailboxes an address reaches."""

from __future__ import annotations

import pytest

from mailwright.accounts.directory import (
    MAX_ALIAS_DEPTH,
    LocalDirectory,
    Mailbox,
    normalize_domain,
)
from mailwright.config import DomainConfig


def mb(address: str) -> Mailbox:
    name, _, domain = address.partition("@")
    return Mailbox(domain, name)


@pytest.fixture
def directory() -> LocalDirectory:
    return LocalDirectory(
        [
            DomainConfig(
                name="example.org",
                mailboxes=["alice", "bob", "carol", "postmaster", "bob+x"],
                aliases={
                    "team": ["alice", "bob"],
                    "everyone": ["team", "carol", "alice"],  # alice twice -> once
                    "friend": ["dave@example.net"],
                    "chain1": ["chain2"],
                    "chain2": ["chain3"],
                    "chain3": ["carol"],
                    "loop-a": ["loop-b", "alice"],
                    "loop-b": ["loop-a", "bob"],
                    "pure-a": ["pure-b"],
                    "pure-b": ["pure-a"],
                },
            ),
            DomainConfig(
                name="Example.NET",
                mailboxes=["dave", "catchme"],
                aliases={"back": ["alice@example.org"]},
                catch_all="catchme",
            ),
            DomainConfig(name="bücher.de", mailboxes=["info"]),
        ]
    )


def test_exact_mailbox(directory: LocalDirectory) -> None:
    assert directory.resolve("alice@example.org") == [mb("alice@example.org")]
    assert directory.resolve("alice@example.org")[0].address == "alice@example.org"


@pytest.mark.parametrize(
    "address", ["ALICE@example.org", "Alice@EXAMPLE.ORG", "alice@example.org."]
)
def test_case_folding(directory: LocalDirectory, address: str) -> None:
    assert directory.resolve(address) == [mb("alice@example.org")]


def test_quoted_local_part_equals_unquoted(directory: LocalDirectory) -> None:
    assert directory.resolve('"alice"@example.org') == [mb("alice@example.org")]


def test_alias_same_domain(directory: LocalDirectory) -> None:
    assert directory.resolve("team@example.org") == [mb("alice@example.org"), mb("bob@example.org")]


def test_alias_nested_is_deduplicated_in_order(directory: LocalDirectory) -> None:
    assert directory.resolve("everyone@example.org") == [
        mb("alice@example.org"),
        mb("bob@example.org"),
        mb("carol@example.org"),
    ]


def test_alias_to_other_local_domain(directory: LocalDirectory) -> None:
    assert directory.resolve("friend@example.org") == [mb("dave@example.net")]
    assert directory.resolve("back@example.net") == [mb("alice@example.org")]


def test_alias_chain(directory: LocalDirectory) -> None:
    assert directory.resolve("chain1@example.org") == [mb("carol@example.org")]


def test_alias_loop_terminates_with_members(directory: LocalDirectory) -> None:
    # Depth-first, first-seen order: loop-a -> loop-b -> (loop-a: skipped), bob; alice.
    assert directory.resolve("loop-a@example.org") == [
        mb("bob@example.org"),
        mb("alice@example.org"),
    ]
    assert directory.resolve("loop-b@example.org") == [
        mb("alice@example.org"),
        mb("bob@example.org"),
    ]


def test_pure_alias_loop_is_unknown(directory: LocalDirectory) -> None:
    assert directory.resolve("pure-a@example.org") is None


def test_alias_depth_is_bounded() -> None:
    depth = MAX_ALIAS_DEPTH + 5
    aliases = {f"a{i}": [f"a{i + 1}"] for i in range(depth)}
    aliases[f"a{depth}"] = ["end"]
    d = LocalDirectory([DomainConfig(name="x.test", mailboxes=["end"], aliases=aliases)])
    assert d.resolve(f"a{depth - 2}@x.test") == [mb("end@x.test")]  # shallow enough
    assert d.resolve("a0@x.test") is None  # too deep: cut off, not recursed forever


def test_plus_addressing(directory: LocalDirectory) -> None:
    assert directory.resolve("alice+news@example.org") == [mb("alice@example.org")]
    assert directory.resolve("team+x@example.org") == [
        mb("alice@example.org"),
        mb("bob@example.org"),
    ]
    assert directory.resolve("alice+a+b@example.org") == [mb("alice@example.org")]


def test_plus_addressing_full_local_part_wins(directory: LocalDirectory) -> None:
    assert directory.resolve("bob+x@example.org") == [mb("bob+x@example.org")]


def test_plus_addressing_unknown_base(directory: LocalDirectory) -> None:
    assert directory.resolve("nobody+tag@example.org") is None
    assert directory.resolve("+tag@example.org") is None


def test_custom_delimiter() -> None:
    d = LocalDirectory([DomainConfig(name="x.test", mailboxes=["alice"])], recipient_delimiter="-")
    assert d.resolve("alice-list@x.test") == [mb("alice@x.test")]
    assert d.resolve("alice+list@x.test") is None


def test_delimiter_disabled() -> None:
    d = LocalDirectory([DomainConfig(name="x.test", mailboxes=["alice"])], recipient_delimiter="")
    assert d.resolve("alice+list@x.test") is None
    assert d.resolve("alice@x.test") == [mb("alice@x.test")]


def test_catch_all(directory: LocalDirectory) -> None:
    assert directory.resolve("whoever@example.net") == [mb("catchme@example.net")]
    assert directory.resolve("dave@example.net") == [mb("dave@example.net")]


def test_unknown_is_none(directory: LocalDirectory) -> None:
    assert directory.resolve("nobody@example.org") is None
    assert directory.resolve("@example.org") is None
    assert directory.resolve("nobody") is None


def test_non_local_domain(directory: LocalDirectory) -> None:
    assert not directory.is_local_domain("example.com")
    assert directory.resolve("alice@example.com") is None
    assert directory.resolve("alice@sub.example.org") is None


def test_is_local_domain_case_insensitive(directory: LocalDirectory) -> None:
    assert directory.is_local_domain("EXAMPLE.org")
    assert directory.is_local_domain("example.net")


@pytest.mark.parametrize(
    "domain", ["bücher.de", "BÜCHER.DE", "xn--bcher-kva.de", "XN--BCHER-KVA.de"]
)
def test_idn_both_forms(directory: LocalDirectory, domain: str) -> None:
    assert directory.is_local_domain(domain)
    assert directory.resolve(f"info@{domain}") == [Mailbox("xn--bcher-kva.de", "info")]


def test_idn_configured_as_a_label() -> None:
    d = LocalDirectory([DomainConfig(name="xn--bcher-kva.de", mailboxes=["info"])])
    assert d.is_local_domain("bücher.de")
    assert d.resolve("info@bücher.de") == [Mailbox("xn--bcher-kva.de", "info")]


def test_idn_no_idna2003_mapping() -> None:
    # IDNA 2003 would map ß to ss: straße.de must not claim strasse.de.
    d = LocalDirectory([DomainConfig(name="straße.de", mailboxes=["info"])])
    assert normalize_domain("straße.de") == "xn--strae-oqa.de"
    assert d.is_local_domain("xn--strae-oqa.de")
    assert not d.is_local_domain("strasse.de")


def test_normalize_domain_never_fails() -> None:
    assert normalize_domain("xn--zz!!.example") == "xn--zz!!.example"
    assert normalize_domain("a" * 70 + "é.test").startswith("xn--")


def test_postmaster_any_case_and_bare(directory: LocalDirectory) -> None:
    expected = [mb("postmaster@example.org")]
    assert directory.resolve("PostMaster@example.org") == expected
    assert directory.resolve("Postmaster") == expected
    assert directory.resolve("POSTMASTER") == expected


def test_postmaster_of_domain_without_one_uses_catch_all_then_primary(
    directory: LocalDirectory,
) -> None:
    assert directory.resolve("postmaster@example.net") == [mb("catchme@example.net")]
    assert directory.resolve("Postmaster@bücher.de") == [mb("postmaster@example.org")]


def test_postmaster_without_any_is_none() -> None:
    d = LocalDirectory([DomainConfig(name="x.test", mailboxes=["alice"])])
    assert d.resolve("postmaster@x.test") is None
    assert d.resolve("Postmaster") is None
    assert LocalDirectory([]).resolve("Postmaster") is None


def test_postmaster_alias_on_primary() -> None:
    d = LocalDirectory(
        [
            DomainConfig(name="a.test", mailboxes=["root"], aliases={"postmaster": ["root"]}),
            DomainConfig(name="b.test", mailboxes=["x"]),
        ]
    )
    assert d.resolve("postmaster@b.test") == [mb("root@a.test")]


def test_known_mailboxes(directory: LocalDirectory) -> None:
    boxes = set(directory.known_mailboxes())
    assert mb("alice@example.org") in boxes
    assert mb("catchme@example.net") in boxes
    assert Mailbox("xn--bcher-kva.de", "info") in boxes
    assert len(boxes) == 8
