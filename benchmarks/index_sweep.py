"""FAISS index structures for 100,000 x 384 compared on build cost, recall@10 and query CPU.

    python benchmarks/index_sweep.py [--n 100000] [--only hnsw-flat,hnsw-sq8,ivf-hnsw]
                                     [--calibrated-mixture]

The vectors and queries are `benchmarks/vector_search.py`'s (its default mixture, or with
``--calibrated-mixture`` the one calibrated to MovieLens MiniLM embeddings; same seed).
``*-refine`` structures walk the graph over quantized codes and re-rank ``k_factor`` x k hits
exactly with the float vectors (``IndexRefineFlat``); their knob is ``efSearch:k_factor``. For each structure: the build's wall time and process CPU-seconds (FAISS OpenMP
threads = every usable core), then for each search knob recall@10 against exact search and the
per-query CPU time (``time.thread_time`` around single-query searches with one FAISS thread,
as `FaissIndex` serves them) against exact flat search over the same queries, measured in
alternating blocks. CPU time is what the machine's load moves least; wall p50 is printed too.
This is the sweep the defaults in `embeddings/faiss_index.py` were chosen from (docs/SPEED.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import loadavg
from benchmarks.vector_search import (
    CALIBRATED_MIXTURE,
    DIM,
    MIXTURE,
    K,
    clustered_vectors,
    sample,
)
from embeddings.index_support import usable_cores


def hnsw_flat(m: int, ef_construction: int) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(x)
        return index

    return build


def hnsw_sq8(m: int, ef_construction: int) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        index = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.train(x)
        index.add(x)
        return index

    return build


QTYPES = {
    "sq8": faiss.ScalarQuantizer.QT_8bit,
    "sq8u": faiss.ScalarQuantizer.QT_8bit_uniform,
    "fp16": faiss.ScalarQuantizer.QT_fp16,
    "bf16": faiss.ScalarQuantizer.QT_bf16,
    "sq6": faiss.ScalarQuantizer.QT_6bit,
    "sq4": faiss.ScalarQuantizer.QT_4bit,
}


def hnsw_sq_refine(qtype: str, m: int, ef_construction: int) -> Callable[[np.ndarray], Any]:
    """HNSW over scalar-quantized codes, re-ranked exactly by ``IndexRefineFlat``.

    The float vectors stay in the refine index (``reconstruct`` reads them), so ``vector()``,
    the exact-scan fallback and rebuilds would keep working on exact vectors.
    """

    def build(x: np.ndarray) -> Any:
        graph = faiss.IndexHNSWSQ(DIM, QTYPES[qtype], m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = ef_construction
        index = faiss.IndexRefineFlat(graph)
        index.train(x)
        index.add(x)
        return index

    return build


def ivf_hnsw(nlist: int, niter: int) -> Callable[[np.ndarray], Any]:
    def build(x: np.ndarray) -> Any:
        quantizer = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = niter
        index.train(x)
        index.add(x)
        return index

    return build


REFINE_KNOBS: list[int | str] = ["96:2", "128:1.5", "128:2", "160:2", "192:2"]

CONFIGS: dict[str, tuple[Callable[[np.ndarray], Any], str, list[int | str]]] = {
    "hnsw-flat-m24-efc80": (hnsw_flat(24, 80), "efSearch", [96, 128, 192, 256]),
    "hnsw-flat-m16-efc60": (hnsw_flat(16, 60), "efSearch", [128, 192, 256, 384]),
    "hnsw-sq8-m24-efc80": (hnsw_sq8(24, 80), "efSearch", [96, 128, 192, 256]),
    "hnsw-sq8-m16-efc60": (hnsw_sq8(16, 60), "efSearch", [128, 192, 256, 384]),
    "hnsw-flat-m32-efc64": (hnsw_flat(32, 64), "efSearch", [64, 96, 128, 192]),
    "hnsw-sq8-m32-efc64": (hnsw_sq8(32, 64), "efSearch", [64, 96, 128, 192]),
    "hnsw-sq8-m32-efc100": (hnsw_sq8(32, 100), "efSearch", [64, 96, 128, 192]),
    "hnsw-sq8-m48-efc64": (hnsw_sq8(48, 64), "efSearch", [64, 96, 128, 192]),
    "hnsw-flat-m24-efc80-queue": (
        hnsw_flat(24, 80),
        "efSearch",
        [128, "128:nobq", 192, "192:nobq"],
    ),
    "hnsw-sq8-m24-efc80-refine": (hnsw_sq_refine("sq8", 24, 80), "efSearch:k_factor", REFINE_KNOBS),
    "hnsw-sq8u-m24-efc80-refine": (
        hnsw_sq_refine("sq8u", 24, 80),
        "efSearch:k_factor",
        REFINE_KNOBS,
    ),
    "hnsw-fp16-m24-efc80-refine": (
        hnsw_sq_refine("fp16", 24, 80),
        "efSearch:k_factor",
        REFINE_KNOBS,
    ),
    "hnsw-sq6-m24-efc80-refine": (hnsw_sq_refine("sq6", 24, 80), "efSearch:k_factor", REFINE_KNOBS),
    "hnsw-sq4-m24-efc80-refine": (
        hnsw_sq_refine("sq4", 24, 80),
        "efSearch:k_factor",
        ["128:4", "160:4", "192:4", "256:4"],
    ),
    "ivf1024-hnsw-niter10": (ivf_hnsw(1024, 10), "nprobe", [4, 8, 16, 32]),
    "ivf512-hnsw-niter10": (ivf_hnsw(512, 10), "nprobe", [4, 8, 16, 32]),
}


def set_knob(index: Any, knob: str, value: int | str) -> None:
    """``efSearch`` (``"192:nobq"``: also an unbounded candidate queue), ``nprobe``, or for a
    refine index ``"efSearch:k_factor"``."""
    if knob == "nprobe":
        index.nprobe = int(value)
        return
    ef, _, extra = str(value).partition(":")
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(extra or 1)
        index = faiss.downcast_index(index.base_index)
    index.hnsw.efSearch = int(ef)
    if knob == "efSearch":
        index.hnsw.search_bounded_queue = extra != "nobq"


def per_query(index: Any, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wall ms, thread CPU ms) of single-query searches with one FAISS thread."""
    wall, cpu = [], []
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for q in queries:
            q = q.reshape(1, -1)
            start, cpu_start = time.perf_counter(), time.thread_time()
            index.search(q, K)
            cpu.append((time.thread_time() - cpu_start) * 1e3)
            wall.append((time.perf_counter() - start) * 1e3)
    finally:
        faiss.omp_set_num_threads(previous)
    return np.asarray(wall), np.asarray(cpu)


def recall(approx: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(t)) / K for a, t in zip(approx, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1_000, help="for recall")
    ap.add_argument("--latency", type=int, default=300, help="single queries per knob value")
    ap.add_argument("--only", help="comma-separated config names: " + ", ".join(CONFIGS))
    ap.add_argument(
        "--calibrated-mixture", action="store_true", help="vector_search.CALIBRATED_MIXTURE"
    )
    args = ap.parse_args()
    mixture = CALIBRATED_MIXTURE if args.calibrated_mixture else MIXTURE
    rng = np.random.default_rng(42)  # the same draws as benchmarks/vector_search.py
    vectors, centers, bases = clustered_vectors(args.n, rng, mixture)
    queries = sample(args.queries, rng, centers, bases, mixture)
    faiss.omp_set_num_threads(usable_cores())
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    _, truth = exact.search(queries, K)
    lat_q = queries[: args.latency]
    names = args.only.split(",") if args.only else list(CONFIGS)
    print(
        f"{args.n:,} x {DIM}, {args.queries} queries, {usable_cores()} build threads, "
        f"{'calibrated' if args.calibrated_mixture else 'default'} mixture {mixture}"
    )
    print(
        f"{'structure':<22} {'build s':>8} {'CPU-s':>7} {'knob':>10} {'recall@10':>9} "
        f"{'CPU p50':>8} {'exact/idx CPU p50':>17} {'wall p50':>9} {'exact/idx wall':>14}  load"
    )
    for name in names:
        build, knob, values = CONFIGS[name]
        start, cpu0 = time.perf_counter(), time.process_time()
        index = build(vectors)
        build_s, build_cpu = time.perf_counter() - start, time.process_time() - cpu0
        for value in values:
            set_knob(index, knob, value)
            _, got = index.search(queries, K)
            ew, ec, iw, ic = [], [], [], []
            for b in range(0, len(lat_q), 25):  # alternate blocks: the same machine noise
                w, c = per_query(exact, lat_q[b : b + 25])
                ew.append(w)
                ec.append(c)
                w, c = per_query(index, lat_q[b : b + 25])
                iw.append(w)
                ic.append(c)
            e_cpu, i_cpu = np.median(np.concatenate(ec)), np.median(np.concatenate(ic))
            e_wall, i_wall = np.median(np.concatenate(ew)), np.median(np.concatenate(iw))
            print(
                f"{name:<22} {build_s:>8.1f} {build_cpu:>7.1f} {knob + ' ' + str(value):>10} "
                f"{recall(got, truth):>9.4f} {i_cpu:>6.3f}ms {e_cpu / i_cpu:>16.1f}x "
                f"{i_wall:>7.3f}ms {e_wall / i_wall:>13.1f}x  {loadavg()}",
                flush=True,
            )
        del index


if __name__ == "__main__":
    main()
