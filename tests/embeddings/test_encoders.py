"""Encoders: the hashing double, the persistent embedding cache, the conformance suite every
encoder passes (the real MiniLM on both backends in the slow run), and the int8 backend."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo.catalog import generate_items
from embeddings import (
    MINILM_MODEL_ID,
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    FaissIndex,
    HashingEncoder,
    IndexMismatch,
    IndexStore,
    ModelNotFound,
    OnnxInt8Encoder,
    SentenceTransformerEncoder,
    UnsupportedModel,
    render_item_text,
)
from embeddings.onnx_encoder import INT8_SUFFIX
from gateway.settings import SettingsError, load_settings
from gateway.wiring import encoder_factory


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


def test_int8_model_id_keeps_index_versions_apart(tmp_path: Path) -> None:
    """An index written by one backend is refused by the other (and so rebuilt)."""
    store = IndexStore(tmp_path / "index")
    index = FaissIndex(384)
    index.add(["a"], HashingEncoder(384).encode(["a"]))
    store.write(index, MINILM_MODEL_ID)
    with pytest.raises(IndexMismatch, match=r"\+int8"):
        store.load(model_id=MINILM_MODEL_ID + INT8_SUFFIX)
    assert len(store.load(model_id=MINILM_MODEL_ID)) == 1


def test_int8_backend_refuses_missing_and_unsupported_models(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no sentence-transformers model"):
        OnnxInt8Encoder(tmp_path / "no-model-here", cache_dir=tmp_path / "enc")
    model = tmp_path / "cls-model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "modules.json").write_text(
        json.dumps(
            [
                {"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 8, "pooling_mode_cls_token": True})
    )
    with pytest.raises(UnsupportedModel, match="mean pooling only"):
        OnnxInt8Encoder(model, cache_dir=tmp_path / "enc")
    assert not (tmp_path / "enc").exists()  # refused before any export


def test_encoder_backend_setting_is_validated() -> None:
    assert load_settings(environ={}).encoder_backend == "int8"
    assert load_settings(environ={"TAILOR_ENCODER_BACKEND": "fp32"}).encoder_backend == "fp32"
    with pytest.raises(SettingsError, match="'encoder_backend' must be 'int8' or 'fp32'"):
        load_settings(environ={}, encoder_backend="int4")


# ---------------------------------------------------------------- encoder conformance
# Every Encoder honours the protocol: the hashing double always, the real model on both
# backends in the slow run (the model fixtures are session-scoped: loaded/exported once).
@pytest.fixture(
    params=[
        "hashing",
        pytest.param("fp32", marks=pytest.mark.slow),
        pytest.param("int8", marks=pytest.mark.slow),
    ]
)
def encoder(request: pytest.FixtureRequest) -> Encoder:
    if request.param == "hashing":
        return HashingEncoder(384)
    fixture = "minilm" if request.param == "fp32" else "minilm_int8"
    value: Encoder = request.getfixturevalue(fixture)
    return value


TEXTS = [
    "red summer dress",
    "Black leather chelsea boots. Categories: Shoes, Women. Tags: winter, leather.",
    "",
    "A relaxed merino wool crew-neck sweater in navy, made for cold evenings " * 8,
    "winter boots",
]


def test_encoder_contract_shapes_norms_and_identity(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert isinstance(encoder.model_id, str) and encoder.model_id
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), encoder.dimension)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dimension)
    np.testing.assert_allclose(encoder.encode(TEXTS), vectors, atol=1e-6)  # deterministic


def test_encoder_rows_follow_input_order_whatever_the_batching(encoder: Encoder) -> None:
    vectors = encoder.encode(TEXTS)
    backwards = encoder.encode(TEXTS[::-1], batch_size=2, show_progress=True)[::-1]
    alone = np.vstack([encoder.encode([t], batch_size=1) for t in TEXTS])
    for other in (backwards, alone):  # padding and batch-mates change nothing that counts
        np.testing.assert_allclose(other, vectors, atol=1e-5)
    assert vectors[0] @ vectors[4] < 0.995  # distinct texts, distinct rows


# ---------------------------------------------------------------- the int8 backend
@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_texts(
    minilm: SentenceTransformerEncoder, minilm_int8: OnnxInt8Encoder
) -> None:
    rng = np.random.Generator(np.random.PCG64(7))
    catalog = [render_item_text(it.record) for it in generate_items(rng, 200, 0, 86_400 * 90)]
    queries = ["summer dress", "light floral sundress", "warm winter boots", "silk scarf"]
    texts = catalog + queries
    fp32, int8 = minilm.encode(texts), minilm_int8.encode(texts)
    cosines = np.sum(fp32 * int8, axis=1)
    print(f"int8 vs fp32 cosine: mean {cosines.mean():.4f}, min {cosines.min():.4f}")
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.98
    assert minilm_int8.model_id == MINILM_MODEL_ID + INT8_SUFFIX != minilm.model_id
    assert minilm_int8.dimension == minilm.dimension == 384


@pytest.mark.slow
def test_int8_vectors_are_cached_under_their_own_model_id(
    tmp_path: Path, minilm: SentenceTransformerEncoder, minilm_int8: OnnxInt8Encoder
) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        fp32 = CachedEncoder(minilm, cache).encode(["wool coat"])
        int8 = CachedEncoder(minilm_int8, cache).encode(["wool coat"])
        assert cache.count(minilm.model_id) == 1 and cache.count(minilm_int8.model_id) == 1
        assert not np.array_equal(fp32, int8)  # the second call was not served the first's row


@pytest.mark.slow
def test_int8_export_is_reused_and_serving_needs_no_torch(
    tmp_path: Path, minilm_int8: OnnxInt8Encoder
) -> None:
    marker = minilm_int8.export_dir / "export.json"
    made_at = marker.stat().st_mtime_ns
    again = OnnxInt8Encoder(cache_dir=minilm_int8.export_dir.parent)
    assert again.export_dir == minilm_int8.export_dir and marker.stat().st_mtime_ns == made_at
    assert json.loads(marker.read_text())["probe_cosine_min"] >= 0.98
    code = (
        "import sys\n"
        "from embeddings import OnnxInt8Encoder\n"
        f"vectors = OnnxInt8Encoder(cache_dir={str(minilm_int8.export_dir.parent)!r})"
        ".encode(['red summer dress'])\n"
        "assert vectors.shape == (1, 384), vectors.shape\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_wiring_builds_the_configured_backend(tmp_path: Path, minilm_int8: OnnxInt8Encoder) -> None:
    shutil.copytree(
        minilm_int8.export_dir, tmp_path / "encoders" / minilm_int8.export_dir.name
    )  # the export this session already made: no second export
    make = encoder_factory(load_settings(environ={}, data_dir=tmp_path))
    assert make().model_id == MINILM_MODEL_ID + INT8_SUFFIX
    make = encoder_factory(load_settings(environ={}, data_dir=tmp_path, encoder_backend="fp32"))
    assert make().model_id == MINILM_MODEL_ID
