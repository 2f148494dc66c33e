"""``require_tool``: interop tests skip when their peer is missing, unless the run
demands them (``MAILWRIGHT_REQUIRE_INTEROP=1``, as CI does), where they fail loudly."""

from __future__ import annotations

import pytest

from helpers import tools
from helpers.tools import REQUIRE_ENV, require_tool

MISSING = "mailwright-no-such-peer"


def test_present_tool_returns_its_path():
    assert require_tool("sh").endswith("/sh")


def test_missing_tool_skips(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} not installed"):
        require_tool(MISSING)


def test_missing_tool_fails_when_interop_is_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} not installed.*{REQUIRE_ENV}=1"):
        require_tool(MISSING)


def test_swaks_missing_from_path_is_a_skip(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="swaks not installed"):
        require_tool("swaks")
