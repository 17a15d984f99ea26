"""HashingEncoder behaviour and the persistent embedding cache (no real model here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    HashingEncoder,
    ModelNotFound,
    SentenceTransformerEncoder,
)


def test_hashing_encoder_is_deterministic_normalized_and_word_sensitive() -> None:
    encoder = HashingEncoder(64)
    assert isinstance(encoder, Encoder)
    a = encoder.encode(["red summer dress", "red summer dress", "winter boots", ""])
    b = HashingEncoder(64).encode(["red summer dress"])

    assert a.shape == (4, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0] @ a[1] == pytest.approx(1.0)
    shared = HashingEncoder(64).encode(["red summer dress", "red summer skirt"])
    assert shared[0] @ shared[1] > a[0] @ a[2]
    assert encoder.encode([]).shape == (0, 64)


def test_cache_encodes_each_text_once_across_instances(tmp_path: Path) -> None:
    texts = ["linen shirt", "wool coat", "linen shirt", "silk scarf"]
    inner = HashingEncoder(32)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        encoder = CachedEncoder(inner, cache)
        first = encoder.encode(texts)
        assert inner.texts_encoded == 3  # the duplicate is encoded once
        assert (encoder.stats.hits, encoder.stats.misses) == (0, 4)
        second = encoder.encode(texts)
        assert inner.texts_encoded == 3
        assert (encoder.stats.hits, encoder.stats.misses) == (4, 4)
        assert encoder.stats.hit_rate == pytest.approx(0.5)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, HashingEncoder(32).encode(texts))

    # A new process (new cache object on the same file) still has them.
    fresh_inner = HashingEncoder(32)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        encoder = CachedEncoder(fresh_inner, cache)
        out = encoder.encode(["wool coat", "silk scarf, now in blue"])
        assert fresh_inner.texts_encoded == 1  # only the changed text
        assert (encoder.stats.hits, encoder.stats.misses) == (1, 1)
        np.testing.assert_array_equal(out[0], first[1])
        assert cache.count() == 4


def test_cache_is_keyed_by_model_id(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        a, b = HashingEncoder(32, model_id="model-a"), HashingEncoder(32, model_id="model-b")
        CachedEncoder(a, cache).encode(["boots"])
        CachedEncoder(b, cache).encode(["boots"])
        assert (a.texts_encoded, b.texts_encoded) == (1, 1)
        assert cache.count("model-a") == 1 and cache.count("model-b") == 1


def test_cache_ignores_entries_of_another_dimension(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        CachedEncoder(HashingEncoder(16, model_id="m"), cache).encode(["boots"])
        wider = HashingEncoder(32, model_id="m")
        out = CachedEncoder(wider, cache).encode(["boots"])
        assert out.shape == (1, 32) and wider.texts_encoded == 1


def test_missing_model_directory_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        SentenceTransformerEncoder(tmp_path / "no-model-here")
