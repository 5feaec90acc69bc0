"""The package's shape, checked from its source (issue 23, item 4): every module of `observatory/` is parsed
with `ast` (nothing is imported or run) and

(a) the pure packages (detect/, report/, verdict/: plain data in, plain data out) import no I/O library, read
    no clock, open no file and log nothing, and import no module of the package that does (transitively);
(b) no module imports from a layer to its right: the pipeline of docs/architecture.md, left to right;
(c) no two modules import each other, directly or round a longer circle.

Imports inside functions count like the ones at the top: deferring an import does not change what a module
depends on. The planted-violation tests show each check fails when its rule is broken.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "observatory"

# docs/architecture.md, left to right: a module may import from its own layer and those before it. Longest
# prefix wins, so a package's modules can sit in different layers (signals/: the record is read by detection,
# the pinger and the file formats bring signals in).
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations every stage shares: errors, vocabularies, the platform catalogue, settings, text encoding
    ("observatory", "observatory.errors", "observatory.vocab", "observatory.catalog", "observatory.encoding",
     "observatory.failure", "observatory.scrub", "observatory.settings", "observatory.csvrows"),
    # the records of each tier
    ("observatory.measurement", "observatory.incident", "observatory.intent", "observatory.series",
     "observatory.signals", "observatory.signals.view"),
    ("observatory.verdict",),
    # measurements and signals made or read
    ("observatory.probe", "observatory.simulate", "observatory.signals.formats", "observatory.signals.pinger"),
    ("observatory.store",),
    # files and streams into the store (through its protocol), and verdicts re-judged there
    ("observatory.ingest", "observatory.ingest_files", "observatory.sources", "observatory.reclassify"),
    ("observatory.detect",),
    ("observatory.report",),
    # the one orchestration place, and what leaves the observatory
    ("observatory.service", "observatory.publish"),
    ("observatory.web",),
    ("observatory.lab",),
    ("observatory.cli", "observatory.__main__"),
)
PURE = ("observatory.detect", "observatory.report", "observatory.verdict", "observatory.intent")

# Right-to-left imports that exist today, each with its reason; a new one fails the test.
KNOWN_BACKWARD = {
    # the country table (names, time zones) sits in report/; the signals importer needs its codes
    ("observatory.signals.formats", "observatory.report.countries"),
}

# (a): libraries that reach outside the process or read its clock, and the calls that do
IO_MODULES = ("duckdb", "chdb", "clickhouse_connect", "socket", "ssl", "requests", "httpx", "urllib.request",
              "urllib3", "http.client", "http.server", "boto3", "logging", "subprocess", "os", "shutil", "tempfile",
              "pathlib", "time", "threading", "asyncio", "uvicorn", "fastapi", "sqlite3", "maxminddb", "dns",
              "platformdirs", "signal", "multiprocessing")
CLOCK_CALLS = {"now", "utcnow", "today"}  # datetime.now(), date.today(): the clock, which pure code is given
IO_CALLS = {"open", "print", "input"}

# Modules outside the pure packages that pure code reaches, and what in them the check lets pass (reason each).
KNOWN_IO = {
    # the exception classes only, to name a failure ("connection_reset") from the error a probe caught
    ("observatory.failure", "imports socket"), ("observatory.failure", "imports ssl"),
    # the signal record's module also reads a CSV file (read_signals_file); pure code uses the record only
    ("observatory.signals", "calls open()"),
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # what is imported, absolute (a module, or a name in one)
    line: int
    source: str = ""  # for `from source import name`: the module named after `from`


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, name: str, is_package: bool) -> Iterator[Import]:
    """Every import in a module (inside functions too), relative ones made absolute; `from a import b` yields
    both `a` and `a.b` (b may be a module)."""
    here = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from package import module` depends on the module, not on the package's __init__ (which may
            # itself import the module: not a circle); `from module import name` on the module
            for alias in node.names:
                yield Import(f"{source}.{alias.name}", node.lineno, source)


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: tuple[Import, ...]


@functools.cache
def load(root: Path = PACKAGE) -> dict[str, Module]:
    """Every module of the package, parsed once per test run (callers copy before changing)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        out[name] = Module(name, path, tree, tuple(imports(tree, name, path.name == "__init__.py")))
    return out


def internal(mod: Module, modules: dict[str, Module]) -> dict[str, int]:
    """The package's own modules `mod` imports (a name imported from a module counts as that module)."""
    out: dict[str, int] = {}
    for imp in mod.imports:
        target = imp.module if imp.module in modules else imp.source or imp.module
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != mod.name and target.split(".")[0] == "observatory":
            out.setdefault(target, imp.line)
    return out


def layer_of(name: str) -> int:
    best, found = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            # the package itself ("observatory": its version) holds nothing else: a new module needs a place
            covers = name == prefix or (name.startswith(prefix + ".") and prefix != "observatory")
            if covers and len(prefix) > best:
                best, found = len(prefix), i
    if found < 0:
        raise AssertionError(f"{name}: in no layer of tests/test_layering.py (add it where docs/architecture.md "
                             "puts it)")
    return found


def _is_pure(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PURE)


def io_uses(mod: Module) -> list[str]:
    """What in a module reaches outside the process: I/O libraries imported, clock reads, open()/print()."""
    found = sorted({f"{mod.path.name}:{imp.line} imports {lib}" for imp in mod.imports for lib in IO_MODULES
                    if any(m == lib or m.startswith(lib + ".") for m in (imp.module, imp.source))})
    for node in ast.walk(mod.tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in IO_CALLS:
            found.append(f"{mod.path.name}:{node.lineno} calls {func.id}()")
        elif (isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS and isinstance(func.value, ast.Name)
              and func.value.id in {"datetime", "date"}):
            found.append(f"{mod.path.name}:{node.lineno} reads the clock ({func.value.id}.{func.attr}())")
    return found


def store_protocols(modules: dict[str, Module]) -> set[str]:
    """The names of the store's protocols (classes of observatory.store.* based on Protocol): holding one is
    holding the database. Its records (rows, filters, events) are plain data and fine anywhere."""
    names = set()
    for mod in modules.values():
        if mod.name == "observatory.store" or mod.name.startswith("observatory.store."):
            for node in ast.walk(mod.tree):
                if isinstance(node, ast.ClassDef) and any(
                        (isinstance(b, ast.Name) and b.id == "Protocol")
                        or (isinstance(b, ast.Attribute) and b.attr == "Protocol") for b in node.bases):
                    names.add(node.name)
    return names


def store_access(mod: Module, protocols: set[str]) -> list[str]:
    """A pure module that imports a store protocol reads or writes the store (the I/O is behind the method)."""
    return [f"{mod.path.name}:{imp.line} imports the store ({imp.module})" for imp in mod.imports
            if imp.source.startswith("observatory.store") and imp.module.rpartition(".")[2] in protocols]


def impure_imports(modules: dict[str, Module]) -> list[str]:
    """(a): each pure module, and every module of the package it reaches through its imports, does no I/O."""
    problems = []
    protocols = store_protocols(modules)
    for name in sorted(n for n in modules if _is_pure(n)):
        problems += [f"{name}: {use}" for use in store_access(modules[name], protocols)]
    uses: dict[str, list[str]] = {}
    deps: dict[str, dict[str, int]] = {}
    for name in sorted(n for n in modules if _is_pure(n)):
        seen, stack = {name}, [name]
        while stack:
            current = stack.pop()
            if current not in uses:
                uses[current] = io_uses(modules[current])
                deps[current] = internal(modules[current], modules)
            for use in uses[current]:
                if current != name and any(current == m and what in use for m, what in KNOWN_IO):
                    continue
                via = "" if current == name else f" (through {current})"
                problems.append(f"{name}{via}: {use}")
            for target in deps[current]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
    return problems


def backward_imports(modules: dict[str, Module]) -> list[str]:
    """(b): imports from a layer to the importer's right."""
    problems = []
    for mod in modules.values():
        for target, line in internal(mod, modules).items():
            if layer_of(target) > layer_of(mod.name) and (mod.name, target) not in KNOWN_BACKWARD:
                problems.append(f"{mod.name} (line {line}) imports {target}, a later layer")
    return sorted(problems)


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """(c): the strongly connected groups of the import graph with more than one module (Tarjan)."""
    graph = {name: sorted(t for t in internal(mod, modules) if t != mod.name) for name, mod in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


# Circles that exist today, each with the change that removes it (a new one fails the test).
KNOWN_CYCLES: list[list[str]] = []


# --- the checks on the package ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return load()


def test_every_module_has_a_layer(modules: dict[str, Module]) -> None:
    # layer_of fails, naming the module, on one in no layer; every layer found is a place in LAYERS
    assert modules and all(0 <= layer_of(name) < len(LAYERS) for name in modules)


def test_pure_packages_do_no_io(modules: dict[str, Module]) -> None:
    problems = impure_imports(modules)
    assert not problems, "pure packages doing I/O:\n" + "\n".join(problems)


def test_no_import_runs_right_to_left(modules: dict[str, Module]) -> None:
    problems = backward_imports(modules)
    assert not problems, "imports against the pipeline:\n" + "\n".join(problems)


MAX_MODULE_LINES = 500  # issue 23: a module one reader can hold; past it, a concern wants its own module


def test_no_module_is_over_the_size_a_reader_can_hold() -> None:
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text(encoding="utf-8").splitlines())
             for p in sorted(PACKAGE.rglob("*.py"))}
    big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {big}"


def test_no_import_circle(modules: dict[str, Module]) -> None:
    cycles = [c for c in import_cycles(modules) if c not in KNOWN_CYCLES]
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


# --- each check fails on a planted violation -------------------------------------------------------------------


def _planted(files: dict[str, str]) -> dict[str, Module]:
    """The package's modules with some added or replaced (parsed from text; nothing is written)."""
    out = dict(load())
    for rel, text in files.items():
        path = PACKAGE / rel
        name = module_name(path)
        tree = ast.parse(text)
        out[name] = Module(name, path, tree, tuple(imports(tree, name, path.name == "__init__.py")))
    return out


@pytest.mark.parametrize(("text", "expected"), [
    ("import duckdb\n", "imports duckdb"),
    ("def f():\n    import httpx\n", "imports httpx"),
    ("import logging\n", "imports logging"),
    ("from urllib.request import urlopen\n", "imports urllib.request"),
    ("from datetime import datetime\n\ndef f():\n    return datetime.now()\n", "reads the clock"),
    ("def f(p):\n    return open(p).read()\n", "calls open()"),
    ("from observatory.store import open_store\n", "imports"),  # through the store's backends
    ("from observatory.store.base import Store\n", "imports the store"),
    ("from observatory.store import IncidentFilter, Store\n", "imports the store"),
])
def test_an_io_import_in_a_pure_package_is_found(text: str, expected: str) -> None:
    modules = _planted({"detect/planted.py": text})
    problems = impure_imports(modules)
    assert any(p.startswith("observatory.detect.planted") and expected in p for p in problems), problems


def test_a_pure_module_reaching_io_through_another_module_is_found() -> None:
    modules = _planted({"report/planted.py": "from observatory.service import run_detection\n"})
    assert any(p.startswith("observatory.report.planted (through observatory.service") for p in
               impure_imports(modules))


def test_a_right_to_left_import_is_found() -> None:
    modules = _planted({"detect/planted.py": "def f():\n    from observatory.web.app import create_app\n"})
    assert any("observatory.detect.planted" in p and "observatory.web.app" in p for p in backward_imports(modules))


def test_a_module_in_no_layer_is_found() -> None:
    with pytest.raises(AssertionError, match="observatory.planted: in no layer"):
        layer_of("observatory.planted")


def test_an_import_circle_is_found() -> None:
    modules = _planted({"detect/planted_a.py": "from observatory.detect import planted_b\n",
                                  "detect/planted_b.py": "def f():\n    from observatory.detect.planted_a import x\n"})
    assert ["observatory.detect.planted_a", "observatory.detect.planted_b"] in import_cycles(modules)
