"""Choosing the CF model's parameters on the data it will serve, within a time budget.

``tailor train cf`` (:func:`recommend.training.train_cf`) and the offline evaluation call
:func:`tune_cf`: a random per-user validation split is carved from the training interactions
(``validation_fraction`` of each user's entries), each candidate setting is fitted on the rest
and scored by NDCG@10 on the held-out part, exactly as :mod:`recommend.offline.evaluate` scores
strategies. What is searched:

* EASE: whether it also learns from sessions (``ease_session_s``: none, or windows of 5
  minutes, 15 minutes, an hour or a day, tried in that order while it improves; see
  :class:`recommend.cf.EASE`), then the L2 regularisation ``lambda`` — the configured value,
  then halving and doubling it, continuing in the better direction while it improves;
* ALS: the number of factors and the regularisation, one coordinate at a time from the
  configured ones; item-kNN: the number of neighbours;
* the model itself when the kind is ``auto``: after EASE's search (the catalog is small enough
  for it), ALS is tried too and searched when it does better;
* explicit ratings (``rate`` events carry a 0-10 ``value``): which *training* weight a rating
  gets (:data:`RATING_CURVES`) — ``linear`` (value / 5 of the ``rate`` weight, as profiles weigh
  it), ``binary`` (the fact of rating, whatever its value) or ``centered`` ((value - 2.5) / 2.5:
  low ratings are negative evidence that cancels other interactions with the item). Whatever the
  curve, the *history* a model scores from is weighted as profiles weigh it, as in serving.

* the relative weights of the event types (``view``, ``click``, ``add_to_cart``, ``purchase``,
  ``rate``…) when the data holds several with a positive configured weight: one type at a time,
  its configured weight times 0.25 then 0 while that improves, else times 4 then 16 (the
  weights both train the model and weigh the history it scores from, as serving will; the
  held-out targets stay the configured interactions, so every candidate answers the same
  question). A type that is pure noise ends down-weighted or dropped.

EASE's session window is chosen first (under the default curve), then the curve (at that
window and the configured parameters), then the other parameters under it, then
the event-type weights at those parameters and, when they changed, the parameters again. Every
trial is timed; a trial is started only when the budget still holds one more trial of the
longest so far, so the search ends in bounded time (the configured setting is always tried).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.cf import choose_cf_model
from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel
from recommend.offline.metrics import hits_matrix, ranking_metrics
from recommend.offline.splits import random_split
from recommend.types import CFConfig, RecommendError

log = logging.getLogger("tailor.recommend.cf_tuning")

RATING_CURVES = ("linear", "binary", "centered")

#: ``(curve, event_type_weights) -> matrix``: the events weighted anew (ratings by ``curve``),
#: with the served matrix's id maps (see :func:`tune_cf`).
Reweigh = Callable[[str, Mapping[str, float]], InteractionMatrix]

#: Multiples of an event type's configured weight the search tries, down then up.
_TYPE_FACTORS = {-1: (0.25, 0.0), 1: (4.0, 16.0)}


def rating_weight(value: float, base: float, curve: str) -> float:
    """The training weight of a rating of ``value`` (0-10 scale, 5 = top of a 5-star scale)
    for an event type weighing ``base``."""
    if curve == "linear":
        return base * value / 5.0
    if curve == "binary":
        return base
    if curve == "centered":
        return base * (value - 2.5) / 2.5
    raise ValueError(f"unknown rating curve {curve!r}; one of {RATING_CURVES}")


def restrict(variant: InteractionMatrix, to: InteractionMatrix) -> InteractionMatrix:
    """The entries of ``variant`` (other training weights of the same events) whose user/item
    pair is stored in ``to`` (a split part of the served matrix); same id maps required."""
    if variant.user_ids != to.user_ids or variant.item_ids != to.item_ids:
        raise ValueError("the weight variants must share the served matrix's id maps")
    if variant is to:
        return to
    present = (to.matrix != 0).astype(np.int8).tocsr()
    users = variant.entry_users()
    keep = np.asarray(present[users, variant.matrix.indices]).ravel() > 0
    return variant.select(keep)


class TrainedOn:
    """A CF model that trains on another weighting of the interactions it is given (a rating
    curve) and scores from the history rows it is asked about (an offline strategy)."""

    def __init__(self, model: ItemModel, variant: InteractionMatrix, name: str = "cf") -> None:
        self.model = model
        self.variant = variant
        self.name = name

    def fit(self, interactions: InteractionMatrix) -> TrainedOn:
        self.model.fit(restrict(self.variant, interactions))
        return self

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.model.recommend_batch(user_items, k, exclude_seen=exclude_seen)


@dataclass(frozen=True)
class CFTuning:
    """The chosen setting (``config`` with ``kind`` fixed), rating curve, validation NDCG@10
    and every trial in the order tried; ``event_weights``: the chosen weight of every searched
    event type (None: the configured weights, not searched or not bettered)."""

    config: CFConfig
    curve: str
    ndcg: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    validation: dict[str, Any] = field(default_factory=dict)
    event_weights: dict[str, float] | None = None

    def params(self) -> dict[str, Any]:
        """The chosen kind and its tuned parameters (what ``trained.json`` records)."""
        names = _SEARCHED.get(self.config.kind, ())
        return {"kind": self.config.kind, **{name: getattr(self.config, name) for name in names}}


_SEARCHED: dict[str, tuple[str, ...]] = {
    "ease": ("ease_session_s", "ease_lambda"),
    "als": ("als_factors", "als_regularization"),
    "knn": ("knn_neighbours",),
}
#: Parameters that change the training rows: searched before the rating curve.
_ROWS: dict[str, tuple[str, ...]] = {"ease": ("ease_session_s",)}
_LADDERS: dict[str, tuple[float, ...]] = {
    "ease_session_s": (0.0, 300.0, 900.0, 3600.0, 86400.0),
    "als_factors": (16, 32, 64, 128),
    "als_regularization": (0.01, 0.1, 1.0, 10.0, 100.0),
    "knn_neighbours": (25, 50, 100, 200, 400),
}


def _sample_users(data: InteractionMatrix, n_users: int, seed: int) -> np.ndarray | None:
    active = np.flatnonzero(np.diff(data.matrix.indptr) > 1)
    if active.size <= n_users:
        return None
    return np.isin(data.entry_users(), np.random.default_rng(seed).choice(active, n_users, False))


def tune_cf(
    served: InteractionMatrix,
    variants: Mapping[str, InteractionMatrix],
    config: CFConfig,
    *,
    budget_s: float = 60.0,
    seed: int = 0,
    k: int = 10,
    validation_fraction: float = 0.2,
    max_users: int = 5000,
    clock: Callable[[], float] = time.perf_counter,
    reweigh: Reweigh | None = None,
    event_weights: Mapping[str, float] | None = None,
    max_trials: int | None = None,
) -> CFTuning:
    """Search the CF setting (see the module docstring). ``served`` holds the interactions
    weighted as serving weighs history; ``variants`` maps rating curves to training weightings
    of the same events (``served`` itself among them, or only it when there are no ratings).

    ``event_weights`` (the configured weight of each event type present, positive ones
    searched) and ``reweigh`` (the events under other type weights; ``reweigh("linear", w)``
    is ``served`` re-weighted) turn on the event-type search when two or more types qualify.
    ``max_trials`` also ends the search after that many trials: with a generous ``budget_s``,
    the result then does not depend on how busy the machine is (an evaluation's must not)."""
    auto = config.kind == "auto"
    kind = choose_cf_model(served.n_items, config).kind
    config = dataclasses.replace(config, kind=kind)  # type: ignore[arg-type]
    started = clock()
    mask = _sample_users(served, max_users, seed)
    base = served.select(mask) if mask is not None else served
    split = random_split(base, validation_fraction, seed=seed)
    curves = [c for c in RATING_CURVES if c in variants] or list(variants)
    default_curve = "linear" if "linear" in variants else curves[0]
    trials: list[dict[str, Any]] = []
    longest = 0.0

    def data(curve: str, types: Mapping[str, float] | None) -> tuple[InteractionMatrix, Any]:
        """The training part and the history matrix of a trial (``types``: None = configured)."""
        if types is None or reweigh is None:
            return restrict(variants[curve], split.train), split.train.matrix
        train = restrict(reweigh(curve, types), split.train)
        history = train if curve == "linear" else restrict(reweigh("linear", types), split.train)
        return train, history.matrix

    def trial(cfg: CFConfig, curve: str, types: Mapping[str, float] | None = None) -> float | None:
        nonlocal longest
        if trials and max_trials is not None and len(trials) >= max_trials:
            return None
        if trials and clock() - started + longest > budget_s:
            return None
        t0 = clock()
        train, history = data(curve, types)
        failed: dict[str, str] = {}
        try:
            model = choose_cf_model(served.n_items, cfg).fit(train)
        except RecommendError as exc:  # e.g. type weights that leave too few interactions
            ndcg, failed = -1.0, {"error": str(exc)}
        else:
            ids = _unseen_top_k(model, history, split.train.matrix, k)
            ndcg = ranking_metrics(ids, split.test.matrix, k)["ndcg"]
        spent = clock() - t0
        longest = max(longest, spent)
        params = {name: getattr(cfg, name) for name in _SEARCHED.get(cfg.kind, ())}
        extra = {"event_weights": dict(types)} if types is not None else {}
        trials.append(
            {
                "kind": cfg.kind,
                **params,
                "curve": curve,
                **extra,
                "ndcg": round(ndcg, 6),
                "seconds": round(spent, 2),
                **failed,
            }
        )
        log.info(
            "CF trial %s %s curve=%s%s: NDCG@%d %.4f (%.1fs)",
            cfg.kind,
            params,
            curve,
            f" types={dict(types)}" if types is not None else "",
            k,
            ndcg,
            spent,
        )
        return float(ndcg)

    # What changes the training rows first: EASE's session windows (the largest gain where
    # the data has sittings, so it is reached early within the budget even on a busy machine),
    # then the rating curve (it changes the data, a parameter only the fit), then the other
    # parameters under the chosen curve.
    best = trial(config, default_curve)
    assert best is not None  # the first trial always runs
    best_cfg = config
    rows = _ROWS.get(kind, ())
    best_cfg, best = _search(
        best_cfg, kind, lambda c: trial(c, default_curve), best, served.n_items, rows
    )
    best_curve = default_curve
    for curve in curves:
        if curve == default_curve:
            continue
        got = trial(best_cfg, curve)
        if got is None:
            break
        if got > best:
            best, best_curve = got, curve
    rest = tuple(name for name in _SEARCHED.get(kind, ()) if name not in rows)
    best_cfg, best = _search(
        best_cfg, kind, lambda c: trial(c, best_curve), best, served.n_items, rest
    )
    searched = {t: float(w) for t, w in (event_weights or {}).items() if w > 0}
    types: dict[str, float] | None = None
    if reweigh is not None and len(searched) >= 2:
        at = best_cfg
        types, best = _search_types(searched, lambda w: trial(at, best_curve, w), best)
        if types is not None:  # the parameters again, under the chosen type weights
            best_cfg, best = _search(
                best_cfg, kind, lambda c: trial(c, best_curve, types), best, served.n_items
            )
    if auto and kind == "ease":  # EASE fits this catalog: ALS may still fit the data better
        als = dataclasses.replace(config, kind="als")
        got = trial(als, best_curve, types)
        if got is not None and got > best:
            best_cfg, best = _search(
                als, "als", lambda c: trial(c, best_curve, types), got, served.n_items
            )
    return CFTuning(
        best_cfg,
        best_curve,
        best,
        trials,
        round(clock() - started, 2),
        {
            "split": "random per user",
            "fraction": validation_fraction,
            "seed": seed,
            "users": int((np.diff(split.test.matrix.indptr) > 0).sum()),
            "metric": f"ndcg@{k}",
        },
        types,
    )


def _unseen_top_k(
    model: ItemModel, history: sp.csr_matrix, seen: sp.csr_matrix, k: int
) -> np.ndarray:
    """Top ``k`` item ints per row scored from ``history``, never an item of ``seen`` (the
    training part: items an event-type weight of 0 dropped from the history stay seen, as
    serving excludes them)."""
    extra = int((np.diff(seen.indptr) - np.diff(history.indptr)).max(initial=0))
    ids, _ = model.recommend_batch(history, k + extra)
    if extra == 0:
        return ids
    keep = (ids >= 0) & ~hits_matrix(ids, seen)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(ids, order, axis=1)
    out[~np.take_along_axis(keep, order, axis=1)] = -1
    return out


def _search_types(
    configured: Mapping[str, float],
    score: Callable[[Mapping[str, float]], float | None],
    first: float,
) -> tuple[dict[str, float] | None, float]:
    """Coordinate search of the event-type weights from the configured ones (see the module
    docstring); the chosen weights, or None when none beat the configured ones."""
    current, best = dict(configured), first
    for etype in configured:
        for direction in (-1, 1):
            improved = False
            for factor in _TYPE_FACTORS[direction]:
                candidate = {**current, etype: round(configured[etype] * factor, 6)}
                if not any(w > 0 for w in candidate.values()):
                    break
                got = score(candidate)
                if got is None:
                    return (current if current != configured else None), best
                if got <= best:
                    break
                current, best, improved = candidate, got, True
            if improved:
                break
    return (current if current != configured else None), best


def _step(config: CFConfig, name: str, direction: int, n_items: int) -> CFConfig | None:
    """The next setting of one parameter: lambda halves or doubles; the others move one rung
    along their ladder (None past its end; ALS factors stay under a quarter of the items)."""
    value = getattr(config, name)
    if name == "als_factors" and direction > 0 and value * 2 > max(n_items // 4, 16):
        return None
    if name == "ease_lambda":
        nxt: float = value * (2.0 if direction > 0 else 0.5)
        if not 1.0 <= nxt <= 1e5:
            return None
    else:
        ladder = _LADDERS[name]
        rungs = [v for v in ladder if (v > value if direction > 0 else v < value)]
        if not rungs:
            return None
        nxt = rungs[0] if direction > 0 else rungs[-1]
        if name not in ("als_regularization", "ease_session_s"):
            nxt = int(nxt)
    changes: dict[str, Any] = {name: nxt}
    return dataclasses.replace(config, **changes)


def _search(
    config: CFConfig,
    kind: str,
    score: Callable[[CFConfig], float | None],
    first: float,
    n_items: int,
    names: tuple[str, ...] | None = None,
) -> tuple[CFConfig, float]:
    """Coordinate search from ``config`` over ``names`` (default: all of ``kind``'s): per
    parameter, step down while it improves, else up while it improves. Stops when ``score``
    says the budget is spent (None)."""
    best_cfg, best = config, first
    for name in _SEARCHED.get(kind, ()) if names is None else names:
        for direction in (-1, 1):
            improved = False
            for candidate in _walk(best_cfg, name, direction, n_items):
                got = score(candidate)
                if got is None:
                    return best_cfg, best
                if got <= best:
                    break
                best_cfg, best, improved = candidate, got, True
            if improved:
                break
    return best_cfg, best


def _walk(config: CFConfig, name: str, direction: int, n_items: int) -> Iterator[CFConfig]:
    current: CFConfig | None = config
    while current is not None:
        current = _step(current, name, direction, n_items)
        if current is not None:
            yield current
