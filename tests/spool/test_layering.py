"""Imports go one way: ``delivery`` -> ``queue`` -> ``spool`` (DESIGN "Layout").

Regression (issue 9 item 5): ``spool.scheduler`` imported ``delivery``, which imports
``spool.model`` — a package cycle.  Checked in a fresh interpreter, so what other tests
imported before cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.iter_modules(package.__path__):
    importlib.import_module(sys.argv[1] + "." + info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("mailwright."))))
"""


def imported_by(package: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, package],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {name.split(".")[1] for name in json.loads(out)}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("mailwright.spool", {"queue", "delivery", "net", "obs", "policy", "app", "cli"}),
        ("mailwright.queue", {"delivery", "net", "obs", "policy", "app", "cli"}),
    ],
)
def test_spool_and_queue_import_only_downwards(package: str, forbidden: set[str]) -> None:
    assert imported_by(package) & forbidden == set()
