"""The import contract (issue 9 item 7, DESIGN "imports go one way").

Every module under ``src/mailwright`` is parsed with ``ast``; every import counts —
module level, inside functions, under ``if TYPE_CHECKING`` — because a cycle hidden
behind any of them still couples the two modules.  Two rules:

1. No import cycle between modules (the cycle is printed).
2. No import against the layer order below.  A *unit* is a top-level package or
   module of ``mailwright``; a unit may import units of lower layers only, never one of
   its own layer or a higher one.  The order is the strictest that today's imports
   allow (derived from them, not wished for):

   ``__main__``
   > ``cli`` (the commands)
   > ``runtime`` (the process model: the one composition root, the child supervisor,
     the control channel, start-up checks) | ``client`` (the test client's logic:
     send, mx, probe, explain, session)
   > ``delivery`` (agents: router, Maildir, the relay, which drives ``net.outbound``;
     the outbound TLS policy)
   > ``net`` (asyncio transport: listeners, the inbound and outbound sessions, TLS)
   > ``policy`` | ``obs``
   > ``queue`` (runner, retry, DSNs, the agent seam)
   > ``spool`` | ``accounts`` (storage; local domains and users)
   > ``config``
   > ``smtp`` (the sans-IO protocol core imports nothing of ours) | ``fs`` (durable
     writes, used by spool, delivery, accounts and TLS; knows nothing of mail) | ``dns``
     (the resolver seam: typed answers, no mail knowledge)
   > ``__init__`` (the package itself: version)

Inside a unit, modules may import each other as long as there is no cycle.

3. A private module (``smtp._sasl``, ``spool._db``) is imported only inside its own
   package; other units use the package's public names (``from mailwright.smtp import
   normalize_username``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailwright

PACKAGE = Path(mailwright.__file__).parent
ROOT = PACKAGE.parent

LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"runtime", "client"},
    {"delivery"},
    {"net"},
    {"policy", "obs"},
    {"queue"},
    {"spool", "accounts"},
    {"config"},
    {"smtp", "fs", "dns"},
    {"__init__"},
]
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``module`` imports anywhere in its text."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from mailwright.spool import model`` depends on the submodule;
                # ``from mailwright.spool import SpoolStore`` on the package.  (Every
                # submodule import also runs its packages' ``__init__``: that implicit
                # step is left out, or each re-exporting ``__init__`` would be a cycle.)
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    return (found & known) - {module}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imports_of(name, path, known) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative DFS, three colours)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_every_unit_has_a_layer():
    units = {unit_of(name) for name in import_graph()}
    assert units - RANK.keys() == set(), "add the new unit to LAYERS"


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def against_layers(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} imports {target} ({unit_of(name)} may not import {unit_of(target)})"
        for name, targets in graph.items()
        for target in targets
        if unit_of(name) != unit_of(target) and RANK[unit_of(target)] <= RANK[unit_of(name)]
    )


def test_imports_follow_the_layer_order():
    against = against_layers(import_graph())
    assert against == [], "\n".join(against)


def private_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a ``_private`` module from outside the package that holds it."""
    return sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        for target in targets
        if target.rpartition(".")[2].startswith("_")
        and not target.endswith("__")
        and not name.startswith(target.rpartition(".")[0] + ".")
        and name != target.rpartition(".")[0]
    )


def test_private_modules_stay_inside_their_package():
    found = private_imports(import_graph())
    assert found == [], "\n".join(found)


def test_the_contract_sees_a_cycle_and_an_upward_import():
    """The checks themselves can fail: made-up graphs with each defect."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    upward = {"mailwright.smtp.codes": {"mailwright.net.tls"}, "mailwright.net.tls": set()}
    assert against_layers(upward) == [
        "mailwright.smtp.codes imports mailwright.net.tls (smtp may not import net)"
    ]
    sideways = {"mailwright.obs.maillog": {"mailwright.policy.context"}}
    assert against_layers(sideways) != []
    private = {"mailwright.accounts.users": {"mailwright.smtp._sasl"}}
    assert private_imports(private) == ["mailwright.accounts.users imports mailwright.smtp._sasl"]
    inside = {
        "mailwright.smtp": {"mailwright.smtp._sasl"},
        "mailwright.smtp.codes": {"mailwright.smtp._replies"},
    }
    assert private_imports(inside) == []
