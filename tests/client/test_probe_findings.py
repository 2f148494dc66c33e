"""The findings registry: ids are stable interface, so their form is checked here."""

from __future__ import annotations

import re

import pytest

from mailwright.client.probe import KINDS, Severity
from mailwright.client.probe.checks.smuggling import VARIANTS
from mailwright.client.probe.findings import finding

ID_FORM = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def test_every_kind_has_a_well_formed_id_and_one_line_texts() -> None:
    for kind_id, kind in KINDS.items():
        assert kind.id == kind_id and ID_FORM.fullmatch(kind_id), kind_id
        for text in (kind.explanation, kind.fix):
            assert text and "\n" not in text and text.endswith((".", ")")), (kind_id, text)


def test_the_issue_s_example_ids_exist() -> None:
    for kind_id in (
        "open-relay",
        "auth-before-tls",
        "no-starttls",
        "expired-certificate",
        "certificate-name-mismatch",
        "user-enumeration",
        "smuggling-bare-lf",
    ):
        assert kind_id in KINDS


def test_every_smuggling_variant_has_its_kind() -> None:
    assert {f"smuggling-{name}" for name, _ in VARIANTS} == {
        k for k in KINDS if k.startswith("smuggling-")
    }
    assert len({data for _, data in VARIANTS}) == len(VARIANTS)
    for _, data in VARIANTS:  # each is a line end, a dot, a line end -- never CRLF.CRLF
        assert data != b"\r\n.\r\n" and b"." in data


def test_severity_parse_and_order() -> None:
    assert Severity.parse(" High ") is Severity.HIGH
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    with pytest.raises(ValueError, match="choose from info, low, medium, high, critical"):
        Severity.parse("severe")
    with pytest.raises(KeyError):
        finding("no-such-finding", "detail")
