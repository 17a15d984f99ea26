"""Encoding: the int8 ONNX Runtime backend against fp32 PyTorch on the demo catalog texts.

    python benchmarks/encoding.py            # the demo catalog: 5,000 items
    python benchmarks/encoding.py --quick    # 1,000 items

Measures, side by side in one run (the machine is shared: blocks of the two backends
alternate, so both see the same noise; compare the ratios):

1. throughput (items/s) of `OnnxInt8Encoder` and `SentenceTransformerEncoder` on the texts
   `tailor demo` indexes (demo/catalog.py items through embeddings.render_item_text), wall
   clock and per CPU-second of the process; target int8/fp32 >= 2x;
2. mean (and min) cosine between each item's int8 and fp32 vectors; target >= 0.99;
3. 10-nearest-neighbour overlap on the catalog: each item's 10 nearest other items by int8
   vectors against by fp32 vectors; target >= 0.9;
4. peak memory (max RSS) of a fresh process that loads each backend and encodes 200 texts, and
   whether it imported PyTorch.

The int8 export is made once, under --cache-dir (default: a temp directory; pass the gateway's
``<data_dir>/encoders`` to reuse its export) — its time is printed separately.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.catalog import generate_items
from embeddings import OnnxInt8Encoder, SentenceTransformerEncoder, render_item_text
from embeddings.types import Encoder

ROOT = Path(__file__).resolve().parents[1]

K = 10
BLOCK = 250
SEED = 42  # demo/world.py's default seed: the items of `tailor demo`


def demo_texts(n_items: int) -> list[str]:
    """The item texts of the demo world (same seed and item stream as demo/world.py)."""
    items_seed = np.random.SeedSequence(SEED).spawn(3)[0]
    rng = np.random.Generator(np.random.PCG64(items_seed))
    end_s = 1_767_225_600
    items = generate_items(rng, n_items, end_s - 90 * 86_400, end_s)
    return [render_item_text(item.record) for item in items]


def timed_blocks(
    encoders: dict[str, Encoder], texts: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, float]]:
    """Encode ``texts`` with every encoder in alternating blocks: vectors, wall s, CPU s."""
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
    wall = dict.fromkeys(encoders, 0.0)
    cpu = dict.fromkeys(encoders, 0.0)
    for start in range(0, len(texts), BLOCK):
        block = texts[start : start + BLOCK]
        for name, encoder in encoders.items():
            w, c = time.perf_counter(), time.process_time()
            vectors[name].append(encoder.encode(block, batch_size=64))
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
    return {n: np.vstack(v) for n, v in vectors.items()}, wall, cpu


def neighbours(vectors: np.ndarray, k: int = K) -> np.ndarray:
    """Each row's k nearest other rows by inner product (exact), as a set per row."""
    out = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 1000):
        sims = vectors[start : start + 1000] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # not itself
        out[start : start + 1000] = np.argpartition(-sims, k, axis=1)[:, :k]
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]))


# VmHWM (peak RSS of this process image), not ru_maxrss: Linux carries ru_maxrss over from
# the forking parent.
_MEMORY_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
from embeddings import OnnxInt8Encoder, SentenceTransformerEncoder
texts = json.loads(open({texts!r}).read())
if {backend!r} == "int8":
    encoder = OnnxInt8Encoder(cache_dir={cache!r})
else:
    encoder = SentenceTransformerEncoder()
encoder.encode(texts)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({{
    "max_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    "torch": "torch" in sys.modules,
}}))
"""


def memory_of(backend: str, texts_file: Path, cache_dir: Path) -> dict[str, float]:
    """Peak RSS of a fresh process that loads ``backend`` and encodes the texts."""
    code = _MEMORY_PROBE.format(
        root=str(ROOT), texts=str(texts_file), backend=backend, cache=str(cache_dir)
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 items instead of 5,000")
    parser.add_argument("--cache-dir", type=Path, help="where the int8 export is kept")
    args = parser.parse_args()
    texts = demo_texts(1_000 if args.quick else 5_000)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp) / "encoders"
        started = time.perf_counter()
        int8 = OnnxInt8Encoder(cache_dir=cache_dir)
        print(f"int8 encoder ready in {time.perf_counter() - started:.1f}s (export: {cache_dir})")
        fp32 = SentenceTransformerEncoder()
        for encoder in (fp32, int8):
            encoder.encode(texts[:16])  # warm-up
        mean_tokens = np.mean([len(t.split()) for t in texts])
        print(f"== encoding {len(texts):,} demo catalog texts (~{mean_tokens:.0f} words each)")

        vectors, wall, cpu = timed_blocks({"fp32": fp32, "int8": int8}, texts)
        rate = {n: len(texts) / wall[n] for n in wall}
        cpu_rate = {n: len(texts) / cpu[n] for n in cpu}
        for name, encoder in (("fp32", fp32), ("int8", int8)):
            print(
                f"{name}: {rate[name]:7.1f} items/s wall, {cpu_rate[name]:7.1f} items per "
                f"CPU-second  ({encoder.model_id})"
            )
        cosines = np.sum(vectors["fp32"] * vectors["int8"], axis=1)
        knn_overlap = overlap(neighbours(vectors["fp32"]), neighbours(vectors["int8"]))
        print(f"cosine int8 vs fp32: mean {cosines.mean():.4f}, min {cosines.min():.4f}")
        print(f"10-NN overlap on the catalog: {knn_overlap:.3f}")

        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts[:200]), encoding="utf-8")
        memory = {b: memory_of(b, texts_file, cache_dir) for b in ("fp32", "int8")}
        for backend, facts in memory.items():
            print(
                f"peak RSS of a process encoding with {backend}: {facts['max_rss_mb']:.0f} MB "
                f"(PyTorch imported: {bool(facts['torch'])})"
            )
    ratio, cpu_ratio = rate["int8"] / rate["fp32"], cpu_rate["int8"] / cpu_rate["fp32"]
    saved = memory["fp32"]["max_rss_mb"] - memory["int8"]["max_rss_mb"]
    print(
        f"RESULT int8/fp32 throughput {ratio:.2f}x wall, {cpu_ratio:.2f}x per CPU-second "
        f"(target >= 2x); mean cosine {cosines.mean():.4f} (>= 0.99); 10-NN overlap "
        f"{knn_overlap:.3f} (>= 0.9); memory saved {saved:.0f} MB"
    )


if __name__ == "__main__":
    main()
