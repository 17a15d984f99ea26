"""`FaissIndex`: the production `VectorIndex`, exact below a size threshold and HNSW above it.

Layout. Item ids (strings) map to int64 *labels* handed out monotonically; FAISS stores
``IndexIDMap2(IndexFlatIP)`` ("exact") or, for "hnsw", an inner-product HNSW graph:
``IndexIDMap2(IndexRefineFlat(IndexHNSWSQ 8-bit))`` by default (``hnsw_storage="sq8"``: the
graph walks 8-bit codes, a quarter of the memory per distance, and the ``refine_factor`` x k
best hits are re-ranked exactly against the float vectors that ``IndexRefineFlat`` keeps, so
scores, ``vector()``, exact scans and rebuilds all use the exact floats), or
``IndexIDMap2(IndexHNSWFlat)`` (``hnsw_storage="flat"``; an index saved before the option
existed loads as such). The 8-bit codes' per-dimension ranges are trained on the vectors of the
bulk load or rebuild that creates the graph (docs/SPEED.md "HNSW" has the measurements). A
label is never reused, so a stale label can never alias a new item.

Kind. An index starts exact and becomes HNSW once it holds more than ``hnsw_threshold``
items (exact search is O(n·d) per query: fine for tens of thousands of items, too slow
beyond). A bulk ``add`` into an empty index builds the right kind directly; a live index that
grows past the threshold is converted by a background rebuild. Rebuilds re-choose the kind
from the live count.

Updates and removals. Exact: ``remove_ids`` really deletes (O(n) per call, batched).
HNSW graphs cannot delete nodes, so a removed or replaced item's label becomes a
*tombstone*: it stays in the graph (still useful for navigation), search skips it, and when
tombstones exceed ``tombstone_fraction`` of the stored vectors the index is rebuilt from the
live vectors.

Rebuilds (compaction, conversion) never block searches: the live vectors are copied under
the shared lock, the new FAISS index is built with no lock held while searches go on against
the current one, and the exclusive lock is taken only to replay what changed meanwhile
(labels added since the copy are few and are added to the new index; labels never come back,
so the ones dropped since simply stay tombstones) and swap the new index in. Mutations start
them in a background thread at lower priority (``background_threads`` OpenMP threads: one
core is left to the searches, and the scheduler serves searches first; the short exclusive
swap runs at the searches' priority again where the process may raise it, so searches queued
behind it never wait for a low-priority thread); ``compact()`` runs one in the caller's thread with ``build_threads``;
``wait_for_rebuild()`` waits for the background one.

Build threads. Building an HNSW graph runs FAISS's OpenMP loop over the new vectors:
``build_threads`` (default: every usable core) for bulk adds and ``compact()``.

Search. Single queries run FAISS with one OpenMP thread (set per calling thread and
restored afterwards) so concurrent requests do not fight over the 2–N cores; batches use
all threads. Filtered searches over-fetch: ask FAISS for more than k, drop ineligible hits,
and grow the fetch size geometrically (x4) until k eligible items are found or the index is
exhausted. On HNSW, a fetch beyond ``EXACT_SCAN_FRACTION`` of the index switches to an
exact scan of the stored vectors (a huge-k graph walk is slower than a scan and can miss
nodes). A small ``allowed_ids`` set (<= ``ALLOWED_SCAN_LIMIT``) is scored exactly and
directly instead. Scores are inner products of normalized vectors, i.e. cosines.

Thread-safety. Every public method is safe to call from many threads: searches and reads
share a readers–writer lock (they run concurrently; FAISS releases the GIL), mutations
take it exclusively. A large ``add`` to a live HNSW index still blocks searches while the
graph grows, so build big indexes off to the side and publish them with ``IndexHolder.swap``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, Self

import faiss
import numpy as np

from embeddings.index_support import (
    as_matrix,
    check_batch,
    check_k,
    meta_from_json,
    meta_to_json,
    pad_results,
    read_items,
    usable_cores,
    write_items,
)
from embeddings.rwlock import ReadWriteLock
from embeddings.types import (
    ArtifactError,
    FloatMatrix,
    IndexMismatch,
    ItemMeta,
    SearchFilter,
)
from observability.tracing import span

log = logging.getLogger(__name__)

IndexKind = Literal["exact", "hnsw"]

INDEX_FILE = "index.faiss"

ALLOWED_SCAN_LIMIT = 4096
"""``allowed_ids`` sets up to this size are scored exactly instead of over-fetching."""

EXACT_SCAN_FRACTION = 0.25
"""On HNSW, a fetch whose graph walk (fetch x refine factor) exceeds this fraction of the
stored vectors becomes an exact scan."""

_FETCH_GROWTH = 4


def _downcast(index: Any) -> Any:
    """``faiss.downcast_index`` typed as Any: SWIG subclasses are invisible to mypy."""
    return faiss.downcast_index(index)


HnswStorage = Literal["flat", "sq8", "fp16"]

_QUANTIZERS = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}


QUANTIZER_FULL_RANGE_BELOW = 1_000
"""An 8-bit quantizer trained on fewer vectors also covers [-b, b] in every dimension (b: the
largest component, at least 1, which bounds unit vectors): a few vectors say little about the
ranges of those to come, and one vector alone would give every dimension an empty range."""


def _train(index: Any, vectors: np.ndarray) -> None:
    """Train a quantized graph's codes (per-dimension ranges) on ``vectors``."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(x) < QUANTIZER_FULL_RANGE_BELOW:
        bound = max(1.0, float(np.abs(x).max(initial=0.0)))
        x = np.vstack([x, np.full((2, x.shape[1]), bound, np.float32) * [[-1.0], [1.0]]])
        x = np.ascontiguousarray(x, dtype=np.float32)
    index.train(x)


def _graph(index: Any) -> Any:
    """The ``IndexHNSW`` inside an HNSW-kind ``IndexIDMap2`` (directly, or under a refine)."""
    inner = _downcast(index.index)
    if isinstance(inner, faiss.IndexRefine):
        inner = _downcast(inner.base_index)
    return inner


def _float_vectors(index: Any) -> Any:
    """The flat float vectors of an HNSW-kind ``IndexIDMap2``, in insertion (position) order:
    the refine index of a quantized graph, the graph's own storage otherwise."""
    inner = _downcast(index.index)
    if isinstance(inner, faiss.IndexRefine):
        return _downcast(inner.refine_index)
    return _downcast(inner.storage)


def _walk_factor(index: Any) -> float:
    """How many graph hits an HNSW-kind ``IndexIDMap2`` fetches per result (its k_factor)."""
    inner = _downcast(index.index)
    return float(inner.k_factor) if isinstance(inner, faiss.IndexRefine) else 1.0


def _storage_of(index: Any) -> HnswStorage:
    """Which `HnswStorage` an HNSW-kind ``IndexIDMap2`` was built with."""
    graph = _graph(index)
    if isinstance(graph, faiss.IndexHNSWSQ):
        qtype = _downcast(graph.storage).sq.qtype
        return "fp16" if qtype == faiss.ScalarQuantizer.QT_fp16 else "sq8"
    return "flat"


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` OpenMP threads for the calling thread, then restore.

    OpenMP's thread count is a per-thread setting, so this does not affect other threads.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


BACKGROUND_NICE = 10
"""Nice increment of a background rebuild's thread (and the OpenMP threads it starts): the
scheduler gives the CPU to searches first, so they keep their latency during a compaction."""


def _lower_this_threads_priority() -> None:
    """Renice the calling thread by ``BACKGROUND_NICE`` from its own niceness (at most 19;
    Linux schedules threads as tasks); a no-op elsewhere."""
    # Not Linux, or not permitted: keep the priority.
    with suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        own = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(own + BACKGROUND_NICE, 19))


@contextmanager
def _priority_of(nice: int | None) -> Iterator[None]:
    """Run the block at niceness ``nice`` (None: unchanged), then restore the thread's own.

    A background rebuild takes the exclusive lock at normal priority: the lock prefers
    writers, so once it waits, searches queue behind it, and a low-priority thread that is not
    scheduled promptly would stall them all (priority inversion; ~0.4-1.7 s stalls measured at
    load 6-11). Raising the priority again needs CAP_SYS_NICE (or RLIMIT_NICE); without it the
    block simply runs at the lower priority.
    """
    if nice is None:
        yield
        return
    tid = threading.get_native_id()
    try:
        own = os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):
        own = None
    raised = False
    if own is not None and own > nice:
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            raised = True
    try:
        yield
    finally:
        if raised:
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, own)  # type: ignore[arg-type]


class FaissIndex:
    """`VectorIndex` over FAISS; see the module docstring for layout and guarantees.

    Parameters: ``hnsw_threshold`` (items above which HNSW is used; 0 = HNSW whenever not
    empty), ``hnsw_m`` (graph degree M), ``ef_construction`` and ``ef_search`` (candidate list
    sizes at build and query time; ``ef_search`` trades recall for speed, see
    benchmarks/vector_search.py), ``tombstone_fraction`` (rebuild HNSW when dead vectors
    exceed this share; 1.0 never rebuilds automatically), ``build_threads`` (OpenMP threads
    for bulk adds and ``compact()``; 0 = every usable core) and ``background_threads`` (for
    background rebuilds; 0 = every usable core but one). Thread counts are not persisted.
    ``hnsw_storage`` is what the graph computes its distances on: ``"flat"`` (the float
    vectors), or ``"sq8"``/``"fp16"`` (scalar-quantized codes, with the float vectors kept
    beside them in ``IndexRefineFlat``, which re-ranks ``refine_factor`` x k graph hits
    exactly; ``vector()``, exact scans and rebuilds read the float vectors either way).
    """

    def __init__(
        self,
        dimension: int,
        *,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 24,
        ef_construction: int = 80,
        ef_search: int = 192,
        tombstone_fraction: float = 0.25,
        build_threads: int = 0,
        background_threads: int = 0,
        hnsw_storage: HnswStorage = "sq8",
        refine_factor: float = 2.0,
    ) -> None:
        if build_threads < 0 or background_threads < 0:
            raise ValueError("build_threads and background_threads must be >= 0 (0 = default)")
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        if not 0.0 < tombstone_fraction <= 1.0:
            raise ValueError("tombstone_fraction must be in (0, 1]")
        if hnsw_storage not in ("flat", *_QUANTIZERS):
            raise ValueError(f"hnsw_storage must be flat, sq8 or fp16, got {hnsw_storage!r}")
        if refine_factor < 1.0:
            raise ValueError(f"refine_factor must be >= 1, got {refine_factor}")
        self._hnsw_storage: HnswStorage = hnsw_storage
        self._refine_factor = float(refine_factor)
        self._dimension = dimension
        self._hnsw_threshold = hnsw_threshold
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._tombstone_fraction = tombstone_fraction
        self._lock = ReadWriteLock()
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._meta: dict[str, ItemMeta] = {}
        self._next_label = 0
        self._kind: IndexKind = "exact"
        self._index: Any = self._new_faiss_index("exact")
        # Position -> label table of the HNSW storage, cached for exact scans.
        self._position_labels: np.ndarray | None = None
        self._build_threads = build_threads or usable_cores()
        self._background_threads = background_threads or max(1, usable_cores() - 1)
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        self._search_nice: int | None = None  # niceness of the thread that starts rebuilds
        # Set while no background rebuild is scheduled; flag and event change under the
        # exclusive lock.
        self._rebuild_idle = threading.Event()
        self._rebuild_idle.set()
        # Labels dropped while a rebuild copies and builds (None when none runs).
        self._dropped_during: list[int] | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def kind(self) -> IndexKind:
        """``"exact"`` or ``"hnsw"``: the FAISS structure currently in use."""
        return self._kind

    @property
    def tombstones(self) -> int:
        """Vectors still stored for removed/replaced items (always 0 when exact)."""
        with self._lock.read():
            return int(self._index.ntotal) - len(self._label_of)

    @property
    def rebuilding(self) -> bool:
        """True while a background rebuild (compaction or conversion) is scheduled or running."""
        return not self._rebuild_idle.is_set()

    @property
    def params(self) -> dict[str, Any]:
        """Construction parameters (written into manifests and ``save`` output)."""
        return {
            "hnsw_threshold": self._hnsw_threshold,
            "hnsw_m": self._hnsw_m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "tombstone_fraction": self._tombstone_fraction,
            "hnsw_storage": self._hnsw_storage,
            "refine_factor": self._refine_factor,
        }

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        with self._lock.write():
            self._ef_search = value
            if self._kind == "hnsw":
                _graph(self._index).hnsw.efSearch = value

    # -- mutation ---------------------------------------------------------------------

    def add(
        self, ids: Sequence[str], vectors: FloatMatrix, meta: Sequence[ItemMeta] | None = None
    ) -> None:
        id_list, matrix, meta_list = check_batch(ids, vectors, meta, self._dimension)
        if not id_list:
            return
        with self._lock.write():
            replaced = [self._label_of[i] for i in id_list if i in self._label_of]
            self._drop_labels(replaced)
            labels = np.arange(self._next_label, self._next_label + len(id_list), dtype=np.int64)
            self._next_label += len(id_list)
            for item_id, label, item_meta in zip(id_list, labels.tolist(), meta_list, strict=True):
                self._label_of[item_id] = label
                self._id_of[label] = item_id
                self._meta[item_id] = item_meta
            kind = self._kind_for(len(self._label_of))
            if self._index.ntotal == 0 and kind != self._kind:
                # A bulk load into an empty index builds the right structure directly.
                self._index, self._kind = self._new_faiss_index(kind), kind
            if not self._index.is_trained:
                _train(self._index, matrix)
            with _omp_threads(self._build_threads):
                self._index.add_with_ids(matrix, labels)
            self._position_labels = None
            self._schedule_rebuild_if_due()

    def remove(self, ids: Sequence[str]) -> int:
        with self._lock.write():
            labels = []
            for item_id in dict.fromkeys(ids):
                label = self._label_of.pop(item_id, None)
                if label is not None:
                    labels.append(label)
                    del self._id_of[label]
                    del self._meta[item_id]
            self._drop_labels(labels)
            self._schedule_rebuild_if_due()
            return len(labels)

    def compact(self) -> None:
        """Rebuild from live vectors now, in this thread, with ``build_threads``: drops
        tombstones and re-picks exact/HNSW by size. Searches go on during the build."""
        self._rebuild(self._build_threads)

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Wait until no background rebuild is scheduled; False if ``timeout`` ran out."""
        return self._rebuild_idle.wait(timeout)

    def _drop_labels(self, labels: list[int]) -> None:
        """Forget ``labels`` in FAISS: delete when exact, leave as tombstones in HNSW.

        Caller holds the write lock and has already updated ``_label_of``/``_id_of``
        (replaced labels are simply overwritten there by the caller).
        """
        for label in labels:
            self._id_of.pop(label, None)
        if self._dropped_during is not None:
            self._dropped_during.extend(labels)
        if labels and self._kind == "exact":
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))
            self._position_labels = None

    def _rebuild_due(self) -> bool:
        """Too many tombstones, or an exact index grown past the threshold (caller holds a lock)."""
        stored, live = int(self._index.ntotal), len(self._label_of)
        if stored and (stored - live) > self._tombstone_fraction * stored:
            return True
        return self._kind == "exact" and self._kind_for(live) == "hnsw"

    def _schedule_rebuild_if_due(self) -> None:
        """Start a background rebuild when one is due and none is scheduled (write lock held)."""
        if self._rebuild_idle.is_set() and self._rebuild_due():
            self._rebuild_idle.clear()
            threading.Thread(
                target=self._background_rebuild, name="faiss-rebuild", daemon=True
            ).start()

    def _background_rebuild(self) -> None:
        with suppress(AttributeError, OSError):
            # The priority searches run at: the swap's exclusive section goes back to it.
            self._search_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        _lower_this_threads_priority()
        try:
            while self._rebuild(self._background_threads, background=True):
                pass  # still due (many changes meanwhile): go again
        except Exception:
            log.exception("background rebuild of the FAISS index failed; searches go on")
            with self._lock.write():
                self._rebuild_idle.set()

    def _kind_for(self, count: int) -> IndexKind:
        return "hnsw" if count > self._hnsw_threshold else "exact"

    def _rebuild(self, threads: int, *, background: bool = False) -> bool:
        """Build a new index from the live vectors off the lock and swap it in.

        Returns True when, for a ``background`` rebuild, another one is already due; otherwise
        the background flag is cleared in the same exclusive section as the swap.
        """
        with self._rebuild_lock:
            with self._lock.read():  # no writer runs: a consistent copy
                labels = np.fromiter(self._id_of.keys(), dtype=np.int64, count=len(self._id_of))
                labels.sort()
                vectors = (
                    self._index.reconstruct_batch(labels)
                    if labels.size
                    else np.zeros((0, self._dimension), np.float32)
                )
                copied_up_to = self._next_label
                self._dropped_during = []
            kind = self._kind_for(labels.size)
            index = self._new_faiss_index(kind)
            try:
                if not index.is_trained:
                    _train(index, vectors)
                if labels.size:
                    with _omp_threads(threads):
                        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), labels)
            except BaseException:
                with self._lock.write():
                    self._dropped_during = None
                raise
            del vectors
            with _priority_of(self._search_nice if background else None), self._lock.write():
                # Replay what changed since the copy: new labels in, dropped ones out (exact)
                # or left as tombstones (HNSW: search skips labels it does not know).
                fresh = np.fromiter(
                    (lb for lb in range(copied_up_to, self._next_label) if lb in self._id_of),
                    dtype=np.int64,
                )
                if fresh.size:
                    index.add_with_ids(self._index.reconstruct_batch(fresh), fresh)
                dropped, self._dropped_during = self._dropped_during, None
                if dropped and kind == "exact":
                    index.remove_ids(np.asarray(dropped, dtype=np.int64))
                if kind == "hnsw":
                    _graph(index).hnsw.efSearch = self._ef_search
                # The old index is freed after the lock is released: freeing 100k vectors and
                # their graph is not done while searches wait (a background rebuild's thread
                # runs at low priority and can be preempted meanwhile).
                retired = self._index
                self._index, self._kind, self._position_labels = index, kind, None
                due = background and self._rebuild_due()
                if background and not due:
                    self._rebuild_idle.set()
            del retired
            return due

    def _new_faiss_index(self, kind: IndexKind) -> Any:
        """An empty index of ``kind``. A quantized HNSW one is untrained: its callers train it
        on the vectors they are about to add (the bulk load, or a rebuild's live vectors)."""
        if kind == "exact":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self._dimension))
        d, m, ip = self._dimension, self._hnsw_m, faiss.METRIC_INNER_PRODUCT
        graph: Any
        if self._hnsw_storage == "flat":
            graph = faiss.IndexHNSWFlat(d, m, ip)
        else:
            qtype: Any = _QUANTIZERS[self._hnsw_storage]  # a SWIG enum: an int to Python
            graph = faiss.IndexHNSWSQ(d, qtype, m, ip)
        graph.hnsw.efConstruction = self._ef_construction
        graph.hnsw.efSearch = self._ef_search
        if self._hnsw_storage == "flat":
            return faiss.IndexIDMap2(graph)
        refine = faiss.IndexRefineFlat(graph)
        refine.k_factor = self._refine_factor
        index: Any = faiss.IndexIDMap2(refine)
        index.referenced_objects = [refine, graph]  # keep the SWIG owners alive
        return index

    # -- reads ------------------------------------------------------------------------

    def search(
        self, vectors: FloatMatrix, k: int, filter: SearchFilter | None = None
    ) -> tuple[list[list[str]], FloatMatrix]:
        check_k(k)
        queries = as_matrix(vectors, self._dimension)
        with span("faiss.search", k=k, queries=int(queries.shape[0]), kind=self._kind):
            if queries.shape[0] == 1:
                with _omp_threads(1), self._lock.read():
                    rows = self._search_locked(queries, k, filter)
            else:
                with self._lock.read():
                    rows = self._search_locked(queries, k, filter)
        return pad_results(rows, k)

    def _search_locked(
        self, queries: FloatMatrix, k: int, flt: SearchFilter | None
    ) -> list[list[tuple[str, float]]]:
        rows: list[list[tuple[str, float]]] = [[] for _ in range(queries.shape[0])]
        stored = int(self._index.ntotal)
        if not self._label_of:
            return rows
        if (
            flt is not None
            and flt.allowed_ids is not None
            and len(flt.allowed_ids) <= ALLOWED_SCAN_LIMIT
        ):
            return self._search_allowed(queries, k, flt)
        needs_check = flt is not None or stored > len(self._label_of)
        fetch = min(stored, k)
        if needs_check:
            extra = len(flt.exclude_ids) if flt is not None else 0
            fetch = min(stored, 2 * k + extra)
        pending = list(range(queries.shape[0]))
        while pending:
            scores, labels = self._raw_search(queries[pending], fetch, exhaustive=fetch >= stored)
            still_pending = []
            for qi, score_row, label_row in zip(
                pending, scores.tolist(), labels.tolist(), strict=True
            ):
                row = self._collect(score_row, label_row, k, flt)
                rows[qi] = row
                if len(row) < k and fetch < stored:
                    still_pending.append(qi)
            pending = still_pending
            fetch = min(stored, fetch * _FETCH_GROWTH)
        return rows

    def _collect(
        self, scores: list[float], labels: list[int], k: int, flt: SearchFilter | None
    ) -> list[tuple[str, float]]:
        row: list[tuple[str, float]] = []
        for score, label in zip(scores, labels, strict=True):
            if label < 0:  # FAISS pads missing results with -1
                break
            item_id = self._id_of.get(label)
            if item_id is None:  # tombstone
                continue
            if flt is None or flt.admits(item_id, self._meta[item_id]):
                row.append((item_id, score))
                if len(row) == k:
                    break
        return row

    def _raw_search(
        self, queries: FloatMatrix, fetch: int, *, exhaustive: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS top-``fetch`` (scores, labels); an exact scan when HNSW would be worse."""
        stored = int(self._index.ntotal)
        # A refined graph walks refine_factor x fetch candidates: that is what gets compared.
        walked = fetch * _walk_factor(self._index) if self._kind == "hnsw" else fetch
        if self._kind == "exact" or (not exhaustive and walked <= EXACT_SCAN_FRACTION * stored):
            scores, labels = self._index.search(queries, fetch)
            return scores, labels
        scores, positions = _float_vectors(self._index).search(queries, fetch)
        table = self._position_labels
        if table is None:
            # Benign race: concurrent readers may both build it; the result is identical.
            table = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            self._position_labels = table
        labels = np.where(positions >= 0, table[np.maximum(positions, 0)], -1)
        return scores, labels

    def _search_allowed(
        self, queries: FloatMatrix, k: int, flt: SearchFilter
    ) -> list[list[tuple[str, float]]]:
        """Exact scoring of a small ``allowed_ids`` candidate set."""
        assert flt.allowed_ids is not None
        candidates = sorted(
            i for i in flt.allowed_ids if i in self._label_of and flt.admits(i, self._meta[i])
        )
        if not candidates:
            return [[] for _ in range(queries.shape[0])]
        labels = np.asarray([self._label_of[i] for i in candidates], dtype=np.int64)
        matrix = self._index.reconstruct_batch(labels)
        all_scores = queries @ matrix.T
        rows = []
        for scores in all_scores:
            top = np.argsort(-scores, kind="stable")[:k]
            rows.append([(candidates[j], float(scores[j])) for j in top])
        return rows

    def vector(self, item_id: str) -> FloatMatrix:
        with self._lock.read():
            label = self._label_of[item_id]
            return np.asarray(self._index.reconstruct(label), dtype=np.float32)

    def meta(self, item_id: str) -> ItemMeta:
        with self._lock.read():
            return self._meta[item_id]

    def ids(self) -> list[str]:
        with self._lock.read():
            return list(self._label_of)

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._label_of

    # -- persistence ------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write ``index.faiss`` (FAISS native) and ``items.json`` (ids, labels, meta)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            faiss.write_index(self._index, str(directory / INDEX_FILE))
            ids = list(self._label_of)
            items = {
                "format": 1,
                "dimension": self._dimension,
                "kind": self._kind,
                "params": self.params,
                "next_label": self._next_label,
                "ids": ids,
                "labels": [self._label_of[i] for i in ids],
                "meta": [meta_to_json(self._meta[i]) for i in ids],
            }
        write_items(directory, items)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        try:
            items = read_items(directory)
            faiss_index: Any = faiss.read_index(str(directory / INDEX_FILE))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"cannot read FaissIndex from {directory}: {exc}") from exc
        params = dict(items["params"])
        if items["kind"] == "hnsw" and "hnsw_storage" not in params:
            params["hnsw_storage"] = _storage_of(faiss_index)  # saved before the option existed
        index = cls(int(items["dimension"]), **params)
        if faiss_index.d != index.dimension:
            raise IndexMismatch(
                f"{directory}: FAISS dimension {faiss_index.d} != {index.dimension}"
            )
        if faiss_index.ntotal < len(items["ids"]):
            raise ArtifactError(f"{directory}: index holds fewer vectors than items.json lists")
        index._index = faiss_index
        index._kind = items["kind"]
        index._next_label = int(items["next_label"])
        for item_id, label, meta in zip(items["ids"], items["labels"], items["meta"], strict=True):
            index._label_of[item_id] = int(label)
            index._id_of[int(label)] = item_id
            index._meta[item_id] = meta_from_json(meta)
        if index._kind == "hnsw":
            # efSearch is a search-time knob that FAISS does not persist.
            _graph(faiss_index).hnsw.efSearch = index._ef_search
        return index
