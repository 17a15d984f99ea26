"""Start a real gateway process on loopback for benchmarks (and stop it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SECRET = "benchmark-secret-0123456789abcdef0123456789"


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages, printed beside every figure (the machine is shared)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway_process(data_dir: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {
        **os.environ,
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_DATA_DIR": str(data_dir),
        "TAILOR_PORT": str(port),
        "TAILOR_LOG_LEVEL": "warning",
        **env,
    }
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "serve"], env=environ)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gateway did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
