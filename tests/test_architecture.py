"""The house plan, checked: every arrow between the four packages points at `engine`, the app
never touches Qdrant or torch, and nothing unpickles."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "indexer", "training", "app")


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top_level_imports(package: str) -> dict[str, set[str]]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        out[str(path.relative_to(ROOT))] = {m.split(".")[0] for m in imported_modules(path)}
    return out


def test_engine_imports_none_of_the_other_packages():
    for path, mods in top_level_imports("engine").items():
        assert not mods & {"indexer", "training", "app"}, path


def test_indexer_training_app_do_not_import_each_other():
    for package in ("indexer", "training", "app"):
        others = set(PACKAGES) - {package, "engine"}
        for path, mods in top_level_imports(package).items():
            assert not mods & others, f"{path} imports {mods & others}"


def test_app_never_touches_qdrant_or_torch():
    for path, mods in top_level_imports("app").items():
        assert not mods & {"qdrant_client", "qdrant_edge", "torch"}, path


# what the app may use of the engine: the query API, the vocabulary it speaks in, and (for
# `specclip app`'s own options, app/cli.py) the argument types every subcommand shares
APP_ENGINE_MODULES = {"engine.query", "engine.payload", "engine.errors", "engine.records",
                      "engine.cli_args"}


def test_app_talks_to_engine_query_only():
    for path in (ROOT / "app").rglob("*.py"):
        used = {m for m in imported_modules(path) if m.split(".")[0] == "engine"}
        if "engine" in used:          # `from engine import payload` names a module too
            used.discard("engine")
            tree = ast.parse(path.read_text())
            used |= {f"engine.{a.name}" for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module == "engine"
                     for a in n.names}
        assert used <= APP_ENGINE_MODULES, f"{path} imports {used - APP_ENGINE_MODULES}"


# spelled in two parts so this checker's own source is not itself a call site
TORCH_LOAD_CALL = "torch" + ".load("


def test_no_unpickling_anywhere():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "pickle.load" not in text, path
            for line in text.splitlines():
                if TORCH_LOAD_CALL in line:
                    assert "weights_only=True" in line, f"{path}: {line.strip()}"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """Project modules imported at module level (imports inside functions are deliberate
    lazy imports and cannot form an import-time cycle)."""
    out = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known}
    return out


def test_no_import_cycles_between_modules():
    """Issue 14: training/train.py and training/spectral_fit.py once imported each other.
    No module reaches itself through module-level imports."""
    paths = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    # an edge to one's own parent package is how Python imports any submodule, not a cycle
    graph = {m: {n for n in _module_level_imports(p, set(paths))
                 if n != m and not m.startswith(n + ".")} for m, p in paths.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):]
                                                                      + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
