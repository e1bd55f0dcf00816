"""The import structure of the library, read statically (ast) from every module in hdetr/.

- No import cycle between modules through their module-level imports (imports inside a
  function run on call, after every module has loaded, and do not form cycles at import
  time; ``if TYPE_CHECKING:`` blocks never run).
- The library does not depend on the command-line layer: no module but ``hdetr/cli.py``
  and those under ``hdetr/commands/`` imports ``hdetr.commands``, at any level.
- Studies do not depend on their reports: the report writers (``hdetr/reports/``) import the
  studies (``hdetr/studies/``), and no module under ``hdetr/studies/`` imports ``hdetr.reports``,
  at any level.
- transformers (the optional ``hf`` extra) is imported only inside functions, and only by
  ``hdetr/adapters/hf_deformable_detr.py``: importing hdetr never imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hdetr"
COMMAND_LAYER = ("hdetr.cli", "hdetr.commands")
STUDIES, REPORTS = "hdetr.studies", "hdetr.reports"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, *, module_level: bool) -> set[str]:
    """Names ``module`` imports: ``a.b`` for ``import a.b``; ``a.b`` and ``a.b.c`` for
    ``from a.b import c`` (``c`` may be a submodule); relative imports resolved."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and _is_type_checking(child):
                if not module_level:
                    visit(child)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                found.add(source)
                found.update(f"{source}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _graph(module_level: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _imports(tree, name, path.name == "__init__.py", module_level=module_level)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_the_walk_sees_the_library():
    assert "hdetr.models" in _graph(module_level=True)["hdetr.checkpoints.official"]
    # function-level imports count for the layering rule
    assert "hdetr.checkpoints.build" in _graph(module_level=False)["hdetr.analysis.duplicates_report"]
    assert "hdetr.checkpoints.build" not in _graph(module_level=True)["hdetr.analysis.duplicates_report"]


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    graph = _graph(module_level=True)
    # A package's __init__ importing its own submodules, which import their siblings, is not a
    # cycle at import time: the package is in sys.modules before its submodules run.
    graph = {m: {t for t in targets if not _is_package_of(t, m)} for m, targets in graph.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_library_does_not_import_the_commands():
    graph = _graph(module_level=False)
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not (module == "hdetr.cli" or module == "hdetr.commands" or module.startswith("hdetr.commands."))
        for target in targets
        if target == "hdetr.commands" or target.startswith("hdetr.commands.")
    )
    assert not offenders, "library modules importing the command layer:\n" + "\n".join(offenders)


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_studies_do_not_import_the_reports():
    graph = _graph(module_level=False)
    # the rule is not empty: the writers do import the studies
    assert "hdetr.studies.rows" in graph["hdetr.reports.comparison"]
    assert any(_in_package(m, STUDIES) for m in graph) and any(_in_package(m, REPORTS) for m in graph)
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items() if _in_package(module, STUDIES)
        for target in targets if _in_package(target, REPORTS)
    )
    assert not offenders, "study modules importing the report writers (imports run downward):\n" + "\n".join(offenders)


def _third_party(tree: ast.AST, module: str, is_package: bool, package: str, *, module_level: bool) -> bool:
    return any(m == package or m.startswith(package + ".")
               for m in _imports(tree, module, is_package, module_level=module_level))


def test_transformers_is_imported_lazily_by_the_hf_adapter_only():
    adapter = "hdetr.adapters.hf_deformable_detr"
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        assert not _third_party(tree, name, is_package, "transformers", module_level=True), name
        assert name == adapter or not _third_party(tree, name, is_package, "transformers", module_level=False), name
    tree = ast.parse(_modules()[adapter].read_text())
    assert _third_party(tree, adapter, False, "transformers", module_level=False)
