"""The public surface of ``mailwright.smtp``."""

from __future__ import annotations

import re

import pytest

import mailwright.smtp as core


def _isort_key(name: str) -> tuple[int, str]:
    # RUF022's "isort-style" order: SCREAMING_CASE, then CamelCase, then the rest.
    if name.isupper() or re.fullmatch(r"[A-Z0-9_]+", name):
        return 0, name
    if name[0].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted_and_unique() -> None:
    assert list(core.__all__) == sorted(core.__all__, key=_isort_key)
    assert len(set(core.__all__)) == len(core.__all__)


@pytest.mark.parametrize("name", core.__all__)
def test_every_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from mailwright.smtp import {name}", namespace)
    assert namespace[name] is getattr(core, name)


def test_public_names_are_exported() -> None:
    public = {
        name
        for name, value in vars(core).items()
        if not name.startswith("_") and not isinstance(value, type(core))
    }
    assert public - {"annotations"} <= set(core.__all__)


def test_the_seams_are_exported() -> None:
    for name in [
        "ServerConnection",
        "ClientConnection",
        "NEED_DATA",
        "PAUSED",
        "Reply",
        "State",
        "CommandError",
        "EndOfData",
        "DataError",
        "parse_path",
    ]:
        assert name in core.__all__
