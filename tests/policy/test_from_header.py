"""The From: header collector and check (sender-login matching on the header)."""

from __future__ import annotations

import pytest

from mailwright.policy.builtin.from_header import (
    MAX_HEADER_SECTION,
    HeaderCollector,
    check_from_header,
    from_addresses,
)

MESSAGE = (
    b"From: Alice <alice@example.test>, bob@example.test\r\nSubject: x\r\n\r\nFrom: body@x\r\n"
)


class Owners:
    def __init__(self, owned: set[str]) -> None:
        self.owned = owned

    def owns_address(self, login: str, address: str) -> bool:
        return address.lower() in self.owned


@pytest.mark.parametrize("piece", [1, 2, 3, 7, len(MESSAGE)])
def test_collector_keeps_only_the_header_section_however_split(piece: int) -> None:
    collector = HeaderCollector()
    for i in range(0, len(MESSAGE), piece):
        collector.feed(MESSAGE[i : i + piece])
    assert collector.complete
    assert collector.headers == MESSAGE[: MESSAGE.index(b"\r\n\r\n") + 2]
    assert from_addresses(collector.headers) == ["alice@example.test", "bob@example.test"]


def test_collector_is_bounded() -> None:
    collector = HeaderCollector()
    for _ in range(200):
        collector.feed(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    assert collector.complete and len(collector.headers) <= MAX_HEADER_SECTION


def test_every_from_address_must_be_owned() -> None:
    headers = MESSAGE[: MESSAGE.index(b"\r\n\r\n") + 2]
    assert check_from_header(Owners({"alice@example.test"}), "alice", headers) is not None
    owners = Owners({"alice@example.test", "bob@example.test"})
    assert check_from_header(owners, "alice", headers) is None
    assert check_from_header(owners, "alice", b"Subject: none\r\n") == (
        "no address in the From: header"
    )
