"""`TreeEnsemble`: fitted HistGradientBoosting trees as numpy arrays, exported and verified.

Serving does not call scikit-learn: its per-call overhead (input validation, thread pools) is
about half a millisecond for one row. The fitted trees are exported to padded numpy arrays
and walked level by level for all trees at once (`TreeEnsemble.raw`), which gives the same
probabilities (to float rounding) in tens of microseconds, and an artifact that loads without
pickle or scikit-learn (`TreeEnsemble.arrays` / `TreeEnsemble.from_arrays`).

scikit-learn has no public API that exposes HistGradientBoosting's trees, so the export
(`TreeEnsemble.from_estimator`, at training time only) reads its private attributes. That read
is fenced in three ways: it refuses scikit-learn versions outside `SKLEARN_VERIFIED` (the
range the layout was checked against; pyproject.toml pins the same range); a layout it cannot
read raises `TreeExportError` rather than guessing; and every export is checked against the
estimator's public ``decision_function`` on the training rows plus probe rows that sit on
every split threshold, just past it, and on NaN, so a change in the internals' meaning fails
training loudly instead of serving wrong probabilities. `from_arrays` checks shapes, dtypes
and indices, so a damaged or foreign artifact is a ValueError, never a wrong walk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from recommend.types import TreeExportError

if TYPE_CHECKING:  # scikit-learn is imported by the export only: serving never loads it
    from sklearn.ensemble import HistGradientBoostingClassifier

# scikit-learn versions [from, to) whose HistGradientBoosting internals (`_predictors` node
# records, `_baseline_prediction`) `TreeEnsemble.from_estimator` was checked against. Keep in
# step with the scikit-learn pin in pyproject.toml; to widen both, read the new version's
# PREDICTOR_RECORD_DTYPE and _predictor.pyx and run tests/profiles/test_conversion.py.
SKLEARN_VERIFIED = ((1, 4), (1, 10))
# Largest |log-odds| difference the export check accepts: the walk sums the same float64
# leaf values as scikit-learn, in another order.
_EXPORT_ATOL = 1e-9


def _sklearn_version() -> tuple[int, int]:
    import sklearn

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
        import sklearn

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
