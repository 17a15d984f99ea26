"""What experiments cost on the read path: a cached personalized query with experiments defined
vs the same gateway without, and the library's assignment rate.

    python benchmarks/experiments.py [--quick] [--samples 1000] [--rounds 3]

Two gateway processes on one data dir (the same seeded user): one serves with a definitions file
(a recommendation experiment, a flag experiment and a plain flag), the other with no file. Each
round measures sequential latency of ``me { profile ... }`` with a bearer token, answered from
the gateway's cache (``X-Cache: HIT``) -- the path where the per-request assignment (the edge
layer builds the PRIVATE key from the caller's flags and variants) weighs the most. The figure is
the median latency ratio with/without (no target in the issue; docs/EXPERIMENTS.md quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from benchmarks.edge_cache import (
    PERSONAL_QUERY,
    SERVER_ENV,
    USER,
    _ms,
    _request,
    latencies,
    seed,
)
from gateway.security.auth import issue_token


def definitions(path: Path) -> None:
    from experiments import definitions as defs_file
    from experiments.editing import create_experiment, set_flag

    defs = create_experiment(
        defs_file.Definitions(),
        "reco-ab",
        [("control", {}), ("trending", {"strategy": "trending"})],
    )
    defs = create_experiment(defs, "hero", [("old", "v1"), ("new", "v2")], feature="hero")
    defs = set_flag(defs, "banner", "spring")
    defs_file.save(path, defs)


def assignment_rate(n: int) -> float:
    """Subjects assigned per second by the library (3 features, fresh ids, no store reads)."""
    from experiments import definitions as defs_file
    from experiments.assign import Evaluator, Subject

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.json"
        definitions(path)
        evaluator = Evaluator(defs_file.load(path))
    started = time.perf_counter()
    for i in range(n):
        evaluator.evaluate(Subject(f"user-{i}", user_id=f"user-{i}"), {})
    return n / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 300 samples")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.rounds = 300, 1
    auth = {"Authorization": f"Bearer {issue_token(SECRET, USER, ttl_s=3600)}"}
    with_exp: list[float] = []
    without: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        seed(data_dir)
        exp_file = data_dir / "experiments.json"
        definitions(exp_file)
        servers = (
            ("with", {"TAILOR_EXPERIMENTS_FILE": str(exp_file)}),
            ("without", {"TAILOR_EXPERIMENTS_FILE": str(data_dir / "none.json")}),
        )
        for round_ in range(args.rounds):
            # Alternate which process goes first: the machine is shared and noisy.
            for name, env in servers if round_ % 2 == 0 else servers[::-1]:
                with gateway_process(data_dir, **env, **SERVER_ENV) as base:
                    for _ in range(3):  # new operations are first keyed PUBLIC, then per user
                        r = httpx.get(
                            base + "/graphql", params={"query": PERSONAL_QUERY}, headers=auth
                        )
                    assert r.headers["x-cache"] == "HIT", r.headers
                    host = urlsplit(base).netloc
                    req = _request("/graphql?" + urlencode({"query": PERSONAL_QUERY}), host, auth)
                    asyncio.run(latencies(base, req, 300))  # warm-up
                    xs = asyncio.run(latencies(base, req, args.samples))
                    (with_exp if name == "with" else without).extend(xs)
    rate = assignment_rate(2000 if args.quick else 20000)
    print(f"cached personal query, no experiments:        {_ms(without)}")
    print(f"cached personal query, 3 features defined:    {_ms(with_exp)}")
    print(
        "latency ratio with/without experiments (median): "
        f"{statistics.median(with_exp) / statistics.median(without):.2f}x"
    )
    print(f"library assignment: {rate:,.0f} subjects/s with 3 features ({1e6 / rate:.0f} us each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
