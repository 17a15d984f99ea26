"""``demo/`` is pure Python + numpy and imports nothing else from Tailor."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import demo


def test_demo_imports_only_stdlib_numpy_and_itself() -> None:
    package_dir = Path(demo.__file__).parent
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
                if top not in sys.stdlib_module_names and top not in {"numpy", "demo"}:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
    assert (package_dir / "world.py").exists() and (package_dir / "types.py").exists()
