"""Every byte-level fixture runs in both feeding modes (see ``helpers.Driver``)."""

from __future__ import annotations

import pytest

from .helpers import MODES


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param
