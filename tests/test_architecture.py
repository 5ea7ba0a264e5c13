"""The seams DESIGN.md draws, checked on the source: database-specific SQL only in `store/`, no import
cycle inside the package, and no module-level running state in the scheduler."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "needlecast"
TABLES = ("deliveries", "delivery_queue", "contacts", "contact_lists", "suppressions", "events", "senders")
# Hand-written SQL naming a table, or a branch on the database's dialect.
SQL = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(" + "|".join(TABLES) + r")\b")
DIALECT = re.compile(r"\bdialect\b|\bis_sqlite\(|\bexec_driver_sql\(|\bstore\.driver\b")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _strings_and_code(path: Path) -> list[tuple[int, str]]:
    """The source's lines with docstrings and comments left out (they may name tables in prose)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        (number, line.split("#", 1)[0])
        for number, line in enumerate(lines, start=1)
        if number not in docstrings and not line.lstrip().startswith("#")
    ]


def test_database_specific_sql_lives_only_in_the_store() -> None:
    offenders = []
    for name, path in _modules().items():
        if name.startswith("needlecast.store"):
            continue
        for number, line in _strings_and_code(path):
            if SQL.search(line) or DIALECT.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_package_has_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    for name, path in modules.items():  # imports only for type checking do not run
        source = path.read_text(encoding="utf-8")
        if "if TYPE_CHECKING:" in source:
            tree = ast.parse(source)
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                    for inner in ast.walk(node):
                        if isinstance(inner, ast.ImportFrom) and inner.module:
                            graph[name].discard(inner.module)
                            graph[name].difference_update(f"{inner.module}.{a.name}" for a in inner.names)
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_scheduler_keeps_no_running_state_in_module_globals() -> None:
    tree = ast.parse((PACKAGE / "schedule.py").read_text(encoding="utf-8"))
    holders = {"Event", "Lock", "RLock", "dict", "list", "set", "defaultdict"}
    state = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            value = node.value
            called = value.func if isinstance(value, ast.Call) else None
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            if isinstance(value, ast.Dict | ast.List | ast.Set) or name in holders:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                state += [ast.unparse(target) for target in targets]
    state += [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Global)]
    assert state == []  # running state is a SchedulerRuntime, handed to every job by the executor
