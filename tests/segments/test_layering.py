from __future__ import annotations

import ast
from pathlib import Path

import segments

ALLOWED_TOP_LEVEL = {"segments", "numpy", "scipy", "sklearn", "matplotlib", "threadpoolctl"}


def test_segments_imports_only_stdlib_and_numeric_libraries() -> None:
    """segments/ is domain code: no other Tailor package, no HTTP, no GraphQL."""
    import sys

    package = Path(segments.__file__).parent
    offenders = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED_TOP_LEVEL and top not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
    assert len(list(package.glob("*.py"))) >= 10  # the walk really saw the package
