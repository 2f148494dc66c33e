"""The protocol core does no I/O (DESIGN principle 1): it imports no asyncio, socket,
ssl, DNS or file code.  Checked twice: at run time in a fresh interpreter, and
statically over every source file of the package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mailwright.smtp

PACKAGE_DIR = Path(mailwright.smtp.__file__).parent
SOURCES = sorted(PACKAGE_DIR.glob("*.py"))

# Never loaded by importing the core (they would mean I/O or concurrency).
FORBIDDEN_AT_RUNTIME = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "select",
    "dns",
    "sqlite3",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "socketserver",
    "http",
    "urllib",
    "uvloop",
    "aiofiles",
    "email",
}
# Never imported by a core source file (os/io/pathlib and friends are file access).
FORBIDDEN_IMPORTS = FORBIDDEN_AT_RUNTIME | {
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "fcntl",
    "mmap",
    "signal",
    "logging",
    "sys",
    "smtplib",
    "aiosmtplib",
    "aiosmtpd",
    "mailwright.net",
    "mailwright.spool",
    "mailwright.queue",
    "mailwright.delivery",
    "mailwright.config",
    "mailwright.runtime",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}

PROBE = """
import importlib, json, pkgutil, sys
baseline = set(sys.modules)
import mailwright.smtp as core
for info in pkgutil.iter_modules(core.__path__):
    importlib.import_module("mailwright.smtp." + info.name)
core.to_ascii_domain("bücher.example")  # the lazily imported IDNA code path
print(json.dumps(sorted(set(sys.modules) - baseline)))
"""


def _top_and_prefixes(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def test_importing_the_core_loads_no_io_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = json.loads(out)
    assert "mailwright.smtp._server" in loaded  # the probe really imported the core
    bad = sorted(m for m in loaded if _top_and_prefixes(m) & FORBIDDEN_AT_RUNTIME)
    assert bad == []


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_source_imports_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = sorted(n for n in _imports(tree) if _top_and_prefixes(n) & FORBIDDEN_IMPORTS)
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_source_calls_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls & FORBIDDEN_CALLS == set(), path.name
    # No attribute access on a name "os"/"io"/"socket", however it got in scope.
    attrs = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    assert attrs & {"os", "io", "socket", "ssl", "asyncio", "sys"} == set(), path.name


def test_the_scan_sees_every_module() -> None:
    names = {p.stem for p in SOURCES}
    assert {
        "__init__",
        "_server",
        "_client",
        "_data",
        "_commands",
        "_address",
        "_state",
        "codes",
        "limits",
    } <= names


def test_the_checks_can_fail() -> None:
    tree = ast.parse("import os\nfrom asyncio import sleep\nimport mailwright.net.tls\n")
    assert {n for n in _imports(tree) if _top_and_prefixes(n) & FORBIDDEN_IMPORTS} == {
        "os",
        "asyncio",
        "mailwright.net.tls",
    }
