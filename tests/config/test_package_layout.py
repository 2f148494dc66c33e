"""The ``mailwright.config`` package: its modules import one way, and the package
itself is the public face every other module imports from.

``tests/test_import_contract.py`` treats ``config`` as one layer unit (no cycles, no
upward imports); this pins the order inside it: the shared base and error wording,
then the sections, then the root ``Config``, then loading.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailwright.config
from test_import_contract import import_graph

# Lower ranks are imported by higher ones, never the other way; one rank never imports
# another module of its own rank.  nexthop sits below the sections because outbound
# (relayhost, [[transport]]) is written in its syntax.
RANK = {
    "mailwright.config.errors": 0,
    "mailwright.config.base": 0,
    "mailwright.config.nexthop": 1,
    "mailwright.config.listeners": 2,
    "mailwright.config.domains": 2,
    "mailwright.config.tls": 2,
    "mailwright.config.outbound": 2,
    "mailwright.config.access": 2,
    "mailwright.config.host": 2,
    "mailwright.config.root": 3,
    "mailwright.config.loading": 4,
    "mailwright.config": 5,
}
ROOT = Path(__file__).resolve().parents[2]


def test_every_config_module_has_a_rank():
    modules = {name for name in import_graph() if name.split(".")[:2] == ["mailwright", "config"]}
    assert modules == set(RANK)


def test_config_modules_import_one_way():
    graph = import_graph()
    against = sorted(
        f"{name} imports {target}"
        for name in RANK
        for target in graph[name]
        if target in RANK and RANK[target] >= RANK[name]
    )
    assert against == []


def names_imported_from_config() -> set[str]:
    """Every name the code base, its tests and benchmarks import from the package."""
    names: set[str] = set()
    for folder in ("src", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "mailwright.config":
                    names.update(alias.name for alias in node.names)
    return names


def test_the_package_exports_what_the_code_base_imports():
    imported = names_imported_from_config()
    assert {"Config", "ConfigError", "load_config", "parse_config"} <= imported
    assert imported - set(mailwright.config.__all__) == set()
    missing = [name for name in mailwright.config.__all__ if not hasattr(mailwright.config, name)]
    assert missing == []


def test_other_packages_import_the_package_not_its_modules():
    graph = import_graph()
    inside = [
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name not in RANK
        for target in targets
        if target in RANK and target != "mailwright.config"
    ]
    assert inside == []
