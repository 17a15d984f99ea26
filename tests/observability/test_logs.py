"""Logs of a real ``tailor serve`` process: in production every stderr line is one JSON object,
the access line's request id is the response's ``X-Request-ID``, loader noise stays out; on
SIGTERM it drains and exits cleanly. And the text format for terminals."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from observability.logs import JsonFormatter, TextFormatter, configure_logging, request_id
from tests.conftest import SECRET
from tests.upstream.conftest import REPO, free_port


def start_serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port)],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TAILOR_DATA_DIR": str(tmp_path / "var"),
            "TAILOR_ENCODER": "hashing",
            "TAILOR_JWT_SECRET": SECRET,
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)


@pytest.mark.slow  # a real gateway / CLI process
def test_production_logs_are_json_lines_with_the_request_id(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, port, TAILOR_PRODUCTION="1")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        r = httpx.post(f"{url}/graphql", json={"query": "{ trending(first: 2) { score } }"})
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        ingest = httpx.post(
            f"{url}/v1/events",
            json=[{"messageId": "m1", "type": "view", "anonymousId": "a1", "itemId": "i1"}],
            headers={"x-anonymous-id": "a1"},
        )
        assert ingest.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()
    assert b"Application shutdown complete" in err
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert lines
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    for doc in docs:
        assert {"ts", "level", "logger", "msg"} <= set(doc)
        assert "color_message" not in doc
    access = [d for d in docs if d["logger"] == "tailor.access" and d.get("request_id") == rid]
    assert len(access) == 1
    (line,) = access
    assert line["path"] == "/graphql" and line["status"] == 200 and line["duration_ms"] > 0
    assert line["cache"] in ("MISS", "HIT", "BYPASS")
    assert any(d["logger"] == "tailor.gateway" and "ready" in d["msg"] for d in docs)
    assert not any(d["logger"].startswith(("faiss", "httpx")) for d in docs)
    # Graceful shutdown: the acknowledged event is on disk after the process exited.
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "tailor.db") as db:
        assert db.execute("select count(*) from events").fetchone()[0] == 1


def test_text_format_and_json_format_carry_the_request_id() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        assert configure_logging("info", "json", stream=stream) == "json"
        assert configure_logging("info", "json", stream=stream) == "json"  # replaces, not adds
        token = request_id.set("rid-123")
        logging.getLogger("tailor.test").info("hello %s", "world", extra={"items": 3})
        logging.getLogger("faiss.loader").info("Loading faiss with AVX2 support.")
        request_id.reset(token)
        (line,) = stream.getvalue().splitlines()
        doc = json.loads(line)
        assert doc["msg"] == "hello world" and doc["request_id"] == "rid-123"
        assert doc["items"] == 3 and doc["level"] == "info"
        # auto: text on a terminal, JSON elsewhere or in production
        assert configure_logging("info", "auto", stream=io.StringIO()) == "json"
        assert configure_logging("info", "auto", production=True, stream=_Tty()) == "json"
        assert configure_logging("info", "auto", stream=_Tty()) == "text"
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    record = logging.makeLogRecord({"name": "tailor.x", "msg": "m", "levelname": "INFO"})
    token = request_id.set("rid-9")
    try:
        assert TextFormatter().format(record).endswith("tailor.x: m [rid-9]")
        assert json.loads(JsonFormatter().format(record))["request_id"] == "rid-9"
    finally:
        request_id.reset(token)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True
