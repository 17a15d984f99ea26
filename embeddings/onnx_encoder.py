"""`OnnxInt8Encoder`: a sentence-transformers model (default: the bundled MiniLM) quantized to
int8 and served by ONNX Runtime.

Export, once per model and recipe (`export_int8`): the model's transformer is loaded with
PyTorch (transformers, local files only), exported to ONNX (``torch.onnx``, opset 17), and
``onnxruntime.quantization.quantize_dynamic`` stores the weights of the ``MatMul``s (all but
`FP32_MATMULS`) and of the embedding tables as int8, one scale per output channel; activations
are quantized per run. Before the export is kept it is checked against the fp32 model on a
few probe texts (cosine >= ``EXPORT_MIN_COSINE``). The result lives under ``cache_dir`` (the gateway passes
``<data_dir>/encoders``) in a directory named by the model's fingerprint (a hash of its files
and of `RECIPE`), filled in a temp directory and renamed into place, complete only with its
``export.json``. Nothing is downloaded.

Serving needs neither PyTorch nor sentence-transformers: the tokenizer is the model's own
``tokenizer.json`` (``tokenizers``, same truncation as sentence-transformers), the graph runs
on ONNX Runtime, and mean pooling and L2 normalization — the Pooling and Normalize modules the
model declares — are numpy. Each text runs alone by default (``run_batch`` 1), one per core
at a time: no padding, activations that stay in cache (measured here: 98 texts per CPU-second
alone, 86 in runs of 8, ~72 in runs of 64), and a vector that never depends on its batch-mates
(activations are quantized per run, so a short text batched with long ones would move).

``model_id`` is the fp32 encoder's id plus ``+int8``, so the embedding cache and the index
manifests never mix vectors of the two backends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.encoders import MINILM_MODEL_ID, _Identified, bundled_model_path, log_throughput
from embeddings.index_support import usable_cores
from embeddings.types import FloatMatrix, ModelNotFound, UnsupportedModel

log = logging.getLogger(__name__)

RECIPE = "onnx-opset17+dynamic-int8-per-channel+fp32-ffn-out-0-2-v1"
"""Names the export recipe; part of the export fingerprint (change it when the recipe changes)."""

INT8_SUFFIX = "+int8"
"""Appended to the fp32 model id: vectors of the int8 backend are another embedding version."""

MODEL_FILE = "model.int8.onnx"
EXPORT_MARKER = "export.json"

EXPORT_MIN_COSINE = 0.98
"""An export whose probe vectors fall below this cosine to the fp32 model is refused."""

PROBE_TEXTS = (
    "Light floral linen sundress for warm summer days.",
    "Black leather chelsea boots. Categories: Shoes, Women. Tags: winter, leather.",
    "A relaxed merino wool crew-neck sweater in navy, made for cold evenings and weekends.",
)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# ---------------------------------------------------------------- the model's description
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot read {path}: {exc}") from exc


class _ModelLayout:
    """Where the transformer, tokenizer and pooling settings of a sentence-transformers
    directory are, checked for what this backend supports (Transformer → mean Pooling →
    optional Normalize)."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ModelNotFound(f"no sentence-transformers model at {path}")
        self.path = path
        modules_file = path / "modules.json"
        modules: list[dict[str, Any]] = (
            _read_json(modules_file)
            if modules_file.is_file()
            else [
                {"type": "sentence_transformers.models.Transformer", "path": ""},
                {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
            ]
        )
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            raise UnsupportedModel(
                f"{path}: the int8 backend supports Transformer → Pooling [→ Normalize] models, "
                f"this one has {kinds}; use encoder_backend = 'fp32'"
            )
        self.transformer_dir = path / str(modules[0].get("path", ""))
        pooling = _read_json(path / str(modules[1].get("path", "1_Pooling")) / "config.json")
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
        if modes != ["pooling_mode_mean_tokens"]:
            raise UnsupportedModel(
                f"{path}: the int8 backend supports mean pooling only, this model uses {modes}; "
                "use encoder_backend = 'fp32'"
            )
        self.dimension = int(pooling["word_embedding_dimension"])
        self.tokenizer_file = self.transformer_dir / "tokenizer.json"
        if not self.tokenizer_file.is_file():
            raise UnsupportedModel(f"{path}: no tokenizer.json (a fast tokenizer is required)")
        st_config_file = self.transformer_dir / "sentence_bert_config.json"
        st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
        tok_config_file = self.transformer_dir / "tokenizer_config.json"
        tok_config = _read_json(tok_config_file) if tok_config_file.is_file() else {}
        limits = [
            int(v)
            for v in (st_config.get("max_seq_length"), tok_config.get("model_max_length"))
            if isinstance(v, int | float) and 0 < v < 1_000_000
        ]
        self.max_seq_length = min(limits) if limits else 512
        self.lowercase = bool(st_config.get("do_lower_case", False))
        pad = tok_config.get("pad_token", "[PAD]")
        self.pad_token = str(pad.get("content", "[PAD]") if isinstance(pad, dict) else pad)
        weights = [self.transformer_dir / f for f in _WEIGHT_FILES]
        found = [w for w in weights if w.is_file()]
        if not found:
            raise ModelNotFound(f"{path}: no model weights ({' or '.join(_WEIGHT_FILES)})")
        self.weights_file = found[0]

    def fingerprint(self) -> str:
        """sha256 over the recipe and every file that decides the vectors."""
        digest = hashlib.sha256(RECIPE.encode())
        files = [
            self.weights_file,
            self.tokenizer_file,
            self.transformer_dir / "config.json",
            self.transformer_dir / "sentence_bert_config.json",
            self.transformer_dir / "tokenizer_config.json",
            self.path / "modules.json",
        ]
        for file in files:
            if not file.is_file():
                continue
            digest.update(file.name.encode())
            with file.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


# ---------------------------------------------------------------------------- the export
FP32_MATMULS = re.compile(r"/encoder/layer\.(0|2)/output/dense/MatMul$")
"""MatMuls left in fp32: the feed-forward output projections of layers 0 and 2. Their inputs
(GELU outputs) have the widest range; keeping these two in fp32 lifts the demo catalog's
10-NN overlap with fp32 from 0.91 to 0.93 (cosine 0.995 -> 0.997) for ~13% of the speed."""


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop records logged directly on the root logger below ERROR while the block runs (the
    quantizer reports every node there, and advises a pre-processing step it does not need)."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def export_int8(model_path: Path, out_dir: Path) -> dict[str, Any]:
    """Export the transformer of ``model_path`` to ONNX, quantize it to int8 into
    ``out_dir/model.int8.onnx`` and check it against the fp32 model; returns the export facts.

    Needs PyTorch and transformers (imported here only); raises `UnsupportedModel` when the
    model does not export or the int8 vectors deviate from the fp32 ones.
    """
    import inspect

    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    layout = _ModelLayout(model_path)
    started = time.perf_counter()
    try:
        model = AutoModel.from_pretrained(
            str(layout.transformer_dir), local_files_only=True, attn_implementation="eager"
        ).eval()
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"cannot load the transformer at {layout.transformer_dir}: {exc}"
        ) from exc
    tokens = _Tokens(layout)
    with_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_types else [])

    class Hidden(torch.nn.Module):
        """The transformer's last hidden state (pooling happens outside the graph)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    # The probe texts differ in length, so the traced example has padded rows and the
    # attention-mask arithmetic stays in the graph.
    probe = tokens.batch(list(PROBE_TEXTS), with_token_types)
    example = tuple(torch.from_numpy(probe[n]) for n in names)
    fp32_file = out_dir / "model.fp32.onnx"
    dynamic = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and exporter-deprecation chatter
            # The reference first: after tracing, the module's own forward is not reliable.
            expected = _mean_pool(Hidden()(*example).numpy(), probe["attention_mask"])
            torch.onnx.export(
                Hidden(),
                example,
                str(fp32_file),
                input_names=names,
                output_names=["token_embeddings"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        graph = onnx.load(str(fp32_file), load_external_data=False).graph
        keep_fp32 = [n.name for n in graph.node if FP32_MATMULS.search(n.name)]
        with _quiet_root_logger():  # the quantizer logs every node on the root logger
            quantize_dynamic(
                str(fp32_file),
                str(out_dir / MODEL_FILE),
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep_fp32,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    except (RuntimeError, ValueError, OSError) as exc:
        raise UnsupportedModel(f"cannot export {model_path} to int8 ONNX: {exc}") from exc
    finally:
        fp32_file.unlink(missing_ok=True)
    session = _session(out_dir / MODEL_FILE)
    got = _mean_pool(session.run(None, {n: probe[n] for n in names})[0], probe["attention_mask"])
    cosines = np.sum(got * expected, axis=1)
    if float(cosines.min()) < EXPORT_MIN_COSINE:
        raise UnsupportedModel(
            f"int8 export of {model_path} deviates from the fp32 model: probe cosines "
            f"{np.round(cosines, 4).tolist()} < {EXPORT_MIN_COSINE}; use encoder_backend = 'fp32'"
        )
    return {
        "recipe": RECIPE,
        "source": str(model_path),
        "inputs": names,
        "fp32_nodes": keep_fp32,
        "probe_cosine_min": round(float(cosines.min()), 5),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cached_export(model_path: Path, cache_dir: Path) -> Path:
    """The export directory of ``model_path`` under ``cache_dir``, exporting it on first use.

    Concurrent first uses each export into their own temp directory; the first rename wins
    and the others discard theirs, so a reader only ever sees a complete export.
    """
    layout = _ModelLayout(model_path)
    target = cache_dir / f"{model_path.name}-{layout.fingerprint()[:16]}"
    if (target / EXPORT_MARKER).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to int8 ONNX under %s (once)", model_path, target)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    try:
        facts = _export_in_child(model_path, tmp)
        (tmp / EXPORT_MARKER).write_text(json.dumps(facts, indent=2), encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / EXPORT_MARKER).is_file():
                raise
        else:
            log.info("int8 export done in %.1fs: %s", facts["seconds"], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_in_child(model_path: Path, out_dir: Path) -> dict[str, Any]:
    """`export_int8` in a child Python process, so the calling process (a gateway, the demo)
    never imports PyTorch: its memory stays that of ONNX Runtime (see docs/SPEED.md)."""
    import subprocess
    import sys

    # The child imports this module from wherever the parent did (a checkout on sys.path).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-m", "embeddings.onnx_encoder", str(model_path), str(out_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        if lines[-1].startswith(_UNSUPPORTED):
            raise UnsupportedModel(lines[-1][len(_UNSUPPORTED) :])
        raise RuntimeError(f"int8 export of {model_path} failed: {lines[-1]}")
    facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return facts


_UNSUPPORTED = "UnsupportedModel: "


def _export_main(argv: list[str]) -> int:
    """``python -m embeddings.onnx_encoder MODEL_DIR OUT_DIR``: one export (see above)."""
    import sys

    try:
        facts = export_int8(Path(argv[0]), Path(argv[1]))
    except UnsupportedModel as exc:
        print(f"{_UNSUPPORTED}{exc}", file=sys.stderr)
        return 2
    print(json.dumps(facts))
    return 0


# ------------------------------------------------------------------------------ serving
class _Tokens:
    """The model's fast tokenizer with sentence-transformers' truncation, and right padding."""

    def __init__(self, layout: _ModelLayout) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(layout.tokenizer_file))
        except Exception as exc:  # tokenizers raises its own exception type
            raise ModelNotFound(f"cannot read {layout.tokenizer_file}: {exc}") from exc
        self.tokenizer.enable_truncation(max_length=layout.max_seq_length)
        self.tokenizer.no_padding()
        pad_id = self.tokenizer.token_to_id(layout.pad_token)
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.lowercase = layout.lowercase

    def batch(self, texts: list[str], with_token_types: bool) -> dict[str, np.ndarray]:
        """Token ids, attention mask (and zero token types) of ``texts``."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if with_token_types:
            batch["token_type_ids"] = np.zeros_like(ids)
        return batch


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> FloatMatrix:
    """Mean over the unmasked tokens, L2-normalized (sentence-transformers Pooling+Normalize)."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = np.sum(hidden * weights, axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def _session(model_file: Path) -> Any:
    """One ONNX Runtime session with one intra-op thread (the encoder runs texts in
    parallel instead: no spinning thread pool, and a single query stays on its thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelNotFound(f"cannot load {model_file}: {exc}") from exc


class OnnxInt8Encoder(_Identified):
    """`Encoder` running an int8 ONNX export of a sentence-transformers model (see module doc).

    ``cache_dir`` holds the export (made on first use, which needs PyTorch; later processes
    load it without PyTorch). ``threads`` is how many runs go at once, each on one thread
    (0: one per usable core); ``run_batch`` is how many texts share a run (see the module
    doc). ``model_id`` defaults to the fp32 encoder's id plus ``+int8``. Thread-safe.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: str | Path,
        model_id: str | None = None,
        threads: int = 0,
        run_batch: int = 1,
    ) -> None:
        if run_batch < 1:
            raise ValueError(f"run_batch must be >= 1, got {run_batch}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        path = Path(model_path) if model_path is not None else bundled_model_path()
        started = time.perf_counter()
        layout = _ModelLayout(path)
        self.export_dir = cached_export(path, Path(cache_dir))
        facts = _read_json(self.export_dir / EXPORT_MARKER)
        self._session = _session(self.export_dir / MODEL_FILE)
        self._inputs = [i.name for i in self._session.get_inputs()]
        if self._inputs != list(facts.get("inputs", self._inputs)):
            raise ModelNotFound(f"{self.export_dir}: graph inputs {self._inputs} != export.json")
        self._with_token_types = "token_type_ids" in self._inputs
        self._tokens = _Tokens(layout)
        self._dimension = layout.dimension
        base_id = model_id or (MINILM_MODEL_ID if model_path is None else path.name)
        self._model_id = base_id if base_id.endswith(INT8_SUFFIX) else base_id + INT8_SUFFIX
        self.model_path = path
        self.threads = threads or usable_cores()
        self.run_batch = run_batch
        log.info(
            "loaded encoder %s (d=%d, ONNX Runtime int8) from %s in %.1fs",
            self._model_id,
            self._dimension,
            self.export_dir,
            time.perf_counter() - started,
        )

    def _run(self, texts: list[str]) -> FloatMatrix:
        batch = self._tokens.batch(texts, self._with_token_types)
        hidden = self._session.run(None, batch)[0]
        return _mean_pool(hidden, batch["attention_mask"])

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> FloatMatrix:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        if len(texts) == 0:
            return out
        started = time.perf_counter()
        # Longest first, as sentence-transformers does: little padding inside a run.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = max(1, min(batch_size, self.run_batch))
        chunks = [order[i : i + step] for i in range(0, len(texts), step)]
        progress: Any = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(chunks), desc="Batches", unit="batch")

        def run(rows: np.ndarray) -> tuple[np.ndarray, FloatMatrix]:
            vectors = self._run([texts[i] for i in rows])
            if progress is not None:
                progress.update(1)
            return rows, vectors

        workers = min(self.threads, len(chunks))
        if workers <= 1:
            results: Any = map(run, chunks)
        else:  # ONNX Runtime releases the GIL while it runs a graph
            pool = ThreadPoolExecutor(workers, thread_name_prefix="int8-encode")
            results = pool.map(run, chunks)
        try:
            for rows, vectors in results:
                out[rows] = vectors
        finally:
            if workers > 1:
                pool.shutdown(wait=True, cancel_futures=True)
            if progress is not None:
                progress.close()
        if show_progress:
            log_throughput(len(texts), started)
        return out


if __name__ == "__main__":
    import sys

    sys.exit(_export_main(sys.argv[1:]))
