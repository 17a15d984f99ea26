"""The first run: `make run` from a fresh clone until the gateway answers /readyz with 200.

    python benchmarks/first_run.py [--repo .] [--keep]

Clones the repository's committed HEAD into a temporary directory (no venv, no data), runs
``make run DEMO_ARGS="--port P"`` there — the README's first command, on a free port — and polls
``/readyz``, then on until the item index and the CF model are served (``--no-warm``: stop at
ready). The make output is read line by line and time-stamped, so the phases are printed:
the venv and the install (until ``tailor demo`` starts), then each step the demo logs (generate,
import, export, encode, segments) until the server answers. The pip cache is the machine's own
(warm once anything was installed here): the target, <= 180 s, is for a warm package cache.

The baseline measured in the same run is the bare cost of the machine's installer: creating a
venv and installing the CPU PyTorch wheel alone, as the Makefile does (``--no-baseline`` skips it). The first run's
total is printed beside it as a ratio, so a busy machine shows up in both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import free_port, loadavg

TARGET_S = 180.0


def baseline_torch_install(python: str) -> float:
    """Seconds to create a venv and install the CPU PyTorch wheel from the warm cache."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([python, "-m", "venv", f"{tmp}/v"], check=True)
        subprocess.run(
            [
                f"{tmp}/v/bin/python",
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                "torch==2.13.0",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - t0


def first_run(
    repo: Path, keep: bool, timeout_s: float, until_warm: bool
) -> tuple[float, dict[str, float], list[tuple[float, str]]]:
    """Clone ``repo`` and `make run` it. Returns the seconds until /readyz answered 200, the
    seconds until each background model was served (``until_warm``), and the time-stamped log."""
    tmp = Path(tempfile.mkdtemp(prefix="tailor-first-run-"))
    clone = tmp / "tailor"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "VIRTUAL_ENV"))}
    env["TAILOR_JWT_SECRET"] = "first-run-benchmark-secret-0123456789"
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["make", "run", f"DEMO_ARGS=--port {port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip()))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    ready_at = -1.0
    served: dict[str, float] = {}
    try:
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() - t0 < timeout_s and proc.poll() is None:
                try:
                    ready = client.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.HTTPError:
                    time.sleep(0.5)
                    continue
                now = time.perf_counter() - t0
                if ready.status_code == 200 and ready_at < 0:
                    ready_at = now
                if ready_at >= 0:
                    for model, version in ready.json()["models"].items():
                        if version is not None:
                            served.setdefault(model, now)
                    if not until_warm or {"item_index", "cf"} <= served.keys():
                        break
                time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        reader.join(timeout=5)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept: {clone}")
    return ready_at, served, lines


def phases(lines: list[tuple[float, str]]) -> list[tuple[str, float]]:
    """The time stamps of the milestones, in order, from the make/demo output."""
    marks = [
        ("install done, tailor demo starts", re.compile(r"tailor demo")),
        ("events imported", re.compile(r"import events: done")),
        ("segments trained", re.compile(r"train segments: done")),
        ("server listening", re.compile(r"Uvicorn running")),
        ("(background) int8 export done", re.compile(r"int8 export done")),
        ("(background) items encoded", re.compile(r"built index")),
        ("(background) models trained", re.compile(r"trained in the background")),
    ]
    out: list[tuple[str, float]] = []
    for name, pattern in marks:
        hits = [t for t, line in lines if pattern.search(line)]
        if hits:
            out.append((name, hits[0]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--keep", action="store_true", help="keep the clone for inspection")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--log", help="write the time-stamped make output here")
    parser.add_argument(
        "--no-warm",
        action="store_true",
        help="stop at /readyz 200, not when the index and CF are served",
    )
    args = parser.parse_args()

    print(f"load average before: {loadavg()}")
    base = None if args.no_baseline else baseline_torch_install(sys.executable)
    ready_at, served, lines = first_run(Path(args.repo), args.keep, args.timeout, not args.no_warm)
    if args.log:
        Path(args.log).write_text("".join(f"{t:7.1f}s {line}\n" for t, line in lines))
    print(f"load average after: {loadavg()}")
    for name, t in phases(lines):
        print(f"  {t:7.1f} s  {name}")
    if ready_at < 0:
        tail = "\n".join(line for _, line in lines[-20:])
        raise SystemExit(f"/readyz never answered 200; the last output:\n{tail}")
    verdict = "met" if ready_at <= TARGET_S else "missed"
    print(f"first run until /readyz 200: {ready_at:.1f} s (target <= {TARGET_S:.0f} s: {verdict})")
    for model, at in sorted(served.items(), key=lambda kv: kv[1]):
        print(f"  {model} served at {at:.1f} s")
    if "background model training failed" in "\n".join(line for _, line in lines):
        raise SystemExit("the background build failed: see --log")
    if base is not None:
        print(f"baseline, venv + CPU PyTorch wheel alone: {base:.1f} s")
        print(f"first run / baseline: {ready_at / base:.2f}x")


if __name__ == "__main__":
    main()
