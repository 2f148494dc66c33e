"""Fixtures for the queue tests: real stores under tmp_path, a controllable clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.spoolkit import BACKENDS, Clock, StoreFactory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """The runner's tests run unchanged over every ``SpoolStore`` backend."""
    return StoreFactory(request.param, tmp_path)
