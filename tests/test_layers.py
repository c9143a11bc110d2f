"""The walls between prefork's layers, read from the code's own imports (docs/architecture.md).

The rules, in the words of docs/architecture.md, "Layers":

1. ``protocol/`` is sans-I/O: bytes in, events out. It imports nothing of prefork but
   ``errors``, ``headers`` and its own modules, and no asyncio, socket, os, time, select,
   selectors, signal, subprocess or threading.
2. ``aio/`` is the thin asyncio glue. It never imports ``server``, ``hosting``, ``process/``,
   ``cli`` or ``app``: it talks to the server through ``aio/host.ConnectionHost``.
3. ``process/dispatch.py`` is the master's pure dispatch policy: no I/O module at all.
4. ``server.py`` (and ``hosting.py``) never import ``process/``: the multi-process half runs
   servers, not the other way round.
5. No import cycle anywhere in ``prefork/``. An import under ``if TYPE_CHECKING:`` runs never
   and may point back (a connection and its stream name each other's types); it still counts
   for rules 1 to 4. A package's ``__init__`` importing its own modules is no cycle.
6. ``apps/`` (ASGI, WSGI, interface detection) is an adapter on the written stream contract:
   it imports ``stream``, ``headers``, ``errors``, ``websocket`` and its own modules, never the
   glue, the server or the processes that run it.
7. A private name (``_x``) is used only in the package that defines it: no
   ``from m import _x`` across modules, no ``obj._x`` on a name defined in another package.
8. Size: no module over 400 lines, no function over 60.

Each rule is a function over a table of modules; ``test_rules_catch_a_deliberate_break``
breaks each rule in a copy of the table and checks that the rule notices.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent / "prefork"

PROTOCOL_MAY_IMPORT = {"prefork.errors", "prefork.headers"}
NOT_SANS_IO = {
    "asyncio",
    "os",
    "select",
    "selectors",
    "signal",
    "socket",
    "subprocess",
    "threading",
    "time",
}
AIO_MUST_NOT_IMPORT = (
    "prefork.server",
    "prefork.hosting",
    "prefork.process",
    "prefork.cli",
    "prefork.app",
)
IO_MODULES = NOT_SANS_IO | {"psutil", "fcntl", "mmap", "prefork.process.fdpass", "struct"}
APPS_MAY_IMPORT = (
    "prefork.stream",
    "prefork.headers",
    "prefork.errors",
    "prefork.websocket",
    "prefork.apps",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Private names of the standard library and of namedtuples that are public API in fact.
STDLIB_PRIVATE = {"_exit", "_replace", "_asdict", "_fields", "_make"}


@dataclass
class Module:
    name: str
    path: pathlib.Path
    lines: int
    imports: set[str] = field(default_factory=set)  # at run time
    type_imports: set[str] = field(default_factory=set)  # under TYPE_CHECKING
    private_imports: list[tuple[str, str]] = field(default_factory=list)  # (module, name)
    private_uses: set[str] = field(default_factory=set)  # obj._x, obj not self/cls/a module
    private_defs: set[str] = field(default_factory=set)  # def _x, self._x = ..., _x = ...
    long_functions: list[str] = field(default_factory=list)

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import with whether it sits under ``if TYPE_CHECKING:``."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, typing_only = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing_only
            continue
        inner = typing_only or (isinstance(node, ast.If) and _is_type_checking(node))
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def scan(path: pathlib.Path, known: set[str]) -> Module:
    source = path.read_text()
    tree = ast.parse(source)
    mod = Module(module_name(path), path, len(source.splitlines()))
    for node, typing_only in _walk_imports(tree):
        targets = mod.type_imports if typing_only else mod.imports
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = _resolve(mod, node)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            targets.add(full if full in known else base)
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                mod.private_imports.append((base, alias.name))
    _scan_names(mod, tree)
    return mod


def _scan_names(mod: Module, tree: ast.AST) -> None:
    modules = {
        a.asname or a.name.split(".")[0]
        for n, _ in _walk_imports(tree)
        if isinstance(n, ast.Import)
        for a in n.names
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name.startswith("_"):
                mod.private_defs.add(node.name)
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if not isinstance(node, ast.ClassDef) and size > MAX_FUNCTION_LINES:
                mod.long_functions.append(f"{node.name} ({size} lines)")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if node.id.startswith("_"):
                mod.private_defs.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            mod.private_defs.add(node.target.id)
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if isinstance(node.ctx, ast.Store):
                mod.private_defs.add(node.attr)
            elif not (isinstance(owner, ast.Name) and owner.id in {"self", "cls", *modules}):
                mod.private_uses.add(node.attr)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in STDLIB_PRIVATE


def load() -> dict[str, Module]:
    paths = sorted(ROOT.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {m.name: m for m in (scan(p, known) for p in paths)}


# -- the rules: each returns the violations it finds ----------------------------------------------


def _prefork_imports(mod: Module) -> set[str]:
    return {i for i in mod.imports | mod.type_imports if i.split(".")[0] == "prefork"}


def rule_protocol_is_sans_io(mods: dict[str, Module]) -> list[str]:
    out = []
    for mod in mods.values():
        if not mod.name.startswith("prefork.protocol"):
            continue
        for imp in sorted(_prefork_imports(mod)):
            if imp not in PROTOCOL_MAY_IMPORT and not imp.startswith("prefork.protocol"):
                out.append(f"{mod.name} imports {imp}")
        for imp in sorted(mod.imports | mod.type_imports):
            if imp.split(".")[0] in NOT_SANS_IO:
                out.append(f"{mod.name} imports {imp} (I/O or a clock)")
    return out


def rule_aio_is_glue(mods: dict[str, Module]) -> list[str]:
    return [
        f"{mod.name} imports {imp}"
        for mod in mods.values()
        if mod.name.startswith("prefork.aio")
        for imp in sorted(_prefork_imports(mod))
        if imp.startswith(AIO_MUST_NOT_IMPORT)
    ]


def rule_dispatch_is_pure(mods: dict[str, Module]) -> list[str]:
    mod = mods["prefork.process.dispatch"]
    return [
        f"{mod.name} imports {imp}"
        for imp in sorted(mod.imports | mod.type_imports)
        if imp in IO_MODULES or imp.split(".")[0] in IO_MODULES
    ]


def rule_server_runs_no_processes(mods: dict[str, Module]) -> list[str]:
    return [
        f"{name} imports {imp}"
        for name in ("prefork.server", "prefork.hosting")
        for imp in sorted(_prefork_imports(mods[name]))
        if imp.startswith("prefork.process")
    ]


def rule_apps_on_the_contract(mods: dict[str, Module]) -> list[str]:
    return [
        f"{mod.name} imports {imp}"
        for mod in mods.values()
        if mod.name.startswith("prefork.apps")
        for imp in sorted(_prefork_imports(mod))
        if not imp.startswith(APPS_MAY_IMPORT)
    ]


def find_cycle(mods: dict[str, Module]) -> list[str]:
    """One import cycle among run-time imports, as a path, or []."""
    graph = {
        name: {i for i in mod.imports if i in mods and i != name} for name, mod in mods.items()
    }
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def rule_no_cycle(mods: dict[str, Module]) -> list[str]:
    cycle = find_cycle(mods)
    return [" -> ".join(cycle)] if cycle else []


def rule_private_names_stay_home(mods: dict[str, Module]) -> list[str]:
    defined: dict[str, set[str]] = {}
    for mod in mods.values():
        defined.setdefault(mod.package, set()).update(mod.private_defs)
    out = [
        f"{mod.name} imports {name} from {base}"
        for mod in mods.values()
        for base, name in mod.private_imports
        if base != mod.name
    ]
    for mod in mods.values():
        home = defined.get(mod.package, set())
        out.extend(
            f"{mod.name} uses ._{n[1:]} defined elsewhere" for n in sorted(mod.private_uses - home)
        )
    return out


def rule_small_modules(mods: dict[str, Module]) -> list[str]:
    out = [f"{m.name}: {m.lines} lines" for m in mods.values() if m.lines > MAX_MODULE_LINES]
    out += [f"{m.name}: {f}" for m in mods.values() for f in m.long_functions]
    return out


RULES = [
    rule_protocol_is_sans_io,
    rule_aio_is_glue,
    rule_dispatch_is_pure,
    rule_server_runs_no_processes,
    rule_apps_on_the_contract,
    rule_no_cycle,
    rule_private_names_stay_home,
    rule_small_modules,
]


def test_the_layers_hold() -> None:
    mods = load()
    broken = {rule.__name__: rule(mods) for rule in RULES}
    assert not any(broken.values()), {k: v for k, v in broken.items() if v}


def _copy(mods: dict[str, Module]) -> dict[str, Module]:
    return {
        name: Module(
            m.name,
            m.path,
            m.lines,
            set(m.imports),
            set(m.type_imports),
            list(m.private_imports),
            set(m.private_uses),
            set(m.private_defs),
            list(m.long_functions),
        )
        for name, m in mods.items()
    }


OUTSIDE_DOCS = ("DESIGN.md", "STYLE.md", "shared/")


def test_comments_cite_the_docs_of_the_repository() -> None:
    """Design notes outside the repository are not there for a reader of the code: cite
    docs/ (issue 9 item 16)."""
    cited = [
        f"{path.relative_to(ROOT.parent)}:{n}"
        for path in sorted(ROOT.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(name in line for name in OUTSIDE_DOCS)
    ]
    assert not cited, cited


def test_rules_catch_a_deliberate_break() -> None:
    """Each rule fails on a copy of the real table with one wall knocked down."""
    mods = load()

    def broken(rule, change) -> list[str]:
        copy = _copy(mods)
        change(copy)
        return rule(copy)

    assert broken(
        rule_protocol_is_sans_io,
        lambda m: m["prefork.protocol.http1"].imports.add("prefork.aio.http1"),
    )
    assert broken(
        rule_protocol_is_sans_io, lambda m: m["prefork.protocol.http2"].imports.add("asyncio")
    )
    assert broken(
        rule_aio_is_glue, lambda m: m["prefork.aio.http1"].type_imports.add("prefork.server")
    )
    assert broken(
        rule_dispatch_is_pure, lambda m: m["prefork.process.dispatch"].imports.add("socket")
    )
    assert broken(
        rule_server_runs_no_processes,
        lambda m: m["prefork.server"].imports.add("prefork.process.worker"),
    )
    assert broken(
        rule_apps_on_the_contract,
        lambda m: m["prefork.apps.detect"].imports.add("prefork.aio.http1"),
    )
    assert broken(rule_no_cycle, lambda m: m["prefork.headers"].imports.add("prefork.server"))
    assert broken(
        rule_private_names_stay_home,
        lambda m: m["prefork.process.worker"].private_uses.add("_connections_of_the_server"),
    )
    assert broken(
        rule_private_names_stay_home,
        lambda m: m["prefork.aio.http2"].private_imports.append(("prefork.aio.common", "_secret")),
    )
    assert broken(rule_small_modules, lambda m: setattr(m["prefork.server"], "lines", 401))


def test_a_real_cycle_is_found(tmp_path, monkeypatch) -> None:
    """The cycle finder on real files: two modules importing each other."""
    pkg = tmp_path / "prefork"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from prefork import b\n")
    (pkg / "b.py").write_text("from prefork.a import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    assert find_cycle(load()) in (
        ["prefork.a", "prefork.b", "prefork.a"],
        ["prefork.b", "prefork.a", "prefork.b"],
    )
