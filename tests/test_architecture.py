"""The import direction of ../shared/ARCHITECTURE.md holds: arrows never run back up the table."""

from __future__ import annotations

import ast
from pathlib import Path

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
# package -> the Tailor packages it may import
ALLOWED: dict[str, set[str]] = {
    "gateway": set(PACKAGES),
    "resolvers": DOMAIN | {"embeddings", "cache", "storage"},
    **{d: {"embeddings", "cache", "storage"} for d in DOMAIN},
    "demo": set(),
    "embeddings": set(),
    "cache": set(),
    "storage": set(),
}
WEB = {"strawberry", "starlette", "uvicorn", "graphql"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_imports_point_down_the_table() -> None:
    violations = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for mod in _imports(path):
                if mod in PACKAGES and mod != pkg and mod not in ALLOWED[pkg]:
                    violations.append(f"{path.relative_to(ROOT)} imports {mod}")
                if mod in WEB and pkg not in ("gateway", "resolvers"):
                    violations.append(
                        f"{path.relative_to(ROOT)} imports {mod} (only gateway/resolvers may)"
                    )
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from gateway.app import create_app\nimport strawberry\n")
    assert {"gateway", "strawberry"} <= _imports(bad)
