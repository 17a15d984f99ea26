"""The container image cannot be built here: its Dockerfile and .dockerignore are parsed and
held to the properties the README promises (multi-stage, dependencies in a cached layer before
the code, CPU PyTorch, no build tools at run time, non-root, HEALTHCHECK on /readyz)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "python3-dev", "git")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions of a Dockerfile (comments dropped, continuation lines joined), by stage."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "a continuation line ends the file"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda v: args[v[1]], m[1])
            stages.append(Stage(base, m[2]))
        else:
            assert stages, f"{op} before FROM"
            stages[-1].instructions.append((op, rest.strip()))
    return args, stages


def test_dockerfile_is_multi_stage_non_root_and_checks_readiness() -> None:
    _args, stages = parse((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name == "build" and runtime.name == "runtime"
    assert build.base == runtime.base and "slim" in runtime.base
    ops = [op for op, _ in build.instructions]
    runs = build.all("RUN")
    # CPU PyTorch, from the CPU index, before anything could pull the CUDA build.
    torch = next(i for i, r in enumerate(runs) if "torch" in r)
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    # Dependencies in their own layer: only pyproject.toml is copied before they install,
    # the code after.
    copies = [(i, a) for i, (op, a) in enumerate(build.instructions) if op == "COPY"]
    first_copy, first_args = copies[0]
    assert first_args.split()[:-1] == ["pyproject.toml"]
    deps = next(
        i for i, (op, a) in enumerate(build.instructions) if op == "RUN" and "requirements" in a
    )
    code = next(i for i, a in copies if a.startswith(". "))
    assert first_copy < deps < code
    assert "--no-deps" in next(a for op, a in build.instructions[code:] if op == "RUN")
    assert ops.index("RUN") < first_copy  # torch and the build tools before any COPY
    # Run time: the build's virtualenv, no build tools, a non-root user, readiness check.
    assert any("--from=build" in a for a in runtime.all("COPY"))
    for run in runtime.all("RUN"):
        installed = re.findall(r"apt-get install[^&]*", run)
        for tool in BUILD_TOOLS:
            assert not any(re.search(rf"\b{re.escape(tool)}\b", part) for part in installed), tool
        assert "pip install" not in run
    (user,) = runtime.all("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    assert any("useradd" in r and user in r for r in runtime.all("RUN"))
    (health,) = runtime.all("HEALTHCHECK")
    assert "/readyz" in health and "--interval=" in health
    (cmd,) = runtime.all("CMD")
    assert cmd == '["tailor", "serve"]'
    assert "8000" in runtime.all("EXPOSE")[0]


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.lstrip("*/")) for p in patterns
        )

    for heavy in (".git", ".venv", "var", "tests", "benchmarks", ".mypy_cache"):
        assert ignored(heavy), heavy
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for needed in ["pyproject.toml", project["project"]["readme"], *packages]:
        assert (ROOT / needed).exists(), needed
        assert not ignored(needed), f"{needed} is needed by `pip install .`"
