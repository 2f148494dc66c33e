"""Fixtures for the spool tests: real files under tmp_path, a controllable clock."""

from __future__ import annotations

import pytest

from helpers.spoolkit import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
