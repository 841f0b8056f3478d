"""The benchmarks use sklcc's public API only: no private name, no patching.

Every ``benchmarks/**/*.py`` is parsed (not run). A benchmark may import a name from an
sklcc module only when the module lists it in ``__all__`` (or it is a public submodule),
may not reach a name with a leading underscore through a module attribute, and may not
assign to an attribute of an sklcc module. A benchmark that needs a piece of the package
calls a documented step; it does not copy or patch one.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def violations(source: str, filename: str = "<string>") -> list[str]:
    """The uses of sklcc's internals in one file's source, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    found = []
    # Local name -> the sklcc module it is bound to.
    modules: dict[str, str] = {}

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "sklcc":
                    continue
                for part in alias.name.split("."):
                    if _private(part):
                        report(node, f"imports private module {alias.name}")
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:
                    modules["sklcc"] = "sklcc"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "sklcc"):
            if any(_private(part) for part in node.module.split(".")):
                report(node, f"imports from private module {node.module}")
                continue
            public = getattr(importlib.import_module(node.module), "__all__", None)
            for alias in node.names:
                name = alias.name
                submodule = f"{node.module}.{name}"
                if _private(name):
                    report(node, f"imports private name {name} from {node.module}")
                elif _is_module(submodule):
                    modules[alias.asname or name] = submodule
                elif public is None or name not in public:
                    report(node, f"imports {name} from {node.module}, which is not in its "
                                 "__all__")
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [
                node.target]
        for target in targets:
            parts = _dotted(target) if isinstance(target, ast.Attribute) else None
            if parts and parts[0] in modules:
                report(node, f"assigns to {'.'.join(parts)}, an attribute of an sklcc module")
        if isinstance(node, ast.Call) and _dotted(node.func) in (["setattr"], ["delattr"]):
            parts = _dotted(node.args[0]) if node.args else None
            if parts and parts[0] in modules:
                report(node, f"patches {'.'.join(parts)}, an sklcc module, with "
                             f"{node.func.id}")
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            parts = _dotted(node)
            if parts and parts[0] in modules and _private(parts[-1]):
                report(node, f"reads private name {'.'.join(parts)}")
    return found


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmark_uses_the_public_api_only(path):
    found = violations(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "benchmarks must use sklcc's public API:\n" + "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from sklcc.neighbors import _faiss", "imports private name _faiss"),
    ("from sklcc.refresh import take_rows", "imports take_rows from sklcc.refresh, which is "
                                            "not in its __all__"),
    ("from sklcc import _latent_buffer", "imports private name _latent_buffer"),
    ("import sklcc._latent_buffer", "imports private module sklcc._latent_buffer"),
    ("from sklcc._latent_buffer import LatentBuffer", "imports from private module"),
    ("import sklcc.neighbors as nb\nnb._faiss = None", "assigns to nb._faiss"),
    ("import sklcc.neighbors\nsklcc.neighbors.knn_graph = print", "assigns to "
                                                                  "sklcc.neighbors.knn_graph"),
    ("from sklcc import neighbors\nsetattr(neighbors, 'knn_graph', print)", "patches neighbors"),
    ("import sklcc.neighbors as nb\nnb._faiss()", "reads private name nb._faiss"),
    ("def f():\n    from sklcc.refresh import take_rows", "2: imports take_rows"),
])
def test_the_check_finds_each_kind_of_use(source, expected):
    found = violations(source)
    assert len(found) == 1 and expected in found[0], found


def test_the_check_passes_public_use():
    source = ("import sklcc\nimport sklcc.neighbors as nb\nfrom sklcc import LCCClassifier, "
              "images\nfrom sklcc.refresh import refresh_clusters\n"
              "nb.knn_graph; sklcc.__version__; x = object(); x.y = 1")
    assert violations(source) == []
