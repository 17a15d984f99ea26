"""The real clients against a live gateway: one ``tailor demo`` per test session, the JavaScript
examples installed from their lock file and built when stale, node scripts driven from here.

Everything runs for real: ``tailor demo`` (a small world, the hashing encoder) as a subprocess
on a free port, ``npm ci`` / ``npm run build`` of ``examples/``, Chromium (``/usr/bin/chromium``,
or ``CHROMIUM_PATH``) through playwright-core, the edge worker under Miniflare's workerd.
Screenshots and node logs go to ``artifacts/clients/`` (gitignored).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.security.auth import issue_token

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MANIFEST = EXAMPLES / "persisted-query-manifest.json"
ARTIFACTS = ROOT / "artifacts" / "clients"
SECRET = "clients-test-secret-0123456789abcdef0123456789"
PURGE_TOKEN = "edge-purge-token-0123456789abcdef"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# A small world: loads in ~15 s on 2 cores, enough users for several segments.
DEMO_USERS, DEMO_ITEMS = 120, 300
APPS = ("react-storefront", "vue-widget")
# How the CLI loads an Apollo persisted-query manifest into the gateway's store.
PQ_LOAD_COMMAND = "import"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is not on PATH: the client tests need Node.js 20.19+ and npm "
            "(Debian: apt-get install nodejs npm, or https://nodejs.org)"
        )
    return found


def _run(cmd: list[str], cwd: Path, *, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` in {cwd} exited {done.returncode}:\n{output[-6000:]}")
    return output


def _newest(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        files = path.rglob("*") if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


def _stale(target: Path, sources: list[Path]) -> bool:
    return not target.exists() or target.stat().st_mtime < _newest(sources)


@pytest.fixture(scope="session")
def examples_built() -> Path:
    """``examples/`` installed with ``npm ci`` (the committed lock file) and built, each step
    only when its inputs changed since it last ran."""
    node, npm = _tool("node"), _tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major, minor = (int(p) for p in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 19):
        pytest.fail(f"Node.js {version} is too old for the examples (Vite 8 needs 20.19+)")
    manifests = [EXAMPLES / "package-lock.json", *EXAMPLES.glob("*/package.json")]
    if _stale(EXAMPLES / "node_modules" / ".package-lock.json", manifests):
        _run([npm, "ci", "--no-audit", "--no-fund"], EXAMPLES, timeout=600)
    shared = [EXAMPLES / "operations", MANIFEST, EXAMPLES / "node_modules" / ".package-lock.json"]
    for app in APPS:
        d = EXAMPLES / app
        sources = [d / "src", d / "index.html", d / "vite.config.js", d / "package.json", *shared]
        if _stale(d / "dist" / "index.html", sources):
            _run([npm, "run", "build"], d, timeout=300)
    return EXAMPLES


@dataclass
class DemoGateway:
    """A live ``tailor demo`` on a free port, with the purge fan-out pointed at ``edge_port``."""

    url: str
    data_dir: Path
    edge_port: int
    log: Path
    users: list[str] = field(default_factory=list)

    def token(self, user: str, *scopes: str) -> str:
        return issue_token(SECRET, user, scopes=scopes, ttl_s=3600)

    @property
    def admin_token(self) -> str:
        return self.token("clients-test-admin", "admin")

    def gql(self, query: str, token: str | None = None) -> dict:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = httpx.post(f"{self.url}/graphql", json={"query": query}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert "errors" not in doc, doc
        return doc["data"]

    def segments_of_users(self) -> dict[str, str]:
        """user id -> cluster segment id, for the demo's users (one aliased query)."""
        found: dict[str, str] = {}
        for start in range(0, len(self.users), 10):  # within the gateway's query-cost limits
            fields = " ".join(
                f'u{i}: user(id: "{uid}") {{ id segment {{ id }} }}'
                for i, uid in enumerate(self.users[start : start + 10])
            )
            data = self.gql(f"{{ {fields} }}", self.admin_token)
            found.update(
                {row["id"]: row["segment"]["id"] for row in data.values() if row and row["segment"]}
            )
        return found


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli.main", *args]


def gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(
        PYTHONPATH=str(ROOT),
        TAILOR_ENCODER="hashing",
        TAILOR_JWT_SECRET=SECRET,
        **extra,
    )
    return env


@pytest.fixture(scope="session")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGateway]:
    """``tailor demo`` (small world) serving on a free port, the examples' persisted-query
    manifest imported first, shared by every client test of the session."""
    data_dir = tmp_path_factory.mktemp("clients") / "var"
    port, edge_port = free_port(), free_port()
    env = gateway_env(
        TAILOR_CDN_PURGE_URL=f"http://127.0.0.1:{edge_port}/__tailor/purge",
        TAILOR_CDN_PURGE_TOKEN=PURGE_TOKEN,
        # One segment token string per segment for 6 h: the edge test's users of one segment
        # get the same token (tokens are rounded to a quarter of their lifetime).
        TAILOR_SEGMENT_TOKEN_TTL_S="86400",
        # `tailor demo` trains CF and conversion after it starts serving; the poller's swap
        # drops every cached answer. Poll often, and start the tests after that swap.
        TAILOR_MODEL_POLL_S="0.5",
    )
    subprocess.run(
        cli("persisted-queries", PQ_LOAD_COMMAND, str(MANIFEST), "--data-dir", str(data_dir)),
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "gateway.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cli(
                "demo",
                "--users",
                str(DEMO_USERS),
                "--items",
                str(DEMO_ITEMS),
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tailor demo exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                # Ready, its background work done (the item index, CF, then conversion) and
                # the index and CF served; one more poll swaps conversion in. No swap comes
                # later to empty the caches the tests read.
                if (
                    ready.status_code == 200
                    and "trained in the background" in log.read_text()
                    and ready.json()["models"]["cf"] is not None
                    and ready.json()["models"]["item_index"] is not None
                ):
                    time.sleep(1.5)  # three model polls
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tailor demo not ready after 240 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        users_file = data_dir / "demo" / "users.jsonl"
        users = [json.loads(line)["id"] for line in users_file.read_text().splitlines()]
        yield DemoGateway(url=url, data_dir=data_dir, edge_port=edge_port, log=log, users=users)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class StaticSite:
    url: str
    server: ThreadingHTTPServer


@pytest.fixture(scope="session")
def sites(examples_built: Path) -> Iterator[dict[str, str]]:
    """Each built example served from its own origin (``http://127.0.0.1:<port>/``): a browser
    app on another origin than the gateway, as in production."""
    servers = []
    urls = {}
    for app in APPS:
        handler = functools.partial(_QuietHandler, directory=str(examples_built / app / "dist"))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[app] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium; "
            ".ci/run does it) or set CHROMIUM_PATH"
        )
    return CHROMIUM


def run_node(name: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run a node script; its output is kept in ``artifacts/clients/<name>.log``; fail on a
    non-zero exit with the output."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "TAILOR_ARTIFACTS": str(ARTIFACTS)}
    done = subprocess.run(
        [_tool("node"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    (ARTIFACTS / f"{name}.log").write_text(output)
    assert done.returncode == 0, (
        f"node {' '.join(args)} exited {done.returncode}:\n{output[-8000:]}"
    )
    return output


def assert_node_tests(output: str, passed: int) -> None:
    """The summary of ``node --test --test-reporter=spec``: every test ran and passed."""
    for line in (f"pass {passed}", "fail 0", "cancelled 0", "skipped 0", "todo 0"):
        assert f"ℹ {line}\n" in output, f"expected `{line}`:\n{output[-8000:]}"
