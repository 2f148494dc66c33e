"""Third-party peers for interop tests."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "MAILWRIGHT_REQUIRE_INTEROP"


def require_tool(name: str) -> str:
    """The path of executable ``name``.  If it is missing the test is skipped, unless
    ``MAILWRIGHT_REQUIRE_INTEROP=1``, in which case it fails saying what to install."""
    path = shutil.which(name)
    if path is not None:
        return path
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{name} not installed, but {REQUIRE_ENV}=1 requires the interop tests "
            f"(install it, e.g. `apt-get install {name}`)",
            pytrace=False,
        )
    pytest.skip(f"{name} not installed")
