"""The seams DESIGN.md draws, checked on the source with `ast` (nothing is imported):

- database-specific SQL only in `store/`;
- no import cycle between modules, and none between needlecast's packages (`needlecast.audience`,
  `needlecast.campaign`, `needlecast.ledger`... each top-level package or module is one node);
- no function longer than 80 lines;
- the faces (CLI, console, API) import only actions, read models and their own toolkit (TEAM.md's rule;
  every face's toolkit holds the errors, the configuration, the logging set-up and the version, and the CLI's
  service commands, which start the processes, also the web service, the fleet, the scheduler and devtools);
- the dispatcher imports only its named dependencies;
- no module-level running state in the scheduler.

Every import counts wherever it is written: at the top, inside a function, under `if TYPE_CHECKING:`,
relative or absolute. A hidden import is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "needlecast"
TABLES = ("deliveries", "delivery_queue", "contacts", "contact_lists", "suppressions", "events", "senders")
# Hand-written SQL naming a table, or a branch on the database's dialect.
SQL = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(" + "|".join(TABLES) + r")\b")
DIALECT = re.compile(r"\bdialect\b|\bis_sqlite\(|\bexec_driver_sql\(|\bstore\.driver\b")
LONGEST_FUNCTION = 80  # lines, from `def` to the last line of the body

# Functions still over LONGEST_FUNCTION lines because their owners are rewriting them on other branches
# (issue 26.1: the web app's handlers become module-level functions per resource, not closures). The lead
# empties this set after merging those branches. The test fails when one listed here is no longer over the
# limit (or no longer exists), so the list cannot outlive the work it waits for.
LONG_FUNCTIONS_BEING_REWRITTEN: set[str] = set()  # faces-web: every web handler is module-level now

# Package imports that still close a cycle because their owner is rewriting them on another branch
# (issue 26.2, dispatcher): `campaign.send` reaches up into `fleet` (the runner starts helper sender
# processes and holds a `fleet.heartbeat.Heartbeat`; the dispatcher makes its own), while `fleet`'s worker
# and helper processes run `campaign.send`'s dispatcher. The lead empties this set after merging; the test
# fails when a listed edge no longer exists, so the exception cannot outlive the work it waits for.
PACKAGE_EDGES_BEING_REMOVED = {
    ("needlecast.campaign", "needlecast.fleet"),
}

# The faces (TEAM.md, "Shared rule for the faces"): each module under these folders imports at most
# FACE_MAX_IMPORTS distinct needlecast modules outside its toolkit, and each of those is under
# FACE_MAY_IMPORT. The toolkit is the face's own package plus FACE_TOOLKIT_FOR_ALL (and the bare `needlecast`
# package, for its version), plus FACE_EXCEPTIONS for the module named there; a module "under" a
# name is that module or anything below it (`needlecast.config` covers `needlecast.config.bookings`).
FACES = {
    "needlecast/cli": "needlecast.cli",
    "needlecast/web/console": "needlecast.web",
    "needlecast/web/api": "needlecast.web",
}
# Every face's toolkit also holds what any program needs whatever it does: the error tree, the configuration,
# the logging set-up (`needlecast.logs`: handlers, the privacy filter, `scrub`), the version (`needlecast`) and
# the wording of what the library says for people (`needlecast.wording`: notes, durations, placeholders).
FACE_TOOLKIT_FOR_ALL = ("needlecast.errors", "needlecast.config", "needlecast.logs", "needlecast.wording")
FACE_TOOLKIT_MODULES_FOR_ALL = ("needlecast",)  # the package itself (its version), not what lies below it
FACE_MAY_IMPORT = ("needlecast.actions", "needlecast.readmodels")
FACE_MAX_IMPORTS = 6
# The commands that start processes (scheduler, worker, web, demo, send) may also import what they start:
# the web service (the whole `needlecast.web` package: the app, its senders, its recipient pages), the
# sending fleet, the scheduler and the developer tools (the demo, the timed runner). What they start is a
# process, not a change, so these are part of that module's toolkit and do not count towards FACE_MAX_IMPORTS.
FACE_EXCEPTIONS = {
    "needlecast/cli/service.py": (
        "needlecast.web",
        "needlecast.fleet",
        "needlecast.schedule",
        "needlecast.devtools",
    ),
}

# The dispatcher speaks to narrow interfaces (DESIGN.md, listmonk's manager; issue 26.2), so these are the
# only needlecast modules it may import (each name covers itself and anything below it):
DISPATCHER = "needlecast/campaign/send/dispatcher.py"
DISPATCHER_MAY_IMPORT = (
    "needlecast.store.delivery",  # the delivery store protocol: batches, claims, fencing, intents, state
    "needlecast.delivery.base",  # the backend: the interface and its send loop
    "needlecast.campaign.send.rendering",  # rendering: one email per (step, variant, arm)
    "needlecast.templating",  # rendering's values, among them the recipient values (templating.recipient)
    "needlecast.errors",  # the one error tree
    "needlecast.ledger",  # the ledger's rules: states and transitions
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


@cache
@functools.cache
def _tree(path: Path) -> ast.Module:
    """The module's syntax tree, parsed once per test process (every test here walks every module; none
    changes a tree)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every needlecast module `name` imports, with the line: each `from X import Y` names X.Y when that is
    a module and X otherwise; relative imports resolved; imports at any depth (functions, TYPE_CHECKING)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "needlecast":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module.split(".")[0] != "needlecast":
                continue
            for alias in node.names:
                yield (f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module), node.lineno


def _under(module: str, names: tuple[str, ...] | str) -> bool:
    return any(
        module == name or module.startswith(f"{name}.") for name in ((names,) if isinstance(names, str) else names)
    )


def _package(module: str) -> str:
    """The top-level package (or module) of needlecast that `module` belongs to: `needlecast.campaign` for
    `needlecast.campaign.send.dispatcher`, `needlecast.ledger` for itself."""
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each back edge of a depth-first walk (empty exactly when the graph has none)."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _strings_and_code(path: Path) -> list[tuple[int, str]]:
    """The source's lines with docstrings and comments left out (they may name tables in prose)."""
    docstrings = set()
    for node in ast.walk(_tree(path)):
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
                offenders.append(f"{_relative(path)}:{number}: {line.strip()}")
    assert offenders == []


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    modules = _modules()
    graph = {
        name: {t for t, _ in _imports(name, path, modules) if t in modules and t != name}
        for name, path in modules.items()
    }
    cycles = [" -> ".join(cycle) for cycle in _cycles(graph)]
    assert cycles == [], "modules importing each other round a cycle:\n" + "\n".join(cycles)


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    edges: dict[tuple[str, str], set[str]] = {}
    for name, path in modules.items():
        for target, line in _imports(name, path, modules):
            source_package, target_package = _package(name), _package(target)
            if target_package in ("needlecast", source_package) or source_package == "needlecast":
                continue
            graph.setdefault(source_package, set()).add(target_package)
            edges.setdefault((source_package, target_package), set()).add(f"{_relative(path)}:{line} imports {target}")
    gone = sorted(edge for edge in PACKAGE_EDGES_BEING_REMOVED if edge not in edges)
    assert gone == [], f"no longer imported: take these out of PACKAGE_EDGES_BEING_REMOVED: {gone}"
    for source, target in PACKAGE_EDGES_BEING_REMOVED:
        graph[source].discard(target)
    report = []
    for cycle in _cycles(graph):
        report.append(" -> ".join(cycle))
        for source, target in itertools.pairwise(cycle):
            report += [f"    {line}" for line in sorted(edges[(source, target)])]
    assert report == [], "packages importing each other round a cycle (every import counts):\n" + "\n".join(report)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every function and method (nested ones too) by its dotted name, with its length in lines."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def test_no_function_is_longer_than_80_lines() -> None:
    long = {}
    for path in _modules().values():
        for name, lines in _functions(_tree(path)):
            if lines > LONGEST_FUNCTION:
                long[f"{_relative(path)}::{name}"] = lines
    settled = sorted(LONG_FUNCTIONS_BEING_REWRITTEN - set(long))
    assert settled == [], (
        f"no longer over {LONGEST_FUNCTION} lines (or gone): take these out of LONG_FUNCTIONS_BEING_REWRITTEN: "
        f"{settled}"
    )
    over = [
        f"{name}: {lines} lines" for name, lines in sorted(long.items()) if name not in LONG_FUNCTIONS_BEING_REWRITTEN
    ]
    assert over == [], f"functions over {LONGEST_FUNCTION} lines:\n" + "\n".join(over)


def _face_of(path: Path) -> str | None:
    relative = _relative(path)
    return next((toolkit for folder, toolkit in FACES.items() if relative.startswith(f"{folder}/")), None)


def test_the_faces_import_only_actions_read_models_and_their_toolkit() -> None:
    modules = _modules()
    problems = []
    for name, path in sorted(modules.items()):
        toolkit = _face_of(path)
        if toolkit is None:
            continue
        own = (toolkit, *FACE_TOOLKIT_FOR_ALL, *FACE_EXCEPTIONS.get(_relative(path), ()))
        outside: dict[str, int] = {}
        for target, line in _imports(name, path, modules):
            if target not in FACE_TOOLKIT_MODULES_FOR_ALL and not _under(target, own):
                outside[target] = min(line, outside.get(target, line))
        wrong = [f"    line {line}: {t}" for t, line in sorted(outside.items()) if not _under(t, FACE_MAY_IMPORT)]
        if wrong:
            problems.append(f"{_relative(path)} imports outside {', '.join(FACE_MAY_IMPORT)}:\n" + "\n".join(wrong))
        if len(outside) > FACE_MAX_IMPORTS:
            problems.append(
                f"{_relative(path)} imports {len(outside)} needlecast modules outside its toolkit "
                f"(at most {FACE_MAX_IMPORTS}): {', '.join(sorted(outside))}"
            )
    assert problems == [], "faces importing more than actions, read models and their toolkit:\n" + "\n".join(problems)


def test_the_dispatcher_imports_only_its_named_dependencies() -> None:
    modules = _modules()
    name = next(name for name, path in modules.items() if _relative(path) == DISPATCHER)
    wrong = sorted(
        {
            f"    line {line}: {target}"
            for target, line in _imports(name, PACKAGE.parent / DISPATCHER, modules)
            if not _under(target, DISPATCHER_MAY_IMPORT)
        }
    )
    assert wrong == [], f"{DISPATCHER} imports outside DISPATCHER_MAY_IMPORT:\n" + "\n".join(wrong)


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


ACCOUNT_STORAGE = (
    "needlecast/accounts/users.py",
    "needlecast/accounts/apikeys.py",
    "needlecast/accounts/links.py",
    "needlecast/accounts/login.py",
)


def test_account_and_key_storage_neither_checks_permissions_nor_audits() -> None:
    """`actions.users`, `actions.keys` and `actions.sessions` are the one place that checks an account, key or
    log-in change's permission and writes its audit entry (issue 26): the storage below them imports neither the
    audit log nor `require`, so no change can be checked or audited twice."""
    modules = _modules()
    wrong = []
    for relative in ACCOUNT_STORAGE:
        path = PACKAGE.parent / relative
        name = next(name for name, found in modules.items() if _relative(found) == relative)
        wrong += [
            f"    {relative}:{line}: {target}"
            for target, line in _imports(name, path, modules)
            if target.endswith(".audit")
        ]
        wrong += [
            f"    {relative}:{node.lineno}: require"
            for node in ast.walk(_tree(path))
            if isinstance(node, ast.ImportFrom) and any(alias.name == "require" for alias in node.names)
        ]
    assert wrong == [], "account storage that checks permissions or audits:\n" + "\n".join(wrong)
