"""Collaborative-filtering models: EASE, cosine item-kNN and ALS (via ``implicit``).

All three score from the user's *current* history row, so a new event changes the answer
without a retrain:

* EASE and item-kNN learn an item x item matrix ``B``; scores are ``history @ B``.
* ALS learns item factors ``Y``; the user's factors are solved from the history at query time
  (the same least-squares step ALS uses in training), then scores are ``x_u @ Y.T``.

Which to use: EASE is the most accurate on catalogs up to ~20k items but needs a dense
``n x n`` inverse (memory ``4 n^2`` bytes); item-kNN is cheap and sparse; ALS scales to large
catalogs. :func:`choose_cf_model` encodes that choice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel
from recommend.types import CFConfig, RecommendError

log = logging.getLogger(__name__)


class EASE(ItemModel):
    """Embarrassingly Shallow Autoencoder (Steck 2019): ``B = I - P / diag(P)``,
    ``P = (X^T X + lambda I)^-1``, zero diagonal.

    Only items with at least ``min_users`` interacting users enter the inverse; the others
    score 0 (and are still returned, last, when nothing better is eligible). The cost is cubic
    in that active catalog, so dropping single-user items (``min_users=2``) cuts the inverse
    several-fold on long-tailed data — on MovieLens 8.2k → 5.3k items, about 3.7x less work —
    while such items had almost no co-occurrence evidence to be recommended from anyway.

    ``session_s`` > 0 also learns from sessions: each user's interactions cut into windows of
    that many seconds (:func:`session_matrix`), whose co-occurrences are added to those within
    each user's whole history (``G = X^T X + S^T S``). Items used together in one sitting then
    weigh more than items the same user met years apart. Scoring is unchanged (from the user's
    history row); only the training data differs, and :func:`recommend.cf_tuning.tune_cf`
    keeps a window only when it scores better on validation.
    """

    kind = "ease"

    def __init__(self, lambda_: float = 300.0, min_users: int = 2, session_s: float = 0.0) -> None:
        super().__init__()
        if lambda_ <= 0:
            raise ValueError("EASE lambda must be > 0")
        if session_s < 0:
            raise ValueError("EASE session_s must be >= 0 (0: no sessions)")
        self.lambda_ = float(lambda_)
        self.min_users = max(int(min_users), 1)
        self.session_s = float(session_s)
        self._active = np.zeros(0, dtype=np.int64)
        self._b = np.zeros((0, 0), dtype=np.float32)
        self._sessions: sp.csr_matrix | None = None

    def fit(self, interactions: InteractionMatrix) -> EASE:
        if self.session_s > 0:
            self._sessions = session_matrix(interactions, self.session_s)
        try:
            return super().fit(interactions)
        finally:
            self._sessions = None

    def _fit(self, matrix: sp.csr_matrix) -> None:
        active = np.flatnonzero(matrix.getnnz(axis=0) >= self.min_users)
        x = matrix[:, active]
        co = x.T @ x
        if self._sessions is not None:
            s = self._sessions[:, active]
            co = co + s.T @ s
        # float32 throughout: G + lambda*I is well conditioned for lambda in the hundreds
        # (the float64 inverse differs by ~1e-6 relative on MovieLens) and it halves both
        # memory and time of the ~n^3 inverse.
        gram = co.toarray().astype(np.float32, copy=False)
        gram[np.diag_indices_from(gram)] += self.lambda_
        # G + lambda*I is symmetric positive definite: a Cholesky-based inverse costs half an
        # LU one, which matters at ~10k items on two cores.
        b = _spd_inverse(gram)
        b /= -np.diag(b).copy()
        b[np.diag_indices_from(b)] = 0.0
        self._active = active.astype(np.int64)
        # LAPACK hands back a Fortran-ordered array; scipy's sparse @ dense then copies all of
        # B on every call (~2 ms per request at 4k items), so store it C-ordered.
        self._b = np.ascontiguousarray(b)
        log.info(
            "EASE inverse over %d of %d items (lambda=%g)", active.size, x.shape[1], self.lambda_
        )

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        self._require_fitted()
        out = np.zeros((user_items.shape[0], self.n_items), dtype=np.float32)
        if self._active.size:
            out[:, self._active] = user_items[:, self._active] @ self._b
        return out

    def score_items(self, user_items: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        self._require_fitted()
        out = np.zeros((user_items.shape[0], len(cols)), dtype=np.float32)
        at = np.searchsorted(self._active, cols)
        found = (at < self._active.size) & (
            self._active[np.minimum(at, self._active.size - 1)] == cols
        )
        if found.any() and self._active.size:
            out[:, found] = user_items[:, self._active] @ self._b[:, at[found]]
        return out

    def _params(self) -> dict[str, Any]:
        return {
            "lambda_": self.lambda_,
            "min_users": self.min_users,
            "session_s": self.session_s,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"active": self._active, "b": self._b}

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._active = arrays["active"].astype(np.int64)
        self._b = np.ascontiguousarray(arrays["b"], dtype=np.float32)


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix via LAPACK ``potrf``/``potri``."""
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (a,))
    chol, info = potrf(a, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise RecommendError(f"Cholesky factorisation failed (info={info})")
    inv, info = potri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise RecommendError(f"SPD inverse failed (info={info})")
    # potri fills the upper triangle only; mirror it block by block, which avoids n x n
    # temporaries (the matrix itself is already ~100 MB at 5k items).
    n = inv.shape[0]
    for lo in range(0, n, 512):
        hi = min(lo + 512, n)
        block = inv[lo:hi, lo:hi]
        inv[lo:hi, lo:hi] = np.triu(block) + np.triu(block, 1).T
        inv[hi:, lo:hi] = inv[lo:hi, hi:].T
    return inv


class ItemKNN(ItemModel):
    """Cosine item-kNN: ``B[i, j]`` = cosine(i, j) over user columns, keeping each item's
    ``neighbours`` most similar items (rows of ``B`` stay sparse); scores = ``history @ B``.

    The similarity is computed in item blocks so memory stays at ``block x n_items`` floats.
    """

    kind = "knn"

    def __init__(self, neighbours: int = 100, block_size: int = 1024) -> None:
        super().__init__()
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self.neighbours = int(neighbours)
        self.block_size = int(block_size)
        self._b = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from sklearn.preprocessing import normalize  # training only: serving skips sklearn

        n_items = matrix.shape[1]
        # Columns scaled to unit L2 norm → X^T X is the cosine similarity.
        xn = normalize(matrix.tocsc().astype(np.float32), norm="l2", axis=0)
        xt = xn.T.tocsr()
        k = min(self.neighbours, max(n_items - 1, 0))
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for lo in range(0, n_items, self.block_size):
            hi = min(lo + self.block_size, n_items)
            sim = (xt[lo:hi] @ xn).toarray()
            sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
            if k == 0:
                continue
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            part_vals = np.take_along_axis(sim, part, axis=1)
            keep = part_vals > 0
            rows.append(np.repeat(np.arange(lo, hi), k)[keep.ravel()])
            cols.append(part[keep])
            vals.append(part_vals[keep])
        if rows:
            self._b = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n_items, n_items),
                dtype=np.float32,
            )
        else:
            self._b = sp.csr_matrix((n_items, n_items), dtype=np.float32)

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        self._require_fitted()
        return np.asarray((user_items @ self._b).toarray(), dtype=np.float32)

    def _params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "block_size": self.block_size}

    def _arrays(self) -> dict[str, np.ndarray]:
        b = self._b
        return {
            "data": b.data,
            "indices": b.indices,
            "indptr": b.indptr,
            "shape": np.asarray(b.shape, dtype=np.int64),
        }

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        shape = tuple(int(s) for s in arrays["shape"])
        self._b = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape, dtype=np.float32
        )


class ALS(ItemModel):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) trained with ``implicit`` on the CPU.

    Confidence is ``alpha * weight`` for observed pairs (``implicit``'s convention). The
    default ``threads=1`` and fixed ``seed`` make training reproducible. At query time the
    user's factors are solved exactly from the history row (see :meth:`user_factors`), which
    needs only the item factors — so a loaded model works without ``implicit``'s user state.
    """

    kind = "als"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 1.0,
        alpha: float = 2.0,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self.factors = int(factors)
        self.iterations = int(iterations)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.threads = int(threads)
        self._y = np.zeros((0, self.factors), dtype=np.float32)
        # Y (float64) and Y^T Y + reg I, derived from the item factors once: recomputing them
        # per request costs O(n_items * factors^2), several ms at 20k items.
        self._solve_cache: tuple[np.ndarray, np.ndarray] | None = None

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares  # heavy import, only when training
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself; a BLAS thread pool on top only oversubscribes the cores
        # (implicit warns about it) and makes results depend on the thread count.
        with threadpool_limits(1, "blas"):
            self._y = self._train(AlternatingLeastSquares, matrix)
        self._solve_cache = None

    def _train(self, als_cls: Any, matrix: sp.csr_matrix) -> np.ndarray:
        model = als_cls(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=self.threads,
            random_state=self.seed,
            # The exact solver: conjugate-gradient steps are faster but give less stable
            # factors with few iterations.
            use_cg=False,
        )
        model.fit(matrix, show_progress=False)
        return np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def user_factors(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Least-squares user factors for each history row: ``(n_rows, factors)``.

        Solves ``(Y^T Y + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u`` with
        ``C_u = alpha * weight`` on the user's items — ALS's own user step.
        """
        self._require_fitted()
        if self._solve_cache is None:
            y64 = self._y.astype(np.float64)
            self._solve_cache = (y64, y64.T @ y64 + self.regularization * np.eye(self.factors))
        y, base = self._solve_cache
        out = np.zeros((user_items.shape[0], self.factors), dtype=np.float32)
        for row in range(user_items.shape[0]):
            lo, hi = user_items.indptr[row], user_items.indptr[row + 1]
            if lo == hi:
                continue
            items = user_items.indices[lo:hi]
            conf = self.alpha * user_items.data[lo:hi].astype(np.float64)
            yi = y[items]
            a = base + (yi.T * (conf - 1.0)) @ yi
            b = yi.T @ conf
            out[row] = np.linalg.solve(a, b)
        return out

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self.user_factors(user_items) @ self._y.T, dtype=np.float32)

    def score_items(self, user_items: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors(user_items) @ self._y[cols].T, dtype=np.float32)

    def _params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "iterations": self.iterations,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "seed": self.seed,
            "threads": self.threads,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self._y}

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._y = arrays["item_factors"].astype(np.float32)
        self._solve_cache = None


def session_matrix(interactions: InteractionMatrix, window_s: float) -> sp.csr_matrix:
    """One row per session (sessions x items, float32, the interactions' weights): a user's
    interactions within one window of ``window_s`` seconds (windows aligned on the epoch, so a
    long sitting is cut into several sessions of at most that length)."""
    if window_s <= 0:
        raise ValueError("the session window must be > 0 seconds")
    window = np.floor(interactions.timestamps / window_s).astype(np.int64)
    pairs = np.stack([interactions.entry_users().astype(np.int64), window], axis=1)
    _, rows = np.unique(pairs, axis=0, return_inverse=True)
    rows = rows.ravel()
    n_rows = int(rows.max()) + 1 if rows.size else 0
    return sp.csr_matrix(
        (interactions.matrix.data.astype(np.float32), (rows, interactions.matrix.indices)),
        shape=(n_rows, interactions.n_items),
    )


def choose_cf_model(n_items: int, config: CFConfig | None = None) -> ItemModel:
    """An unfitted CF model for a catalog of ``n_items``, following ``config.kind``.

    ``auto`` picks EASE up to ``config.ease_max_items`` items (best accuracy; dense inverse)
    and ALS above that (memory linear in the catalog).
    """
    config = config or CFConfig()
    kind = config.kind
    if kind == "auto":
        kind = "ease" if n_items <= config.ease_max_items else "als"
    if kind == "ease":
        return EASE(
            lambda_=config.ease_lambda,
            min_users=config.ease_min_users,
            session_s=config.ease_session_s,
        )
    if kind == "knn":
        return ItemKNN(neighbours=config.knn_neighbours)
    if kind == "als":
        return ALS(
            factors=config.als_factors,
            iterations=config.als_iterations,
            regularization=config.als_regularization,
            alpha=config.als_alpha,
            seed=config.seed,
            threads=config.threads,
        )
    raise RecommendError(f"unknown CF model kind {config.kind!r}")
