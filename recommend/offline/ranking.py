"""The learned ranker as an offline strategy, trained the way ``tailor train ranker`` trains it.

:class:`RankerStrategy` fits on the evaluation's training part only: it carves an inner split
from it (of the evaluation's own kind: a random per-user split for the random protocol, the
newest entries per user for a time split), fits fresh candidate sources on the inner training
part, labels each user's candidates with what the inner held-out part holds, and learns
LambdaRank trees from those groups (:func:`recommend.ranker.fit_lambdarank`). It then orders the
candidates of the sources fitted on the whole training part. Features come from
:func:`recommend.ranker_features.candidate_features`, the function serving uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel
from recommend.offline.splits import Split
from recommend.ranker import Group, Ranker, RankerParams
from recommend.ranker_features import (
    ItemFacts,
    ItemStats,
    ProfileView,
    candidate_features,
    cf_scores,
)
from recommend.ranker_fit import fit_lambdarank

#: ``{source name: strategy}`` (the offline stand-ins of the engine's sources).
Sources = Mapping[str, Any]


def batch_lists(
    sources: Sources, data: InteractionMatrix, n: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every source's top ``n`` item ints per user of ``data`` (training items excluded)."""
    return {
        name: source.recommend_batch(data.matrix, n, exclude_seen=True)
        for name, source in sources.items()
    }


def user_lists(
    batch: Mapping[str, tuple[np.ndarray, np.ndarray]], user: int, item_ids: tuple[str, ...]
) -> dict[str, tuple[list[str], np.ndarray]]:
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for name, (ids, scores) in batch.items():
        keep = ids[user] >= 0
        if keep.any():
            out[name] = ([item_ids[i] for i in ids[user][keep]], scores[user][keep])
    return out


def offline_groups(
    sources: Sources,
    train: InteractionMatrix,
    test: InteractionMatrix,
    facts: ItemFacts,
    weights: Mapping[str, float],
    candidates: int,
) -> list[Group]:
    """One labelled group per user with history in ``train`` and held-out items in ``test``:
    the sources (fitted on ``train``) propose, ``test`` says which proposals were right."""
    stats = ItemStats.from_matrix(train)
    now = float(train.timestamps.max()) if train.nnz else 0.0
    batch = batch_lists(sources, train, candidates)
    facts = with_cf(facts, sources)
    has_history = np.diff(train.matrix.indptr) > 0
    groups: list[Group] = []
    for user in np.flatnonzero(has_history & (np.diff(test.matrix.indptr) > 0)):
        lists = user_lists(batch, int(user), train.item_ids)
        ids, X = candidate_features(
            lists, ProfileView.from_row(train, int(user)), facts, stats, now, weights
        )
        if not ids:
            continue
        held = set(test.user_items(test.user_ids[user]))
        y = np.fromiter((i in held for i in ids), dtype=np.float64, count=len(ids))
        groups.append(Group(X, y, test.user_ids[user]))
    return groups


def with_cf(facts: ItemFacts, sources: Sources) -> ItemFacts:
    """``facts`` whose ``cf_scores`` ask the fitted ``cf`` source's model (as serving asks the
    serving model)."""
    source = sources.get("cf")
    while source is not None and not isinstance(source, ItemModel):
        source = getattr(source, "inner", None) or getattr(source, "model", None)
    if source is None:
        return facts
    model = source
    return replace(facts, cf_scores=lambda history, ids: cf_scores(model, history, ids))


class RankerStrategy:
    """LambdaRank over the candidates of ``sources`` (see the module docstring).

    ``make_sources()`` returns fresh, unfitted sources for the inner split; ``sources`` are the
    ones the evaluation fits on its training part (``fit`` fits them unless ``prefitted``).
    ``inner_split(train, r)`` carves the labelled part out of the training part; with
    ``repeats`` > 1 the groups of ``repeats`` such splits (``r = 0, 1, ...``) are pooled."""

    def __init__(
        self,
        make_sources: Callable[[], dict[str, Any]],
        sources: Sources,
        inner_split: Callable[[InteractionMatrix, int], Split],
        *,
        facts: ItemFacts | None = None,
        weights: Mapping[str, float],
        candidates: int = 30,
        params: RankerParams = RankerParams(),
        prefitted: bool = False,
        repeats: int = 1,
        name: str = "ranker",
    ) -> None:
        self.make_sources = make_sources
        self.sources = dict(sources)
        self.inner_split = inner_split
        self.facts = facts or ItemFacts()
        self.weights = dict(weights)
        self.candidates = candidates
        self.params = params
        self.prefitted = prefitted
        self.repeats = repeats
        self.name = name
        self.ranker: Ranker | None = None
        self._train: InteractionMatrix | None = None

    def fit(self, interactions: InteractionMatrix) -> RankerStrategy:
        groups: list[Group] = []
        for repeat in range(self.repeats):
            inner = self.inner_split(interactions, repeat)
            fresh = self.make_sources()
            for source in fresh.values():
                source.fit(inner.train)
            groups += offline_groups(
                fresh, inner.train, inner.test, self.facts, self.weights, self.candidates
            )
        trees, info = fit_lambdarank(groups, self.params)
        if not self.prefitted:
            for source in self.sources.values():
                source.fit(interactions)
        self.ranker = Ranker(
            trees,
            ItemStats.from_matrix(interactions),
            self.weights,
            self.candidates,
            self.params.prior,
            info,
        )
        self._train = interactions
        return self

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        train, ranker = self._train, self.ranker
        if train is None or ranker is None:
            raise RuntimeError("RankerStrategy.recommend_batch before fit")
        if user_items.shape != train.matrix.shape or (user_items != train.matrix).nnz:
            raise ValueError("the ranker recommends for the rows it was fitted on")
        now = float(train.timestamps.max()) if train.nnz else 0.0
        batch = batch_lists(self.sources, train, self.candidates)
        facts = with_cf(self.facts, self.sources)
        ids_out = np.full((train.n_users, k), -1, dtype=np.int64)
        scores_out = np.full((train.n_users, k), -np.inf, dtype=np.float32)
        for user in np.flatnonzero(np.diff(train.matrix.indptr) > 0):
            lists = user_lists(batch, int(user), train.item_ids)
            ids, X = candidate_features(
                lists,
                ProfileView.from_row(train, int(user)),
                facts,
                ranker.stats,
                now,
                ranker.weights,
            )
            if not ids:
                continue
            order, scores = ranker.order(X)
            order = order[:k]
            ids_out[user, : order.size] = [train.item_index[ids[j]] for j in order]
            scores_out[user, : order.size] = scores[order]
        return ids_out, scores_out
