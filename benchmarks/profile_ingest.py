"""Where ingestion spends its CPU: a pyinstrument profile of the pipeline behind POST /v1/events.

    python benchmarks/profile_ingest.py [--events 40000] [--group 4000] [--flat] [--no-profile]

Runs, in one thread and in-process (so one profile covers both halves), what the gateway does
per request and per write group: body parsing (`gateway.routes.parse_event_body`), validation
and consent (`IngestionService.validate`), then the writer's group transaction
(`IngestionService._write_group`: dedup lookup, INSERT, profile updates, COMMIT, listeners) on
the services `gateway.wiring.build_services` builds, over a real SQLite file, then each
request's answer (`IngestionService._fill`, `BatchResult.as_json`, the encoding). The events are
benchmarks/ingest.py's clickstream. Prints the CPU time of each stage (the thread's own time)
and pyinstrument's call tree (``--flat``: functions by their own time; ``--no-profile``: the
split only, without the profiler's overhead). The ASGI server and the GIL hand-over between the event loop and
the writer thread are not in this profile: benchmarks/ingest.py measures those end to end.
Needs pyinstrument (a dev dependency).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from pyinstrument import Profiler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import make_events
from gateway.routes import parse_event_body
from gateway.settings import load_settings
from gateway.wiring import build_services
from profiles.types import BatchResult, EventResult
from storage.types import EventRecord


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    parser.add_argument("--group", type=int, default=4000, help="events per write group")
    parser.add_argument("--flat", action="store_true", help="functions by own time")
    parser.add_argument("--no-profile", action="store_true", help="the stage split only")
    args = parser.parse_args()
    events = make_events(args.events)
    bodies = [orjson.dumps(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(load_settings(environ={}, data_dir=Path(tmp)))
        ingest = services.ingest
        # As the gateway does once started (gateway/app.py): the heap built so far (here also
        # this script's bodies) is moved out of the collector's way.
        gc.collect()
        gc.freeze()
        profiler = Profiler(interval=0.0005)
        validate_s = write_s = answer_s = 0.0
        group: list[EventRecord] = []
        waiting: list[tuple[list[EventResult | None], list[int], list[EventRecord]]] = []
        if not args.no_profile:
            profiler.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        clock = time.thread_time
        for n, body in enumerate(bodies, start=1):
            t = clock()
            results, positions, records = ingest.validate(
                parse_event_body("application/json", body)
            )
            validate_s += clock() - t
            group.extend(records)
            waiting.append((results, positions, records))
            if len(group) >= args.group or n == len(bodies):
                t = clock()
                with ingest._lock:  # what the writer thread holds around a group
                    outcomes = ingest._write_group(group)
                write_s += clock() - t
                t = clock()
                pos = 0
                for results, positions, records in waiting:
                    ingest._fill(results, positions, records, outcomes[pos : pos + len(records)])
                    pos += len(records)
                    done = BatchResult([r for r in results if r is not None])
                    orjson.dumps(done.as_json())
                answer_s += clock() - t
                group, waiting = [], []
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if not args.no_profile:
            profiler.stop()
        services.store.close()
        gc.unfreeze()
    n = args.events
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(
        f"{n / elapsed:,.0f} events/s in one thread, {cpu / n * 1e6:.1f} us CPU/event: "
        f"parse+validate+consent {validate_s / n * 1e6:.1f} us/event, "
        f"write group {write_s / n * 1e6:.1f} us/event, answer {answer_s / n * 1e6:.1f} us/event"
    )
    if not args.no_profile:
        print(profiler.output_text(unicode=False, color=False, show_all=False, flat=args.flat))


if __name__ == "__main__":
    main()
