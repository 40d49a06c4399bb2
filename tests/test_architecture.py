"""The import structure: no cycle between modules, each package uses only the packages below it, the
core never imports the zoo's training, the harness-efficiency benchmarks nor the research tooling, and
the benchmarks never import the research tooling (docs/architecture.md draws the layers).

Read from the code itself: every `import` statement of every module, at module level, inside
functions and under `if TYPE_CHECKING:` alike (a type-only import still ties two modules together).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from common.paths import REPO

# Lowest first. The core is a chain (each package imports those before it); the zoo's training sits
# above models/ beside sut/ and harness/ (it uses what serving loads, and serving never trains); the
# harness-efficiency benchmarks (bench) sit above harness and zoo; research uses everything.
LAYERS = ("common", "tasks", "models", "sut", "harness", "zoo", "bench", "research")
CORE = ("common", "tasks", "models", "sut", "harness")
USES = {
    "common": set(),
    "tasks": {"common"},
    "models": {"common", "tasks"},
    "sut": {"common", "tasks", "models"},
    "harness": {"common", "tasks", "models", "sut"},
    "zoo": {"common", "tasks", "models"},
    "bench": {"common", "tasks", "models", "sut", "harness", "zoo"},
    "research": {"common", "tasks", "models", "sut", "harness", "zoo", "bench"},
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages and top-level scripts."""
    out = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(REPO.glob("accuracy_*.py")):
        out[path.stem] = path
    return out


def _imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """Every dotted name `name` imports anywhere in its file (`from a import b` gives a.b when that
    is a module of the project, else a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(targets)
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file."""
    found = set()
    for target in _imported_names(name, path, known):
        while target and target not in known:  # `import a.b.c` of a package: its deepest module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read_from_the_code():
    """The walk sees imports inside functions too (the runner imports retime only when asked)."""
    graph = _graph()
    assert "harness.retime" in graph["harness.runner"]  # a function-level import
    assert "models.loaders" in graph["models.registry"]  # a TYPE_CHECKING and a function-level one
    assert "tasks.scoring.cli" in graph["accuracy_xnli"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@functools.cache
def _defined(path: Path) -> set[str]:
    """The names a module binds at any level: assignments, functions, classes, imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def test_every_project_import_names_a_module_of_this_tree():
    """An import of a project module that this tree no longer has (a moved file) must fail here, not
    be found by chance in another checkout the environment happens to point at."""
    modules = _modules()
    known = set(modules)
    importers = {**modules, **{f"tests.{t.stem}": t for t in sorted((REPO / "tests").glob("*.py"))}}
    importers |= {
        f"reports.scripts.{t.stem}": t for t in sorted((REPO / "reports" / "scripts").glob("*.py"))
    }
    missing = []
    for name, path in importers.items():
        for target in _imported_names(name, path, known):
            if _layer(target) not in LAYERS:
                continue  # the standard library, third-party packages
            if target not in known and target.rpartition(".")[0] not in known:
                missing.append(f"{name} imports {target}")
            elif target not in known:  # `from package import name`: a name the package defines
                defined = _defined(modules[target.rpartition(".")[0]])
                if target.rpartition(".")[2] not in defined:
                    missing.append(f"{name} imports {target}")
    assert missing == []


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_packages_import_only_the_layers_below_them():
    assert set(USES) == set(LAYERS)
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _layer(module) in LAYERS
        for target in targets
        if _layer(target) != _layer(module) and _layer(target) not in USES[_layer(module)]
    ]
    assert wrong == []


def test_the_core_never_imports_the_zoo():
    """`harness run` serves and never trains: no module of the core (nor an accuracy script) imports
    the zoo package, at module level, in a function or for types only; bench and research may."""
    graph = _graph()
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _layer(module) in CORE or module.startswith("accuracy_")
        for target in targets
        if _layer(target) == "zoo"
    ]
    assert wrong == []
    assert {"zoo.recipe", "zoo.stages", "zoo.evaluate", "zoo.pretrain"} <= set(graph)  # walked
    assert {"zoo.stages", "models.registry"} <= graph["zoo.recipe"]  # the zoo uses what serves


def test_the_core_never_imports_research_nor_the_benchmarks():
    """No import statement of the core names the research package or the benchmarks' (each has its
    own front door, `python -m research` and `python -m bench`: the core's CLI neither lists nor
    forwards their commands)."""
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _layer(module) in CORE or module.startswith("accuracy_")
        for target in targets
        if _layer(target) in ("research", "bench")
    ]
    assert wrong == []


def test_the_benchmarks_never_import_research():
    """bench/ measures the harness and sits below research/: the study and the multitask benchmark
    take run building and timing from bench.measure, and nothing of bench names research."""
    graph = _graph()
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _layer(module) == "bench"
        for target in targets
        if _layer(target) == "research"
    ]
    assert wrong == []
    benches = ("benchmark", "measure", "multitask", "peak_bench", "ray_bench")
    assert {f"bench.{name}" for name in benches} <= set(graph)
    assert "bench.measure" in graph["research.study"] and "bench.measure" in graph["bench.multitask"]
