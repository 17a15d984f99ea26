"""MovieLens ``ml-latest-small`` as implicit interactions (evaluation and benchmarks only).

Mapping: every rating row ``userId,movieId,rating,timestamp`` becomes one interaction
``(userId, movieId, weight=1.0, ts=timestamp)`` — the *fact* of rating a movie is the
implicit signal, whatever the star value (the usual implicit-feedback protocol on MovieLens).
Ids stay the dataset's own ids, as strings. :func:`load_movielens_ratings` also gives the same
interactions weighted as Tailor weighs an imported ``rate`` event (``value / 5``, see
``profiles.state.ProfileState.event_weight``) and under each training curve of
:data:`recommend.cf_tuning.RATING_CURVES`, for the evaluation of what Tailor serves. Nothing is downloaded and nothing is copied into the
repository: the data must already be under ``$TAILOR_DATASETS_DIR/ml-latest-small`` (default
``<repo>/../shared/data``, beside the checkout). ``TAILOR_DATASETS_DIR`` is not the gateway's
state directory (``TAILOR_DATA_DIR``). See docs/DATA.md.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommend.cf_tuning import RATING_CURVES, rating_weight
from recommend.interactions import InteractionMatrix, InteractionRow
from recommend.types import RecommendError

DATASET = "ml-latest-small"
ENV_VAR = "TAILOR_DATASETS_DIR"
# This file is <repo>/recommend/offline/movielens.py: parents[2] is the checkout itself.
REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The datasets directory: ``$TAILOR_DATASETS_DIR`` or ``<repo>/../shared/data``."""
    configured = os.environ.get(ENV_VAR)
    default = REPO.parent / "shared" / "data"
    return Path(configured or default).expanduser().resolve()


def dataset_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/ml-latest-small`` (root: :func:`data_dir`); a clear error when it is missing."""
    path = (Path(root) if root is not None else data_dir()) / DATASET
    if not (path / "ratings.csv").is_file():
        raise RecommendError(
            f"MovieLens {DATASET} not found at {path} (no ratings.csv there): set {ENV_VAR} "
            f"to the folder that holds {DATASET}/ (default: ../shared/data beside the "
            f"checkout, {REPO.parent / 'shared' / 'data'}; see docs/DATA.md)"
        )
    return path


def rating_rows(root: str | os.PathLike[str] | None = None) -> Iterator[InteractionRow]:
    """``ratings.csv`` as ``(user_id, item_id, 1.0, ts)`` rows."""
    with (dataset_dir(root) / "ratings.csv").open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            yield rec["userId"], rec["movieId"], 1.0, float(rec["timestamp"])


def load_movielens(root: str | os.PathLike[str] | None = None) -> InteractionMatrix:
    """All ratings as implicit interactions (weight 1 each; see the module docstring)."""
    users: list[str] = []
    items: list[str] = []
    stamps: list[float] = []
    with (dataset_dir(root) / "ratings.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        u, i, t = header.index("userId"), header.index("movieId"), header.index("timestamp")
        for rec in reader:
            users.append(rec[u])
            items.append(rec[i])
            stamps.append(float(rec[t]))
    return InteractionMatrix.from_arrays(users, items, [1.0] * len(users), stamps)


@dataclass(frozen=True)
class MovieLensRatings:
    """The ratings three ways, over the same entries: ``binary`` (the fact of rating, the
    published protocol), ``served`` (as profiles weigh ``rate`` events: value / 5) and
    ``variants`` (each rating curve's training weights; ``centered`` drops ratings below 2.5
    stars, which are negative evidence there)."""

    binary: InteractionMatrix
    served: InteractionMatrix
    variants: dict[str, InteractionMatrix]


def load_movielens_ratings(root: str | os.PathLike[str] | None = None) -> MovieLensRatings:
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    stamps: list[float] = []
    with (dataset_dir(root) / "ratings.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        u, i, r, t = (header.index(c) for c in ("userId", "movieId", "rating", "timestamp"))
        for rec in reader:
            users.append(rec[u])
            items.append(rec[i])
            values.append(float(rec[r]))
            stamps.append(float(rec[t]))
    value = np.asarray(values)
    binary = InteractionMatrix.from_arrays(users, items, np.ones(len(users)), stamps)

    def weighted(curve: str) -> InteractionMatrix:
        w = np.fromiter((rating_weight(v, 1.0, curve) for v in value), np.float64, value.size)
        return InteractionMatrix.from_arrays(users, items, w, stamps, item_ids=binary.item_ids)

    variants = {curve: weighted(curve) for curve in RATING_CURVES}
    served = variants["linear"]
    if not (
        served.user_ids == binary.user_ids
        and np.array_equal(served.matrix.indptr, binary.matrix.indptr)
        and np.array_equal(served.matrix.indices, binary.matrix.indices)
    ):
        raise RecommendError("ratings.csv has repeated (user, movie) rows: cannot align weights")
    return MovieLensRatings(binary, served, variants)


def load_movie_genres(root: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """``{movieId: [genre, ...]}`` from ``movies.csv`` (for diversity categories)."""
    with (dataset_dir(root) / "movies.csv").open(newline="", encoding="utf-8") as fh:
        return {rec["movieId"]: rec["genres"].split("|") for rec in csv.DictReader(fh)}
