"""The house rules of docs/architecture.md, checked on the source: imports run one way
(cli -> pipeline/batches -> tools -> core), no module imports another in a loop, and one
function chains a scene's tools."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "roadseg"

#: layer of each top-level module or package of roadseg: a module may import its own layer and below
LAYERS = {
    "cli": 4,
    "__main__": 4,
    "pipeline": 3,
    "scenes": 3,
    "cluster": 3,
    "inference": 2,
    "vectorize": 2,
    "evaluate": 2,
    "conflate": 2,
    "train": 2,
    "preview": 2,
    "onnx_model": 2,
    "io": 1,
    "models": 1,
    "checkpoint": 1,
    "model_info": 1,
    "normalization": 1,
    "devices": 1,
    "progress": 1,
    "config": 1,
    "catalog": 1,
    "weights": 1,
    "styles": 1,
    "errors": 0,
    "__init__": 5,  # the package's lazy public API may name anything
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """roadseg modules that ``name`` imports anywhere in its file (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


GRAPH = {name: _imports(name, path, set(_modules())) for name, path in _modules().items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if parts == ["roadseg"] else LAYERS[parts[1]]


def test_every_module_has_a_layer():
    assert all(_layer(m) is not None for m in GRAPH)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if nxt.startswith(node + "."):  # a package importing its own submodules
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_imports_run_one_way():
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if _layer(t) > _layer(m) and not t.startswith(m + ".") and not m.startswith(t + ".")
    ]
    assert upward == []


def test_one_function_chains_predict_vectorize_and_preview():
    """predict_raster is called by the pipeline only; vectorize_raster and render_preview also by
    the vectorize command, which has no prediction to chain (and vectorize_raster by conflate,
    which draws road areas of a map as lines)."""
    callers: dict[str, set[str]] = {
        "predict_raster": set(),
        "vectorize_raster": set(),
        "render_preview": set(),
    }
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in callers:
                callers[node.func.id].add(name)
    assert callers["predict_raster"] == {"roadseg.pipeline"}
    # conflate draws a map's road areas as centrelines with the same code as predicted lines
    assert callers["vectorize_raster"] == {
        "roadseg.pipeline",
        "roadseg.cli.vectorize",
        "roadseg.conflate.tool",
    }
    assert callers["render_preview"] == {"roadseg.pipeline", "roadseg.cli.vectorize"}
