"""Embeddings: item text → vectors (MiniLM: PyTorch fp32 or ONNX Runtime int8) → FAISS search,
user vectors.

Contracts live in `embeddings.types`; this module re-exports the public API.
"""

from __future__ import annotations

from embeddings.cache import CachedEncoder, CacheStats, EmbeddingCache
from embeddings.encoders import (
    MINILM_MODEL_ID,
    HashingEncoder,
    SentenceTransformerEncoder,
    bundled_model_path,
    should_show_progress,
)
from embeddings.faiss_index import FaissIndex
from embeddings.numpy_index import NumpyIndex
from embeddings.onnx_encoder import OnnxInt8Encoder
from embeddings.store import IndexHolder, IndexStore, Manifest
from embeddings.text import DEFAULT_ITEM_TEMPLATE, render_item_text
from embeddings.types import (
    MISSING_SCORE,
    ArtifactError,
    EmbeddingError,
    Encoder,
    IndexMismatch,
    ItemMeta,
    ModelNotFound,
    SearchFilter,
    UnsupportedModel,
    VectorIndex,
)
from embeddings.user_vectors import (
    UserVectorState,
    decay_factor,
    update_user_vector,
    user_vector_from_events,
)

__all__ = [
    "DEFAULT_ITEM_TEMPLATE",
    "MINILM_MODEL_ID",
    "MISSING_SCORE",
    "ArtifactError",
    "CacheStats",
    "CachedEncoder",
    "EmbeddingCache",
    "EmbeddingError",
    "Encoder",
    "FaissIndex",
    "HashingEncoder",
    "IndexHolder",
    "IndexMismatch",
    "IndexStore",
    "ItemMeta",
    "Manifest",
    "ModelNotFound",
    "NumpyIndex",
    "OnnxInt8Encoder",
    "SearchFilter",
    "SentenceTransformerEncoder",
    "UnsupportedModel",
    "UserVectorState",
    "VectorIndex",
    "bundled_model_path",
    "decay_factor",
    "render_item_text",
    "should_show_progress",
    "update_user_vector",
    "user_vector_from_events",
]
