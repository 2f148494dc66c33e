"""Fixtures for the queue tests: real stores under tmp_path, a controllable clock."""

from __future__ import annotations

import pytest

from helpers.spoolkit import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
