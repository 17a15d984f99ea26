"""The real bundled all-MiniLM-L6-v2 model: sanity of vectors and of neighbours on MovieLens."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import numpy as np
import pytest

from embeddings import (
    MINILM_MODEL_ID,
    FaissIndex,
    ItemMeta,
    SearchFilter,
    SentenceTransformerEncoder,
    render_item_text,
)
from tests.conftest import movielens_dir

CATALOG_SIZE = 400  # most-rated movies indexed (keeps encoding to seconds on 2 cores)
QUERIES = 100


@pytest.mark.slow
def test_minilm_vectors_are_normalized_and_meaningful(minilm: SentenceTransformerEncoder) -> None:
    assert minilm.model_id == MINILM_MODEL_ID and minilm.dimension == 384
    texts = ["summer dress", "light floral sundress", "winter boots"]
    vectors = minilm.encode(texts, batch_size=2)

    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    dress, sundress, boots = vectors
    print(f"sim(dress, sundress)={dress @ sundress:.3f} sim(dress, boots)={dress @ boots:.3f}")
    assert dress @ sundress > dress @ boots
    np.testing.assert_allclose(minilm.encode(texts[:1])[0], dress, atol=1e-5)


def _movielens_items() -> tuple[list[str], dict[str, dict[str, object]]]:
    """Movie ids of the CATALOG_SIZE most-rated movies (most rated first) and their records."""
    movielens = movielens_dir()  # fails (never skips) when the dataset is missing
    counts: Counter[str] = Counter()
    with (movielens / "ratings.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            counts[row["movieId"]] += 1
    tags: defaultdict[str, set[str]] = defaultdict(set)
    with (movielens / "tags.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tags[row["movieId"]].add(row["tag"].strip().lower())
    movies: dict[str, dict[str, object]] = {}
    with (movielens / "movies.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            genres = [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")
            movies[row["movieId"]] = {
                "title": row["title"],
                "categories": genres,
                "tags": tags.get(row["movieId"], set()),
            }
    ranked = [m for m, _ in counts.most_common() if m in movies][:CATALOG_SIZE]
    return ranked, movies


@pytest.mark.slow
def test_minilm_neighbours_share_genres_far_more_than_random(
    minilm: SentenceTransformerEncoder,
) -> None:
    ranked, movies = _movielens_items()
    texts = [render_item_text(movies[m]) for m in ranked]
    genres = {m: frozenset(movies[m]["categories"]) for m in ranked}  # type: ignore[arg-type]
    index = FaissIndex(minilm.dimension)
    index.add(ranked, minilm.encode(texts), [ItemMeta(genres[m]) for m in ranked])

    rng = np.random.default_rng(0)
    neighbour_hits = random_hits = 0
    for movie in ranked[:QUERIES]:
        got, _ = index.search(index.vector(movie), 10, SearchFilter(exclude_ids=frozenset({movie})))
        assert len(got[0]) == 10
        neighbour_hits += sum(bool(genres[n] & genres[movie]) for n in got[0])
        others = [m for m in rng.choice(ranked, size=11, replace=False) if m != movie][:10]
        random_hits += sum(bool(genres[n] & genres[movie]) for n in others)

    neighbour_rate = neighbour_hits / (QUERIES * 10)
    random_rate = random_hits / (QUERIES * 10)
    print(f"share a genre: MiniLM top-10 {neighbour_rate:.3f} vs random {random_rate:.3f}")
    assert neighbour_rate >= random_rate + 0.15
    assert neighbour_rate >= 0.8
