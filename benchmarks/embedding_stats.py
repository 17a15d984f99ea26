"""How hard is ANN search on real item embeddings, and on `vector_search.py`'s synthetic mixture?

    python benchmarks/embedding_stats.py [--sets movielens,demo,calibrated,hard] [--n 9000]
                                         [--queries 500] [--skip-hnsw] [--cache DIR]
    python benchmarks/embedding_stats.py --calibrate movielens --n 8625

Real sets: the product's item texts encoded by the product's default encoder
(`OnnxInt8Encoder`, all-MiniLM-L6-v2 int8) —

- ``movielens``: every movie of ml-latest-small (``TAILOR_DATASETS_DIR``), rendered with the
  default item template as title, genres as categories and the movie's tags (lower-cased set),
  the same records as `tests/embeddings/test_minilm.py` builds;
- ``demo``: the demo shop's catalog (`demo.catalog.generate_items`, 5,000 items, seed 42 drawn
  as `demo.world.generate_world` draws it), rendered from the same fields as
  `recommend.content.item_document`.

The vectors are cached as ``.npy`` under ``--cache`` (outside the repository; the encoder's
int8 export is cached there too). Synthetic sets are drawn by `benchmarks.vector_search`:
``hard`` (the default mixture, `MIXTURE`) and ``calibrated`` (`CALIBRATED_MIXTURE`), at the
same ``n`` as the real sets (queries are held out: real queries are other items of the set,
synthetic queries fresh draws of the mixture).

Per set, over held-out queries: cosine to the 1st and 10th nearest neighbour (mean and
percentiles), relative contrast (mean distance / 1st-NN distance, L2 on unit vectors), local
intrinsic dimensionality (Levina–Bickel MLE over k=20), then a flat HNSW graph (FaissIndex's
M 24 / efConstruction 80) at equal ``n``: recall@10 against exact search for several
efSearch values and the per-query CPU of exact and HNSW search (alternating blocks, one FAISS
thread per query). ``--calibrate`` fits the mixture's parameters to a real set's mean cosines
and LID (`CALIBRATED_ON`); the results are in docs/SPEED.md ("HNSW").
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import loadavg
from benchmarks.vector_search import (
    CALIBRATED_MIXTURE,
    DIM,
    MIXTURE,
    K,
    Mixture,
    clustered_vectors,
    sample,
)
from embeddings.text import render_item_text

DEFAULT_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "tailor-data" / "real-embeddings"


def movielens_texts() -> list[str]:
    from recommend.offline.movielens import dataset_dir

    root = dataset_dir()
    tags: defaultdict[str, set[str]] = defaultdict(set)
    with (root / "tags.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tags[row["movieId"]].add(row["tag"].strip().lower())
    texts = []
    with (root / "movies.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            genres = [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")
            item = {"title": row["title"], "categories": genres, "tags": tags.get(row["movieId"])}
            texts.append(render_item_text(item))
    return texts


def demo_texts(n_items: int = 5_000, seed: int = 42) -> list[str]:
    from demo.catalog import generate_items

    items_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed).spawn(3)[0]))
    end_s = 1_767_225_600  # 2026-01-01; only created_at depends on it, and it is not rendered
    items = generate_items(items_rng, n_items, end_s - 90 * 86_400, end_s)
    keys = ("title", "description", "categories", "tags", "attributes")
    return [render_item_text({k: it.record[k] for k in keys}) for it in items]


def real_vectors(name: str, cache: Path) -> np.ndarray:
    path = cache / f"{name}.npy"
    if path.exists():
        return np.load(path)
    from embeddings import OnnxInt8Encoder

    texts = movielens_texts() if name == "movielens" else demo_texts()
    encoder = OnnxInt8Encoder(cache_dir=cache / "encoders")
    start = time.perf_counter()
    vectors = np.asarray(encoder.encode(texts, show_progress=True), dtype=np.float32)
    print(
        f"encoded {len(texts):,} {name} texts in {time.perf_counter() - start:.0f} s "
        f"({encoder.model_id}); e.g. {texts[0]!r}",
        flush=True,
    )
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def split(x: np.ndarray, n_queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``n_queries`` rows as queries; the rest is the base set."""
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order[n_queries:]], x[order[:n_queries]]


def synthetic(mixture: Mixture, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    base, centers, bases = clustered_vectors(n, rng, mixture)
    return base, sample(n_queries, rng, centers, bases, mixture)


def statistics(base: np.ndarray, queries: np.ndarray, lid_k: int = 20) -> dict[str, float]:
    sims = queries @ base.T  # cosines (unit vectors)
    top = -np.sort(-sims, axis=1)[:, :lid_k]
    dist = np.sqrt(np.maximum(2.0 - 2.0 * top, 1e-12))  # L2 on the unit sphere
    mean_dist = np.sqrt(np.maximum(2.0 - 2.0 * sims, 0.0)).mean(axis=1)
    # Levina-Bickel MLE of the local intrinsic dimensionality over the k nearest neighbours.
    lid = -1.0 / np.mean(np.log(dist[:, :-1] / dist[:, -1:]), axis=1)
    return {
        "cos1_mean": float(top[:, 0].mean()),
        "cos1_p10": float(np.percentile(top[:, 0], 10)),
        "cos1_p50": float(np.percentile(top[:, 0], 50)),
        "cos1_p90": float(np.percentile(top[:, 0], 90)),
        "cos10_mean": float(top[:, K - 1].mean()),
        "cos10_p10": float(np.percentile(top[:, K - 1], 10)),
        "cos10_p50": float(np.percentile(top[:, K - 1], 50)),
        "cos10_p90": float(np.percentile(top[:, K - 1], 90)),
        "cos_mean_all": float(sims.mean()),
        "rc1": float(np.median(mean_dist / dist[:, 0])),
        "rc10": float(np.median(mean_dist / dist[:, K - 1])),
        "lid_mean": float(lid.mean()),
        "lid_p50": float(np.median(lid)),
    }


CALIBRATED_ON = ("cos1_mean", "cos10_mean", "cos_mean_all", "lid_mean")
"""The statistics `calibrate` matches (the cosines to within 0.05 weigh as much as LID to 3)."""


def mismatch(s: dict[str, float], target: dict[str, float]) -> float:
    scale = {"cos1_mean": 0.05, "cos10_mean": 0.05, "cos_mean_all": 0.05, "lid_mean": 3.0}
    return sum(abs(s[key] - target[key]) / scale[key] for key in CALIBRATED_ON)


GRID: dict[str, tuple[float, ...]] = {
    "items_per_cluster": (20, 50, 100, 200, 500, 1000),
    "rank": (16, 24, 48, 64, 96),
    "spread": (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0),
    "noise": (0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    "shared": (0.0, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.8),
}
START = Mixture(items_per_cluster=200, rank=64, spread=1.0, noise=0.75, shared=1.1)
"""Where `calibrate` starts (a first descent from the hard mixture stopped at LID 13 vs 26)."""


def calibrate(
    target: dict[str, float], n: int, n_queries: int, passes: int = 2
) -> tuple[float, Mixture]:
    """Coordinate descent over `GRID` from `START`: each pass tries every value of one
    parameter with the others fixed and keeps the best, parameter after parameter."""
    best = START
    seen: dict[Mixture, float] = {}

    def score(m: Mixture) -> float:
        if m not in seen:
            base, queries = synthetic(m, n, n_queries)
            seen[m] = mismatch(statistics(base, queries), target)
        return seen[m]

    for _ in range(passes):
        for field, values in GRID.items():
            cast = int if field in ("items_per_cluster", "rank") else float
            options = [dataclasses.replace(best, **{field: cast(v)}) for v in values]
            best = min([best, *options], key=score)
            print(f"  {field:<17} -> mismatch {score(best):6.2f}  {best}", flush=True)
    return score(best), best


def per_query_cpu(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    cpu = []
    for q in queries:
        start = time.thread_time()
        index.search(q.reshape(1, -1), K)
        cpu.append((time.thread_time() - start) * 1e3)
    return np.asarray(cpu)


def hnsw_curve(
    base: np.ndarray, queries: np.ndarray, efs: list[int], m: int = 24, efc: int = 80
) -> list[tuple[int, float, float]]:
    """[(efSearch, recall@10, exact/HNSW per-query CPU p50)] at FaissIndex's build defaults."""
    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    _, truth = exact.search(queries, K)
    graph = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = efc
    graph.add(base)
    rows = []
    lat = queries[:300]
    previous = faiss.omp_get_max_threads()
    for ef in efs:
        graph.hnsw.efSearch = ef
        faiss.omp_set_num_threads(previous)
        _, got = graph.search(queries, K)
        hit = np.mean([len(set(a) & set(t)) / K for a, t in zip(got, truth, strict=True)])
        faiss.omp_set_num_threads(1)
        ec, hc = [], []
        for b in range(0, len(lat), 25):
            ec.append(per_query_cpu(exact, lat[b : b + 25]))
            hc.append(per_query_cpu(graph, lat[b : b + 25]))
        faiss.omp_set_num_threads(previous)
        ratio = float(np.median(np.concatenate(ec)) / np.median(np.concatenate(hc)))
        rows.append((ef, float(hit), ratio))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--n", type=int, default=9_000, help="base vectors per set (real sets cap)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--sets", default="movielens,demo,calibrated,hard")
    ap.add_argument(
        "--calibrate",
        metavar="SET",
        help="grid-search the mixture parameters closest to this real set's statistics",
    )
    args = ap.parse_args()
    efs = [16, 32, 48, 64, 96, 128, 192]
    print(f"load average: {loadavg()}")
    if args.calibrate:
        base, queries = split(real_vectors(args.calibrate, args.cache), args.queries)
        base = base[: args.n]
        target = statistics(base, queries)
        print(
            f"target {args.calibrate} (n={len(base):,}): "
            + ", ".join(f"{key} {target[key]:.3f}" for key in CALIBRATED_ON)
        )
        score, mixture = calibrate(target, len(base), args.queries)
        s = statistics(*synthetic(mixture, len(base), args.queries))
        print(
            f"best (mismatch {score:.2f}): {mixture}: "
            + ", ".join(f"{key} {s[key]:.3f}" for key in CALIBRATED_ON)
        )
        return
    for name in args.sets.split(","):
        if name in ("movielens", "demo"):
            x = real_vectors(name, args.cache)
            base, queries = split(x, args.queries)
            base = base[: args.n]
        else:
            mixture = CALIBRATED_MIXTURE if name == "calibrated" else MIXTURE
            base, queries = synthetic(mixture, args.n, args.queries)
        s = statistics(base, queries)
        print(
            f"{name:<11} n={len(base):>6,}  cos@1 mean {s['cos1_mean']:.3f} "
            f"(p10/50/90 {s['cos1_p10']:.3f}/{s['cos1_p50']:.3f}/{s['cos1_p90']:.3f})  "
            f"cos@10 mean {s['cos10_mean']:.3f} "
            f"(p10/50/90 {s['cos10_p10']:.3f}/{s['cos10_p50']:.3f}/{s['cos10_p90']:.3f})  "
            f"mean cos {s['cos_mean_all']:.3f}  RC@1 {s['rc1']:.3f} RC@10 {s['rc10']:.3f}  "
            f"LID(k=20) mean {s['lid_mean']:.1f} median {s['lid_p50']:.1f}",
            flush=True,
        )
        if not args.skip_hnsw:
            curve = hnsw_curve(base, queries, efs)
            cells = "; ".join(f"ef {ef}: {r:.3f}, {x:.1f}x" for ef, r, x in curve)
            print(
                f"{'':<11} HNSW M24/efC80 recall@10, exact/HNSW CPU p50: {cells}  load {loadavg()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
