"""Re-ranking for diversity: maximal marginal relevance (MMR) and a per-category cap.

MMR picks items one at a time, maximising ``(1 - diversity) * relevance - diversity *
max_similarity_to_already_picked``. Relevance is the candidates' score min-max scaled to
``[0, 1]`` so that it is on the same scale as cosine similarity; ``diversity=0`` keeps the
relevance order exactly, ``diversity=1`` ignores relevance except to break ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recommend.types import Recommendation

#: Item id → unit-norm embedding (any fixed dimension), or ``None`` when the item has none.
VectorOf = Callable[[str], np.ndarray | None]
#: Item id → category (``None``: uncategorised, never capped).
CategoryOf = Callable[[str], str | None]


def mmr(
    candidates: Sequence[Recommendation],
    k: int,
    *,
    vector_of: VectorOf | None = None,
    diversity: float = 0.0,
    category_of: CategoryOf | None = None,
    max_per_category: int | None = None,
) -> list[Recommendation]:
    """Re-rank ``candidates`` (any order) and return at most ``k`` of them.

    Items without a vector count as dissimilar to everything. With ``max_per_category``, an
    item whose category already holds that many picks is skipped; if the cap leaves fewer
    than ``k`` eligible items, fewer are returned (a cap is a promise, not a preference).
    Recommendations are returned unchanged (original scores), only reordered.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError("diversity must be in [0, 1]")
    n = len(candidates)
    if n == 0 or k <= 0:
        return []
    scores = np.array([c.score for c in candidates], dtype=np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones(n)

    sims: np.ndarray | None = None
    if vector_of is not None and diversity > 0:
        vectors = [vector_of(c.item_id) for c in candidates]
        dim = next((len(v) for v in vectors if v is not None), 0)
        mat = np.zeros((n, dim), dtype=np.float64)
        for row, vec in enumerate(vectors):
            if vec is not None:
                mat[row] = vec
        sims = mat @ mat.T

    categories = [category_of(c.item_id) if category_of else None for c in candidates]
    per_category: dict[str, int] = {}
    max_sim = np.zeros(n, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    picked: list[Recommendation] = []
    while len(picked) < k:
        if max_per_category is not None:
            for i in np.flatnonzero(available):
                cat = categories[i]
                if cat is not None and per_category.get(cat, 0) >= max_per_category:
                    available[i] = False
        if not available.any():
            break
        value = (1.0 - diversity) * relevance - diversity * max_sim
        value[~available] = -np.inf
        # Ties (always the case at the first pick with diversity=1) go to the more relevant
        # item, then to the earlier one.
        tied = np.flatnonzero(value >= value.max() - 1e-12)
        choice = int(tied[np.argmax(relevance[tied])])
        picked.append(candidates[choice])
        available[choice] = False
        chosen_category = categories[choice]
        if chosen_category is not None:
            per_category[chosen_category] = per_category.get(chosen_category, 0) + 1
        if sims is not None:
            max_sim = np.maximum(max_sim, sims[choice])
    return picked
