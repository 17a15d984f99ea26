"""``cache/`` sits at the bottom of the import graph: stdlib and cachetools only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import cache

ALLOWED_THIRD_PARTY = {"cachetools", "redis"}


def test_cache_imports_only_stdlib_cachetools_and_itself() -> None:
    package_dir = Path(cache.__file__).parent
    offenders: list[str] = []
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY or top == "cache":
                    continue
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
    assert len(list(package_dir.glob("*.py"))) >= 8
