"""The inbound session package imports one way (issue 9): session -> handlers/auth/
starttls -> view/outcome, the listener imports the session and never the reverse, and
no module of ``mailwright.net`` sits in an import cycle, not even behind
``TYPE_CHECKING`` or inside a function (DESIGN: imports go one way)."""

from __future__ import annotations

import ast
from pathlib import Path

import mailwright.net

NET = Path(mailwright.net.__file__).parent
INBOUND = "mailwright.net.inbound"

# What each module of the session package may import from the package: a layered
# order, with nothing pointing back up.
ALLOWED = {
    "session": {"handlers", "outcome", "sessionlog", "starttls", "view"},
    "handlers": {"auth", "outcome", "received", "view"},
    "auth": {"outcome", "view"},
    "starttls": {"sessionlog"},
    "view": set(),
    "outcome": set(),
    "sessionlog": set(),
    "received": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(NET.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every mailwright module ``path`` imports anywhere in its text (module level,
    inside functions, under ``if TYPE_CHECKING``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from mailwright.net import handover`` imports the submodule.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("mailwright.")}


def net_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in NET.rglob("*.py")}
    return {name: imports_of(path) & modules.keys() for name, path in modules.items()}


def test_session_package_modules_import_in_one_direction():
    graph = net_graph()
    package = {name for name in graph if name.startswith(INBOUND + ".")}
    assert {name.rsplit(".", 1)[1] for name in package} == ALLOWED.keys()
    for name in sorted(package):
        inside = {m.rsplit(".", 1)[1] for m in graph[name] if m.startswith(INBOUND + ".")}
        assert inside <= ALLOWED[name.rsplit(".", 1)[1]], (name, inside)


def test_listener_imports_the_session_never_the_reverse():
    graph = net_graph()
    assert f"{INBOUND}.session" in graph["mailwright.net.listener"]
    for name, imported in graph.items():
        if name.startswith(INBOUND):
            assert not {"mailwright.net.listener", "mailwright.net.handover"} & imported, name


def test_no_type_checking_imports_in_the_session_package():
    for path in sorted((NET / "inbound").glob("*.py")):
        assert "TYPE_CHECKING" not in path.read_text("utf-8"), path.name


def test_no_import_cycle_in_net():
    graph = net_graph()
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
