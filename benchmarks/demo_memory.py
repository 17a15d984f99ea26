"""Peak memory of `tailor demo`: the int8 ONNX encoder backend against the fp32 PyTorch one.

    python benchmarks/demo_memory.py [--items 1000] [--users 400] [--wait-models 300]

Runs `tailor demo` twice in one go, each in a fresh data dir and serving on a free port: once
with ``TAILOR_ENCODER_BACKEND=fp32`` (the baseline: sentence-transformers on PyTorch) and once
with ``int8`` (ONNX Runtime; its one-time export runs in a child process, so the demo process
never imports PyTorch). For each it waits until /readyz answers 200, then until the
background-trained CF model is served (or ``--wait-models`` seconds), and reads the demo
process's peak resident set (``VmHWM`` in /proc/<pid>/status) and its resident set at that
point. Prints both and the int8 / fp32 ratio. The default world is smaller than `make run`'s
(5,000 items, 2,000 users) so the script takes a few minutes; pass the full sizes to measure
exactly what `make run` holds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, free_port


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def measure(backend: str, items: int, users: int, wait_models_s: float) -> dict[str, float]:
    """Run `tailor demo` with ``backend``; returns peak and current RSS in MB and timings."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "TAILOR_JWT_SECRET": SECRET,
            "TAILOR_ENCODER_BACKEND": backend,
            "TAILOR_LOG_LEVEL": "warning",
            "TAILOR_MODEL_POLL_S": "2",
        }
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "demo",
            "--data-dir",
            str(Path(tmp) / "var"),
            "--port",
            str(port),
            "--items",
            str(items),
            "--users",
            str(users),
        ]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            ready_s = models_s = None
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"tailor demo ({backend}) exited with {proc.returncode}")
                try:
                    r = httpx.get(f"{base}/readyz", timeout=2)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 200:
                    if ready_s is None:
                        ready_s = time.monotonic() - started
                    if r.json()["models"]["cf"] is not None:
                        models_s = time.monotonic() - started
                        break
                    if time.monotonic() - started - ready_s > wait_models_s:
                        break
                time.sleep(0.5)
            return {
                "peak_mb": _status_kb(proc.pid, "VmHWM") / 1024,
                "rss_mb": _status_kb(proc.pid, "VmRSS") / 1024,
                "ready_s": ready_s,
                "models_s": models_s if models_s is not None else float("nan"),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument(
        "--wait-models", type=float, default=300, help="seconds to wait for the CF model"
    )
    args = parser.parse_args()
    print(f"tailor demo, {args.items} items, {args.users} users; load {os.getloadavg()[0]:.1f}")
    results = {}
    for backend in ("fp32", "int8"):
        m = measure(backend, args.items, args.users, args.wait_models)
        results[backend] = m
        print(
            f"{backend}: peak RSS {m['peak_mb']:,.0f} MB, RSS {m['rss_mb']:,.0f} MB once the "
            f"models are served; ready after {m['ready_s']:.0f} s, CF served after "
            f"{m['models_s']:.0f} s",
            flush=True,
        )
    ratio = results["int8"]["peak_mb"] / results["fp32"]["peak_mb"]
    print(
        f"RESULT peak RSS int8 / fp32: {ratio:.2f} "
        f"({results['fp32']['peak_mb'] - results['int8']['peak_mb']:,.0f} MB less)"
    )


if __name__ == "__main__":
    main()
