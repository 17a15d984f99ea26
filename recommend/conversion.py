"""Conversion propensity: will this profile purchase within the next ``horizon`` days?

Training replays the event log once with `ProfileState` and snapshots every known profile at
a series of cutoffs ``T``; a snapshot's features see only events with ``ts < T`` and its label
is "a purchase in ``[T, T + horizon)``". The cutoffs are one horizon apart and end one horizon
before ``now``::

    T_0 = now - n*h   ...   T_(n-2) = now - 2h   T_(n-1) = now - h        now
    |--- train rows: labels in [T_k, T_k + h) ---|-- holdout labels --|
                                                 [T_(n-1), now)

so every training label window closes at or before the holdout cutoff: the holdout's labels
(and its features' newest events) come after every training label, nothing about the holdout
period leaks into training. The model is a scikit-learn `HistGradientBoostingClassifier`.

Serving does not call scikit-learn: its per-call overhead (input validation, thread pools) is
about half a millisecond for one row. The fitted trees are exported to padded numpy arrays
and walked level by level for all trees at once, which gives the same probabilities (to float
rounding) in tens of microseconds, and an artifact that loads without pickle or scikit-learn.

scikit-learn has no public API that exposes HistGradientBoosting's trees, so the export
(`TreeEnsemble.from_estimator`, at training time only) reads its private attributes. That read
is fenced in three ways: it refuses scikit-learn versions outside `SKLEARN_VERIFIED` (the
range the layout was checked against; pyproject.toml pins the same range); a layout it cannot
read raises `TreeExportError` rather than guessing; and every export is checked against the
estimator's public ``decision_function`` on the training rows plus probe rows that sit on
every split threshold, just past it, and on NaN, so a change in the internals' meaning fails
training loudly instead of serving wrong probabilities. Serving and loading never touch
scikit-learn: the artifact is this module's own array format (`FORMAT`).

Artifacts: ``save(dir)`` writes ``trees.npz`` and then ``manifest.json`` (version, horizon,
metrics, feature names, trained_at UTC, and under ``"trees"`` the scikit-learn version the
trees were exported from and the export check's result), each through a temp file and an
atomic rename, the manifest last, so a directory with a manifest is complete. `load` checks
the arrays' shapes and indices, so a damaged or foreign artifact is `ConversionModelNotFound`
rather than an IndexError mid-request. `ConversionModelStore` keeps numbered versions
(``v000001``...) under one root, each written into a temp directory and renamed into place.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from profiles.state import DAY, CategoryLookup, ProfileState

# The errors live in profiles/types.py with the package's others; re-exported from here.
from profiles.types import ConversionModelNotFound as ConversionModelNotFound
from profiles.types import InsufficientTrainingData as InsufficientTrainingData
from profiles.types import ProfileConfig
from storage.types import EventRecord

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST_FILE = "manifest.json"
TREES_FILE = "trees.npz"
_NEVER_DAYS = 365.0  # the same "never happened" stand-in ProfileState.features uses
_VERSION = re.compile(r"v\d{6,}")
# scikit-learn versions [from, to) whose HistGradientBoosting internals (`_predictors` node
# records, `_baseline_prediction`) `TreeEnsemble.from_estimator` was checked against. Keep in
# step with the scikit-learn pin in pyproject.toml; to widen both, read the new version's
# PREDICTOR_RECORD_DTYPE and _predictor.pyx and run tests/profiles/test_conversion.py.
SKLEARN_VERIFIED = ((1, 4), (1, 10))
# Largest |log-odds| difference the export check accepts: the walk sums the same float64
# leaf values as scikit-learn, in another order.
_EXPORT_ATOL = 1e-9

SESSION_FEATURES = (
    "last_session_events",
    "last_session_views",
    "last_session_add_to_cart",
    "last_session_purchased",
    "last_session_duration_s",
    "sessions_7d",
    "days_since_last_cart",
    "open_cart",
)


# ---------------------------------------------------------------------------------- features
def feature_names() -> tuple[str, ...]:
    """Column order of the model's input: every `ProfileState.features` key, then sessions."""
    return (*ProfileState().features(0.0, ProfileConfig()).keys(), *SESSION_FEATURES)


def session_features(state: ProfileState, now: float) -> dict[str, float]:
    """Features of the newest session and of the cart, at ``now`` (UTC epoch seconds).

    ``ProfileState`` keeps per-session [first ts, last ts, views, purchased] and the newest
    weighted item interactions (``history``, which includes add_to_cart); a session's events
    and carts are the history entries inside its time span.
    """
    out = dict.fromkeys(SESSION_FEATURES, 0.0)
    out["days_since_last_cart"] = _NEVER_DAYS
    if state.sessions:
        # max by (last ts, id): a deterministic choice between sessions ending together.
        sid = max(state.sessions, key=lambda k: (state.sessions[k][1], k))
        first, last, views, purchased = state.sessions[sid][:4]
        in_span = [h for h in state.history if first <= h[0] <= last]
        out["last_session_events"] = float(len(in_span))
        out["last_session_views"] = views
        out["last_session_add_to_cart"] = float(sum(1 for h in in_span if h[3] == "add_to_cart"))
        out["last_session_purchased"] = purchased
        out["last_session_duration_s"] = last - first
        out["sessions_7d"] = float(sum(1 for s in state.sessions.values() if now - s[1] < 7 * DAY))
    last_cart = max((h[0] for h in state.history if h[3] == "add_to_cart"), default=None)
    if last_cart is not None:
        out["days_since_last_cart"] = max(0.0, (now - last_cart) / DAY)
        bought_after = state.last_purchase_ts is not None and state.last_purchase_ts >= last_cart
        out["open_cart"] = 0.0 if bought_after else 1.0
    return out


def conversion_features(state: ProfileState, now: float, config: ProfileConfig) -> dict[str, float]:
    """All model inputs for ``state`` at ``now``: profile features plus session features."""
    return {**state.features(now, config), **session_features(state, now)}


def _vector(feats: Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    # A feature the model knows but the state no longer gives is NaN: the trees route missing
    # values the way they learned to, instead of reading a misleading zero.
    return np.fromiter((feats.get(n, math.nan) for n in names), dtype=np.float64, count=len(names))


# ---------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class ConversionDataset:
    """Snapshots of profiles at cutoffs: ``X`` [rows, features] float64, ``y`` [rows] 0/1.

    ``cutoff_index`` [rows] says which of ``cutoffs`` (UTC epoch seconds, ascending) a row was
    taken at; ``profile_keys`` names the row's profile.
    """

    X: np.ndarray
    y: np.ndarray
    cutoff_index: np.ndarray
    profile_keys: list[str]
    cutoffs: tuple[float, ...]
    feature_names: tuple[str, ...]


def conversion_cutoffs(now: float, horizon_days: float, n_cutoffs: int) -> list[float]:
    """``n_cutoffs`` cutoffs one horizon apart, ascending, the last one ``now - horizon``."""
    if n_cutoffs < 2:
        raise ValueError("n_cutoffs must be >= 2 (at least one training and one holdout cutoff)")
    if horizon_days <= 0:
        raise ValueError("horizon_days must be > 0")
    h = horizon_days * DAY
    return [now - k * h for k in range(n_cutoffs, 0, -1)]


def build_dataset(
    events: Iterable[EventRecord],
    *,
    cutoffs: Sequence[float],
    horizon_days: float,
    config: ProfileConfig,
    categories: CategoryLookup,
) -> ConversionDataset:
    """Replay ``events`` (timestamp order, as `EventStore.iter_events` gives them) once.

    At each cutoff ``T`` every profile with an event before ``T`` is snapshotted *before* any
    event with ``ts >= T`` is applied; its label is a purchase in ``[T, T + horizon)``.
    """
    cuts = sorted(float(c) for c in cutoffs)
    names = feature_names()
    horizon = horizon_days * DAY
    end = cuts[-1] + horizon if cuts else -math.inf
    states: dict[str, ProfileState] = {}
    purchases: dict[str, list[float]] = {}
    rows: list[np.ndarray] = []
    keys: list[str] = []
    at: list[int] = []

    def snapshot(ci: int) -> None:
        t = cuts[ci]
        for key in sorted(states):
            rows.append(_vector(conversion_features(states[key], t, config), names))
            keys.append(key)
            at.append(ci)

    ci, prev = 0, -math.inf
    for ev in events:
        if ev.ts < prev:
            raise ValueError("events must come in timestamp order (EventStore.iter_events)")
        prev = ev.ts
        if ev.ts >= end:
            break
        while ci < len(cuts) and ev.ts >= cuts[ci]:
            snapshot(ci)
            ci += 1
        if ev.type == "purchase":
            purchases.setdefault(ev.profile_key, []).append(ev.ts)
        if ci < len(cuts):  # states are only read at cutoffs: after the last one, labels only
            states.setdefault(ev.profile_key, ProfileState()).apply(ev, config, categories)
    while ci < len(cuts):
        snapshot(ci)
        ci += 1

    y = np.zeros(len(keys), dtype=np.int8)
    for r, (key, ci) in enumerate(zip(keys, at, strict=True)):
        times = purchases.get(key)
        if times:
            j = bisect.bisect_left(times, cuts[ci])
            y[r] = j < len(times) and times[j] < cuts[ci] + horizon
    X = np.vstack(rows) if rows else np.empty((0, len(names)), dtype=np.float64)
    return ConversionDataset(X, y, np.asarray(at, dtype=np.int32), keys, tuple(cuts), names)


# ---------------------------------------------------------------------------------- trees
class TreeExportError(RuntimeError):
    """The fitted estimator cannot be exported faithfully with this scikit-learn version."""


def _sklearn_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    if m is None:
        raise TreeExportError(f"unrecognised scikit-learn version {sklearn.__version__!r}")
    return int(m[1]), int(m[2])


def _verified_range() -> str:
    (a, b), (c, d) = SKLEARN_VERIFIED
    return f">={a}.{b},<{c}.{d}"


@dataclass(frozen=True, eq=False)  # arrays: compare with np.array_equal, not ==
class TreeEnsemble:
    """Fitted boosting trees as padded arrays, each [n_trees, max_nodes].

    A leaf's ``left`` and ``right`` point at itself, so walking ``depth`` levels from the
    roots lands every row on a leaf whatever its depth. ``raw = baseline + sum(value[leaf])``
    (log-odds); probability = sigmoid(raw). Split rule as in scikit-learn: NaN goes where
    ``missing_left`` says, otherwise ``x <= threshold`` goes left. ``provenance`` says what
    the arrays were exported from and how the export was checked (it goes in the manifest).
    """

    feature: np.ndarray  # int32
    threshold: np.ndarray  # float64
    missing_left: np.ndarray  # bool
    left: np.ndarray  # int32
    right: np.ndarray  # int32
    value: np.ndarray  # float64
    baseline: float
    depth: int
    provenance: Mapping[str, Any] = field(default_factory=dict)
    # Derived in __post_init__ (see there), not stored.
    _roots: np.ndarray = field(init=False, repr=False)
    _feature: np.ndarray = field(init=False, repr=False)
    _threshold: np.ndarray = field(init=False, repr=False)
    _missing_left: np.ndarray = field(init=False, repr=False)
    _child: np.ndarray = field(init=False, repr=False)
    _value: np.ndarray = field(init=False, repr=False)

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "feature",
        "threshold",
        "missing_left",
        "left",
        "right",
        "value",
    )

    @classmethod
    def from_estimator(
        cls, clf: HistGradientBoostingClassifier, X: np.ndarray | None = None
    ) -> TreeEnsemble:
        """Export a fitted binary ``clf``; checked against its ``decision_function``.

        The check runs on probe rows built from the trees' own thresholds and, when given, on
        ``X`` (e.g. the training rows). `TreeExportError` when scikit-learn is outside
        `SKLEARN_VERIFIED`, its internals cannot be read, or the check disagrees.
        """
        version = _sklearn_version()
        lo, hi = SKLEARN_VERIFIED
        if not lo <= version < hi:
            raise TreeExportError(
                f"scikit-learn {sklearn.__version__} is outside {_verified_range()}, the range "
                "whose HistGradientBoosting internals the conversion tree export was checked "
                "against (pyproject.toml pins it); install a version in range, or check the "
                "new layout and widen SKLEARN_VERIFIED and the pin together"
            )
        if len(clf.classes_) != 2 or clf.n_trees_per_iteration_ != 1:
            raise ValueError("a binary classifier is required")
        if clf.is_categorical_ is not None and bool(np.any(clf.is_categorical_)):
            raise ValueError("categorical splits are not supported")
        try:
            trees = cls._read_private(clf)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise TreeExportError(
                f"cannot read HistGradientBoosting trees from scikit-learn "
                f"{sklearn.__version__}: {type(exc).__name__}: {exc}"
            ) from exc
        probe = trees._probe_rows(int(clf.n_features_in_))
        check = probe if X is None else np.vstack([np.asarray(X, dtype=np.float64), probe])
        with threadpool_limits(limits=1, user_api="openmp"):  # one thread: see train_conversion
            expected = np.asarray(clf.decision_function(check), dtype=np.float64).ravel()
        diff = float(np.max(np.abs(trees.raw(check) - expected), initial=0.0))
        if not diff <= _EXPORT_ATOL:  # also catches NaN
            raise TreeExportError(
                f"exported trees disagree with scikit-learn {sklearn.__version__}'s "
                f"decision_function by up to {diff:.3g} log-odds on {len(check)} rows: its "
                "HistGradientBoosting internals changed meaning"
            )
        provenance = {
            "exported_from": f"sklearn.ensemble.{type(clf).__name__}",
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "checked_rows": len(check),
            "checked_max_abs_log_odds_diff": diff,
        }
        return replace(trees, provenance=provenance)

    @classmethod
    def _read_private(cls, clf: HistGradientBoostingClassifier) -> TreeEnsemble:
        # The only place that reads scikit-learn's private attributes (see the module doc):
        # `_predictors[iteration][0].nodes` is a structured array of PREDICTOR_RECORD_DTYPE
        # records, `_baseline_prediction` the initial log-odds.
        trees = [it[0].nodes for it in clf._predictors]
        if any(bool(n["is_categorical"].any()) for n in trees):
            raise ValueError("categorical splits are not supported")
        n_nodes = max((len(n) for n in trees), default=1)
        shape = (max(len(trees), 1), n_nodes)
        feature = np.zeros(shape, np.int32)
        threshold = np.zeros(shape, np.float64)
        missing_left = np.zeros(shape, bool)
        ids = np.broadcast_to(np.arange(n_nodes, dtype=np.int32), shape)
        left, right = ids.copy(), ids.copy()
        value = np.zeros(shape, np.float64)
        depth = 0
        for t, nodes in enumerate(trees):
            k = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            feature[t, :k] = nodes["feature_idx"]
            threshold[t, :k] = nodes["num_threshold"]
            missing_left[t, :k] = nodes["missing_go_to_left"].astype(bool)
            left[t, :k] = np.where(leaf, np.arange(k), nodes["left"])
            right[t, :k] = np.where(leaf, np.arange(k), nodes["right"])
            value[t, :k] = np.where(leaf, nodes["value"], 0.0)
            depth = max(depth, int(nodes["depth"].max()))
        baseline = np.asarray(clf._baseline_prediction, dtype=np.float64)
        if baseline.size != 1:
            raise ValueError(f"_baseline_prediction has shape {baseline.shape}, expected one value")
        return cls(feature, threshold, missing_left, left, right, value, baseline.item(), depth)

    def _probe_rows(self, n_features: int, n_rows: int = 512) -> np.ndarray:
        """Deterministic rows that exercise the split rule: each value is a split threshold of
        its feature (goes left), the next float above one (goes right), or NaN."""
        rng = np.random.default_rng(0)
        split = self.left != np.arange(self.left.shape[1])  # leaves and padding point at self
        X = rng.normal(size=(n_rows, n_features))
        for f in range(n_features):
            th = self.threshold[split & (self.feature == f)]
            if th.size:
                pick = rng.choice(th, size=n_rows)
                X[:, f] = np.where(rng.random(n_rows) < 0.5, pick, np.nextafter(pick, np.inf))
        X[rng.random(X.shape) < 0.15] = np.nan
        return X

    def __post_init__(self) -> None:
        # Flat views for the walk: node ids are global (tree * max_nodes + local), and both
        # children of node g sit at child[2g] (left) and child[2g + 1] (right), so one level
        # is a handful of 1-D takes whatever the number of trees.
        n_trees, n_nodes = self.feature.shape
        roots = np.arange(n_trees, dtype=np.intp) * n_nodes
        child = np.stack([self.left + roots[:, None], self.right + roots[:, None]], axis=-1)
        object.__setattr__(self, "_roots", roots)
        object.__setattr__(self, "_feature", self.feature.ravel().astype(np.intp))
        object.__setattr__(self, "_threshold", self.threshold.ravel())
        object.__setattr__(self, "_missing_left", self.missing_left.ravel())
        object.__setattr__(self, "_child", child.ravel().astype(np.intp))
        object.__setattr__(self, "_value", self.value.ravel())

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Log-odds for ``X`` [rows, features] -> [rows]."""
        n_rows, n_cols = X.shape
        flat = np.ascontiguousarray(X).ravel()
        node = np.tile(self._roots, (n_rows, 1))
        row_start = (np.arange(n_rows, dtype=np.intp) * n_cols)[:, None]
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat[row_start + self._feature[node]]
            # NaN compares False, i.e. goes right, unless the split sends missing values left.
            go_right = ~(x <= self._threshold[node])
            if has_nan:
                go_right &= ~(np.isnan(x) & self._missing_left[node])
            node = self._child[2 * node + go_right]
        return self.baseline + self._value[node].sum(axis=1)

    def arrays(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.ARRAYS}
        out["baseline_depth"] = np.asarray([self.baseline, float(self.depth)])
        return out

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        *,
        n_features: int | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> TreeEnsemble:
        """The inverse of `arrays`; ValueError (or KeyError) when they are not a valid
        ensemble, e.g. mismatched shapes, a child or (with ``n_features``) a feature out of
        range."""
        got = {name: np.asarray(arrays[name]) for name in cls.ARRAYS}
        shape = got["feature"].shape
        if len(shape) != 2 or 0 in shape or any(a.shape != shape for a in got.values()):
            raise ValueError(
                f"tree arrays must share one 2-D shape: { {k: a.shape for k, a in got.items()} }"
            )
        kinds = {
            "feature": "iu",
            "left": "iu",
            "right": "iu",
            "threshold": "f",
            "value": "f",
            "missing_left": "b",
        }
        for name, kind in kinds.items():
            if got[name].dtype.kind not in kind:
                raise ValueError(f"tree array {name!r} has dtype {got[name].dtype}")
        for name in ("left", "right"):
            if got[name].min() < 0 or got[name].max() >= shape[1]:
                raise ValueError(f"tree array {name!r} points outside its tree")
        if got["feature"].min() < 0 or (
            n_features is not None and got["feature"].max() >= n_features
        ):
            raise ValueError(f"tree array 'feature' is outside the model's {n_features} features")
        bd = np.asarray(arrays["baseline_depth"], dtype=np.float64)
        if bd.shape != (2,) or not np.isfinite(bd).all() or bd[1] < 0 or bd[1] != int(bd[1]):
            raise ValueError(f"bad baseline_depth {bd.tolist()}")
        if bd[1] > shape[1]:
            raise ValueError(f"depth {bd[1]:g} exceeds the {shape[1]} nodes of a tree")
        baseline, depth = bd
        trees = cls(
            feature=got["feature"],
            threshold=got["threshold"],
            missing_left=got["missing_left"],
            left=got["left"],
            right=got["right"],
            value=got["value"],
            baseline=float(baseline),
            depth=int(depth),
            provenance=dict(provenance or {}),
        )
        # Every path must end on a leaf (a self-loop) within ``depth`` levels, or the walk
        # would stop on an inner node and silently drop the rest of that tree.
        reach = np.zeros(trees._child.size // 2, dtype=bool)
        reach[trees._roots] = True
        for _ in range(trees.depth):
            at = np.flatnonzero(reach)
            reach[:] = False
            reach[trees._child[2 * at]] = True
            reach[trees._child[2 * at + 1]] = True
        at = np.flatnonzero(reach)
        if (trees._child[2 * at] != at).any() or (trees._child[2 * at + 1] != at).any():
            raise ValueError(f"some tree is deeper than its recorded depth {trees.depth}")
        return trees


# ---------------------------------------------------------------------------------- model
@dataclass
class ConversionModel:
    """Probability that a profile purchases within ``horizon_days`` of a reference time."""

    trees: TreeEnsemble
    feature_names: tuple[str, ...]
    horizon_days: float
    config: ProfileConfig
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: str | None = None

    def predict(self, state: ProfileState, now: float) -> float:
        """P(purchase in ``[now, now + horizon)``) for ``state`` at ``now`` (UTC epoch s)."""
        x = _vector(conversion_features(state, now, self.config), self.feature_names)
        return float(self.predict_proba(x[None, :])[0])

    def predict_many(self, states: Sequence[ProfileState], now: float) -> np.ndarray:
        """Probabilities [len(states)] for many profiles at one ``now``."""
        if not states:
            return np.empty(0, dtype=np.float64)
        X = np.vstack(
            [_vector(conversion_features(s, now, self.config), self.feature_names) for s in states]
        )
        return self.predict_proba(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [rows] for a feature matrix [rows, len(feature_names)]."""
        raw = self.trees.raw(np.asarray(X, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-raw))

    # ------------------------------------------------------------------ persistence
    def manifest(self, version: str | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": version if version is not None else self.version,
            "horizon_days": self.horizon_days,
            "metrics": self.metrics,
            "feature_names": list(self.feature_names),
            "trained_at": self.trained_at.astimezone(UTC).isoformat(),
            "n_trees": int(self.trees.feature.shape[0]),
            # What the trees were exported from and how the export was checked; loading needs
            # only numpy (npz without pickle) and this module's FORMAT.
            "trees": dict(self.trees.provenance),
            "config": {
                "weights": dict(self.config.weights),
                "affinity_half_life_days": self.config.affinity_half_life_days,
                "history_size": self.config.history_size,
            },
        }

    def save(self, path: str | Path, *, version: str | None = None) -> None:
        """Write the model into directory ``path`` (created if missing); manifest last."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".tmp-", delete=False) as fh:
            np.savez(fh, **self.trees.arrays())
        os.replace(fh.name, path / TREES_FILE)
        _write_json_atomic(path / MANIFEST_FILE, self.manifest(version))

    @classmethod
    def load(cls, path: str | Path) -> ConversionModel:
        """Load a model saved by `save`; `ConversionModelNotFound` if there is none."""
        path = Path(path)
        try:
            doc = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
            with np.load(path / TREES_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise ConversionModelNotFound(f"no conversion model in {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise ConversionModelNotFound(f"unsupported model format {found!r} in {path}")
        try:
            names = tuple(str(n) for n in doc["feature_names"])
            cfg = doc["config"]
            model = cls(
                trees=TreeEnsemble.from_arrays(
                    arrays, n_features=len(names), provenance=doc.get("trees") or {}
                ),
                feature_names=names,
                horizon_days=float(doc["horizon_days"]),
                config=ProfileConfig(
                    weights=dict(cfg["weights"]),
                    affinity_half_life_days=float(cfg["affinity_half_life_days"]),
                    history_size=int(cfg["history_size"]),
                ),
                metrics={k: float(v) for k, v in doc["metrics"].items()},
                trained_at=datetime.fromisoformat(doc["trained_at"]),
                version=doc.get("version"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConversionModelNotFound(f"invalid conversion model in {path}: {exc!r}") from exc
        if not model.trees.provenance:
            # Saved before exports were checked against scikit-learn; the arrays are valid, but
            # nothing records what produced them.
            log.warning("conversion model in %s does not record its export; retrain it", path)
        return model


def _write_json_atomic(target: Path, doc: Mapping[str, Any]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=target.parent, prefix=".tmp-", suffix=".json", delete=False, encoding="utf-8"
    ) as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
    os.replace(fh.name, target)


class ConversionModelStore:
    """Versioned `ConversionModel`s under ``root``: ``root/v000001/{manifest.json, trees.npz}``.

    A version is written into a temp directory and renamed into place; renaming onto an
    existing version fails, which is the lock between concurrent writers (the loser takes
    the next number).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _VERSION.fullmatch(p.name) and (p / MANIFEST_FILE).is_file()
        )

    def write(self, model: ConversionModel) -> str:
        """Persist ``model`` as a new version; returns the version (also set on ``model``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            while True:
                taken = [int(v[1:]) for v in self.versions()]
                version = f"v{(max(taken) if taken else 0) + 1:06d}"
                model.save(tmp, version=version)
                try:
                    os.rename(tmp, self.root / version)
                except OSError:
                    if not (self.root / version).exists():
                        raise
                    continue
                model.version = version
                return version
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self, version: str) -> ConversionModel:
        """One version; `ConversionModelNotFound` if it does not exist."""
        if not _VERSION.fullmatch(version):
            raise ConversionModelNotFound(f"not a model version: {version!r}")
        return ConversionModel.load(self.root / version)

    def latest(self) -> ConversionModel:
        """The newest version; `ConversionModelNotFound` if the store is empty."""
        versions = self.versions()
        if not versions:
            raise ConversionModelNotFound(f"no conversion model in {self.root}")
        return self.load(versions[-1])


# ---------------------------------------------------------------------------------- training
def _classifier(seed: int) -> HistGradientBoostingClassifier:
    # Shallow trees and a slow learning rate: the data are thousands of rows, not millions,
    # and the probabilities are served as scores, so calibration matters more than the
    # last bit of ranking. Early stopping uses a seeded random validation split.
    return HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        max_depth=6,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        categorical_features=None,
        random_state=seed,
    )


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Holdout metrics: ROC-AUC, PR-AUC (average precision), Brier, and the base-rate Brier."""
    base = float(np.mean(y))
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "brier_base_rate": base * (1.0 - base),  # the best constant predictor's Brier
        "base_rate": base,
    }


def train_conversion(
    events: Iterable[EventRecord],
    *,
    horizon_days: float = 7.0,
    config: ProfileConfig,
    categories: CategoryLookup,
    now: float,
    n_cutoffs: int = 6,
    seed: int = 0,
) -> tuple[ConversionModel, dict[str, float]]:
    """Train on the earlier cutoffs, score the latest one; deterministic for a ``seed``.

    ``events`` in timestamp order; ``now`` (UTC epoch s) is the end of the usable log: the
    holdout cutoff is ``now - horizon`` so its label window is complete. Raises
    `InsufficientTrainingData` when the train or holdout rows lack one of the classes, and
    `TreeExportError` when the installed scikit-learn's trees cannot be exported faithfully.
    """
    began = time.perf_counter()
    cutoffs = conversion_cutoffs(now, horizon_days, n_cutoffs)
    data = build_dataset(
        events, cutoffs=cutoffs, horizon_days=horizon_days, config=config, categories=categories
    )
    holdout = data.cutoff_index == len(cutoffs) - 1
    X_tr, y_tr, X_ho, y_ho = data.X[~holdout], data.y[~holdout], data.X[holdout], data.y[holdout]
    for name, y in (("training", y_tr), ("holdout", y_ho)):
        if len(np.unique(y)) < 2:
            raise InsufficientTrainingData(
                f"{name} rows need converters and non-converters: {len(y)} rows, "
                f"{int(y.sum())} positive (log too short for {n_cutoffs} cutoffs "
                f"of {horizon_days} days?)"
            )
    # One OpenMP thread: on a few thousand rows the parallel histogram build loses to its own
    # synchronisation, badly so on a busy shared machine (measured 13 s vs 1 s under load).
    with threadpool_limits(limits=1, user_api="openmp"):
        clf = _classifier(seed).fit(X_tr, y_tr)
    model = ConversionModel(
        # Checked against clf.decision_function on every row the model has seen.
        trees=TreeEnsemble.from_estimator(clf, np.vstack([X_tr, X_ho])),
        feature_names=data.feature_names,
        horizon_days=float(horizon_days),
        config=config,
    )
    metrics = evaluate(y_ho, model.predict_proba(X_ho))
    metrics.update(
        n_train=float(len(y_tr)),
        n_holdout=float(len(y_ho)),
        train_base_rate=float(y_tr.mean()),
        n_trees=float(clf.n_iter_),
        holdout_cutoff=cutoffs[-1],
    )
    model.metrics = metrics
    log.info(
        "conversion model: %d train / %d holdout rows, %d trees, ROC-AUC %.3f, PR-AUC %.3f, "
        "Brier %.4f (base rate %.3f -> %.4f) in %.1fs",
        len(y_tr),
        len(y_ho),
        clf.n_iter_,
        metrics["roc_auc"],
        metrics["pr_auc"],
        metrics["brier"],
        metrics["base_rate"],
        metrics["brier_base_rate"],
        time.perf_counter() - began,
    )
    return model, metrics
