"""The layout's import rules (docs/architecture.md): every import points down the layers.

domain (pure) < storage < features (events, correlation, diagnostics, interchange, webhooks, config)
< the Python API (ledger, worker) < server < cli. Read from the source with ``ast``, so an import inside a
function counts as much as one at the top; imports under ``if TYPE_CHECKING:`` (annotations only) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "failure_aware"

# Modules whose presence in the domain would mean a database, the network, a process or the file system.
IMPURE = {"sqlalchemy", "psycopg", "sqlite3", "httpx", "socket", "subprocess", "pathlib", "io", "os",
          "shutil", "tempfile", "threading", "multiprocessing", "fastapi", "click", "rich"}

# Features may use each other. ``config`` (reading failure-aware.toml) sits with them: it parses their
# settings (``[webhooks]``), and the webhook handler loads it when used without ``configure``.
FEATURES = {"events", "correlation", "diagnostics", "interchange", "webhooks", "config"}
# The Python API is ``ledger`` and ``worker`` together: the worker drives a Ledger, and ``Ledger.retry_due``
# is one pass of a Worker.
API = {"ledger", "worker"}
LAYER = {"domain": 0, "storage": 1, **dict.fromkeys(FEATURES, 2), **dict.fromkeys(API, 3), "server": 4,
         "cli": 5, "__main__": 6, "__init__": 6}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found.append((".".join(("failure_aware", *rel.parts)), path))
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    names: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node)
                   for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _area(module: str) -> str:
    """The layer name of a failure_aware module: its first component below the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = _modules()


def _violation(name: str, target: str) -> str | None:
    """Why ``name`` may not import ``target`` (None when it may)."""
    own, other = _area(name), _area(target)
    if not target.startswith("failure_aware.") or other not in LAYER or other == own:
        return None
    if own == "domain":
        return f"{name} imports {target}: the domain imports only itself"
    same_layer = LAYER[other] == LAYER[own] and own != "storage"
    if LAYER[other] < LAYER[own] or same_layer:
        return None
    return f"{name} imports {target}: {own} (layer {LAYER[own]}) may only import layers below it"


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down(name: str, path: Path) -> None:
    problems = [v for target in sorted(_imports(name, path)) if (v := _violation(name, target))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("name", "path"), [m for m in MODULES if _area(m[0]) == "domain"],
                         ids=[n for n, _ in MODULES if _area(n) == "domain"])
def test_domain_is_pure(name: str, path: Path) -> None:
    for target in _imports(name, path):
        assert target.split(".")[0] not in IMPURE, (
            f"{name} imports {target}: the domain does no I/O and knows no database")


def test_every_module_has_a_layer() -> None:
    areas = {_area(name) for name, _ in MODULES}
    assert areas <= set(LAYER), f"modules outside the known layers: {sorted(areas - set(LAYER))}"


@pytest.mark.parametrize(("name", "target"), [
    ("failure_aware.domain.states", "failure_aware.storage.tables"),
    ("failure_aware.storage.engine", "failure_aware.events.claims"),
    ("failure_aware.events.claims", "failure_aware.ledger"),
    ("failure_aware.ledger", "failure_aware.cli.app"),
    ("failure_aware.server.app", "failure_aware.cli.output"),
])
def test_the_rule_refuses_an_upward_import(name: str, target: str) -> None:
    assert _violation(name, target) is not None


def test_the_rule_allows_downward_and_sideways_imports() -> None:
    assert _violation("failure_aware.cli.app", "failure_aware.ledger") is None
    assert _violation("failure_aware.correlation.engine", "failure_aware.events.counters") is None
    assert _violation("failure_aware.ledger", "failure_aware.worker.loop") is None
