"""The house rules that keep the package easy to change: no import cycles between modules, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ml_service"
MAX_LINES = 600  # the aim is ~400 (docs/architecture.md); above this a module is doing more than one job
# Modules still over the aim, each with what would split it; the list may only shrink.
KNOWN_LONG = {"data/load.py", "demo/generate.py"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("ml_service", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ml_service module `path` imports, at module level or inside functions (a lazy import is still a dependency)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {  # imports under `if TYPE_CHECKING:` never run
        id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ml_service"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
            # `from pkg import submodule` depends on the submodule; `from pkg import name` on the package.
            found |= submodules or {node.module}
            if len(submodules) < len(node.names):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ml_service")}
    return found & modules.keys()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package's __init__ re-exporting its own submodules is not a cycle of responsibilities.
        graph[name] = {dep for dep in _imports(path, modules) - {name} if not (path.name == "__init__.py" and dep.startswith(name + "."))}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_docstring_and_a_readable_size() -> None:
    too_long, undocumented = [], []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            undocumented.append(relative)
        if text.count("\n") > MAX_LINES and relative not in KNOWN_LONG:
            too_long.append(relative)
    assert undocumented == [] and too_long == []


# training/ read top-down: each module imports only modules of its own layer or below (docs/architecture.md).
TRAINING_LAYERS: tuple[set[str], ...] = (
    {"executor"},  # where a run's tenants train: in this process (local) or on a Dask cluster
    {"executor_dask"},  # the orchestrator of a Dask run: stage, submit one task per tenant, log as they end
    {"executor_task"},  # what one Dask task runs on a worker: load → train_tenant → gate → publish
    {"pipeline"},  # per tenant: load → train → publish, and the run over all tenants
    {"interim", "reuse"},  # publish the first candidate above popular; refit the last choice instead of searching
    {"anytime"},  # the quick popular model for every tenant before the full search
    {"auto"},  # the search over algorithms (and blends) within a budget
    {"tune"},  # one algorithm's candidates on a validation split; the final refit
    {"blend", "context", "logs", "metrics", "prepared", "progress", "result", "split",  # what they all use
     "budget", "costs", "extras", "gate", "search", "executor_stage"},
)


def _layer_violations(imports: dict[str, set[str]], layers: tuple[set[str], ...]) -> list[str]:
    """'a imports b' for every import of a module from a layer above its own; unplaced modules are named too."""
    rank = {name: depth for depth, layer in enumerate(layers) for name in layer}
    problems = [f"{name} is in no layer" for name in sorted(imports) if name not in rank]
    for name, deps in sorted(imports.items()):
        problems += [f"{name} imports {dep}" for dep in sorted(deps) if dep in rank and name in rank and rank[dep] < rank[name]]
    return problems


def test_training_modules_never_import_one_above_them() -> None:
    modules = _modules()
    prefix = "ml_service.training."
    imports = {
        name.removeprefix(prefix): {dep.removeprefix(prefix) for dep in _imports(path, modules) if dep.startswith(prefix)}
        for name, path in modules.items() if name.startswith(prefix)
    }
    assert _layer_violations(imports, TRAINING_LAYERS) == []
    below = [name for name, path in modules.items() if name.startswith(("ml_service.models", "ml_service.ranking"))
             and any(dep.startswith("ml_service.training") for dep in _imports(path, modules))]
    assert below == []  # models/ and ranking/ sit below training/


def test_the_layer_check_finds_an_upward_import() -> None:
    layers = ({"top"}, {"middle"}, {"bottom"})
    assert _layer_violations({"top": {"bottom"}, "middle": {"top"}, "bottom": set(), "stray": set()}, layers) == [
        "stray is in no layer", "middle imports top"]
