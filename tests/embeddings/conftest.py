"""Shared fixtures: index factories for the conformance suite, vectors, the real model."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from embeddings import (
    FaissIndex,
    NumpyIndex,
    OnnxInt8Encoder,
    SentenceTransformerEncoder,
    VectorIndex,
)

DIM = 16

IndexFactory = Callable[[int], VectorIndex]

INDEX_FACTORIES: dict[str, IndexFactory] = {
    "faiss-exact": lambda d: FaissIndex(d),
    # Threshold 0: HNSW as soon as the index holds one item, so every test exercises the graph.
    "faiss-hnsw": lambda d: FaissIndex(d, hnsw_threshold=0, ef_search=64),
    # The graph over quantized codes, re-ranked exactly from the float vectors kept beside it.
    "faiss-hnsw-sq8": lambda d: FaissIndex(d, hnsw_threshold=0, ef_search=64, hnsw_storage="sq8"),
    "faiss-hnsw-fp16": lambda d: FaissIndex(d, hnsw_threshold=0, ef_search=64, hnsw_storage="fp16"),
    "numpy": lambda d: NumpyIndex(d),
}


@pytest.fixture(params=sorted(INDEX_FACTORIES))
def make_index(request: pytest.FixtureRequest) -> IndexFactory:
    """Each test using this runs once per VectorIndex implementation."""
    return INDEX_FACTORIES[request.param]


def unit_rows(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    """n random L2-normalized float32 rows."""
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(matrix: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    """The k best ids by inner product, computed independently of any index."""
    order = np.argsort(-(matrix @ query), kind="stable")[:k]
    return [ids[i] for i in order]


@pytest.fixture(scope="session")
def minilm() -> Iterator[SentenceTransformerEncoder]:
    """The real bundled all-MiniLM-L6-v2 (loaded once per session; slow tests only)."""
    yield SentenceTransformerEncoder()


@pytest.fixture(scope="session")
def minilm_int8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnnxInt8Encoder]:
    """The bundled MiniLM on the int8 ONNX backend, exported once per session (slow tests only)."""
    yield OnnxInt8Encoder(cache_dir=tmp_path_factory.mktemp("encoders"))
