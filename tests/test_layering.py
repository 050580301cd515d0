"""The package's imports, read with `ast`: no import cycle, and no import that points up the layer order."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Top to bottom: a module may import its own layer and the layers below it, never one above. A layer
# is a list of module prefixes. Imports inside `if TYPE_CHECKING:` only name types for annotations and
# run nothing, so they are exempt from the order (they still may not form a cycle at run time: they
# never run). Function-level (lazy) imports count like top-level ones.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("trainctl.cli", "trainctl.__main__")),
    ("workflows", ("trainctl.workflows",)),
    ("api", ("trainctl.api",)),
    ("runtime: processes", ("trainctl.runtime.launch", "trainctl.runtime.worker")),
    ("plan", ("trainctl.plan",)),
    ("recipes", ("trainctl.recipes",)),
    ("runtime: devices", ("trainctl.runtime",)),
    ("components", ("trainctl.compress", "trainctl.export", "trainctl.recommend")),
    ("training", ("trainctl.training",)),
    ("building blocks", ("trainctl.data", "trainctl.models", "trainctl.optim")),
    ("observe", ("trainctl.observe",)),
    ("runs", ("trainctl.runs",)),
    ("config", ("trainctl.config", "trainctl.conf")),
    ("base", ("trainctl.errors", "trainctl.registry", "trainctl")),
)

# Where the package's modules live: trainctl/, and recipes/ installed as trainctl.recipes.
SOURCES = {"trainctl": REPO / "trainctl", "trainctl.recipes": REPO / "recipes"}


@dataclass(frozen=True)
class Edge:
    """`importer` imports `imported` at line `line` (`typing_only`: inside `if TYPE_CHECKING:`)."""

    importer: str
    imported: str
    line: int
    typing_only: bool


def package_modules(sources: dict[str, Path]) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    modules = {}
    for prefix, folder in sources.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([prefix, *parts])] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement below `tree`, functions included, and whether only type checkers run it."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing_only
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                yield from import_nodes(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from import_nodes(ast.Module(body=[child], type_ignores=[]), typing_only)
        else:
            yield from import_nodes(node, typing_only)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(modules: dict[str, Path], root: str) -> list[Edge]:
    """The edges between the package's own modules (`from a import b` points at module a.b if it is one)."""
    edges = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, typing_only in import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = resolve(name, is_package, node)
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names
                ]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target.split(".")[0] == root and target != name:
                    edges.append(Edge(name, target, node.lineno, typing_only))
    return edges


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]]) -> int:
    """The index of the layer whose longest prefix matches `module` (0 is the top)."""
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def upward_imports(edges: list[Edge], layers: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Every import of a module in a higher layer, as 'importer:line -> imported (layer above)'."""
    found = []
    for edge in edges:
        if edge.typing_only:
            continue
        mine, theirs = layer_of(edge.importer, layers), layer_of(edge.imported, layers)
        if mine < 0 or theirs < 0:
            found.append(f"{edge.importer if mine < 0 else edge.imported} is in no declared layer")
        elif theirs < mine:
            where = f"{edge.importer}:{edge.line} ({layers[mine][0]})"
            found.append(f"{where} imports {edge.imported} ({layers[theirs][0]})")
    return sorted(set(found))


def unit_of(module: str, layers: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The longest declared prefix that `module` falls under."""
    prefixes = [p for _, group in layers for p in group if module == p or module.startswith(p + ".")]
    return max(prefixes, key=len, default=module)


def collapse(edges: list[Edge], layers: Sequence[tuple[str, Sequence[str]]]) -> list[Edge]:
    """The edges between declared folders (a module stands for the declared prefix it falls under)."""
    collapsed = []
    for edge in edges:
        a, b = unit_of(edge.importer, layers), unit_of(edge.imported, layers)
        if a != b:
            collapsed.append(Edge(a, b, edge.line, edge.typing_only))
    return collapsed


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.typing_only:
            graph.setdefault(edge.importer, set()).add(edge.imported)
            graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def package_edges() -> list[Edge]:
    return imports(package_modules(SOURCES), "trainctl")


def test_the_package_has_no_import_cycle(package_edges: list[Edge]) -> None:
    assert cycles(package_edges) == []


def test_no_cycle_between_the_declared_folders(package_edges: list[Edge]) -> None:
    """Modules collapsed into the declared prefix they belong to (trainctl.compress, trainctl.plan, ...)."""
    assert cycles(collapse(package_edges, LAYERS)) == []


def test_no_module_imports_a_layer_above_its_own(package_edges: list[Edge]) -> None:
    assert upward_imports(package_edges, LAYERS) == []


def test_every_module_is_in_a_declared_layer() -> None:
    missing = [m for m in package_modules(SOURCES) if layer_of(m, LAYERS) < 0]
    assert missing == []


def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    """A package `fake` under `root` with these files (and an empty __init__.py); its modules."""
    for relative, text in {"__init__.py": "", **files}.items():
        path = root / "fake" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package_modules({"fake": root / "fake"})


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    modules = write_package(
        tmp_path,
        {
            "plan.py": "def make():\n    from fake.launch import start\n",
            "launch/__init__.py": "from fake.plan import make\n\ndef start():\n    pass\n",
            "other.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fake import plan\n",
        },
    )
    assert cycles(imports(modules, "fake")) == [["fake.launch", "fake.plan"]]


def test_the_checker_ignores_a_type_only_import_but_not_a_relative_one(tmp_path: Path) -> None:
    low = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fake.top import x\n"
    edges = imports(write_package(tmp_path, {"top.py": "from . import low\n", "low.py": low}), "fake")
    assert cycles(edges) == []
    layers = (("top", ("fake.top",)), ("low", ("fake.low", "fake")))
    assert upward_imports(edges, layers) == []
    assert upward_imports(edges, tuple(reversed(layers))) == ["fake.top:1 (top) imports fake.low (low)"]
