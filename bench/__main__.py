"""`python -m bench [--quick]`: every benchmark scenario, figures printed as ratios against same-run baselines.

(a) rebuild throughput per view vs merely reading and decoding the log, on SQLite and PostgreSQL;
(b) at scale on PostgreSQL: queue page, as-of read and region statistics latency (p50/p99, in-process) vs a bare
    indexed SELECT of the same rows;
(c) registry data matching of 1,000,000 applications against 1,000,000 registry entries vs a plain hash join of the
    same keys, with the scenario's peak resident memory (bench/matching.py);
(d) the command path: commands/s through CaseService vs bare appends of the same events and raw driver inserts,
    on SQLite and PostgreSQL (bench/command_path.py);
(e) HTTP: commands and queries/s through zizhu serve with concurrent clients, p50/p99, vs in-process
    (bench/http_load.py);
(f) the annual cycle of one region on PostgreSQL through the batch services, events/s vs bare batched appends
    (bench/annual_cycle.py);
(g) memory: peak RSS of zizhu serve under the HTTP load and of a full rebuild (bench/memory.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from adapters.logs import configure_logging
from bench import annual_cycle, command_path, http_load, matching, memory, rebuild, scale
from bench.harness import say
from projections.runner import REBUILD_BATCH


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every scenario at a small size (well under a minute)")
    parser.add_argument("--only", choices=["rebuild", "scale", "matching", "command", "http", "annual", "memory"],
                        help="run one scenario")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append",
                        help="for (a), (d) and (e); default both")
    parser.add_argument("--rebuild-cases", type=int, help="cases for (a) (default 20,000; quick 1,000)")
    parser.add_argument("--scale-cases", type=int, help="cases for (b) (default 1,000,000; quick 3,000)")
    parser.add_argument("--samples", type=int, help="timed calls per query kind in (b) (default 2,000; quick 300)")
    parser.add_argument("--view", action="append", help="for (a): only this view (repeatable); default all")
    parser.add_argument("--repeats", type=int, help="runs per view in (a), best kept (default 3; quick 2)")
    parser.add_argument("--batch-size", type=int, default=REBUILD_BATCH,
                        help=f"events per rebuild transaction (default {REBUILD_BATCH:,}, as zizhu rebuild)")
    parser.add_argument("--commands-students", type=int, help="students for (d) (default 2,000; quick 30)")
    parser.add_argument("--annual-students", type=int, help="students for (f) (default 10,000; quick 100)")
    parser.add_argument("--annual-workers", type=int,
                        help="processes working on (f)'s schools at once (default: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    args = parser.parse_args()
    configure_logging("WARNING")

    quick = args.quick
    rebuild_cases = args.rebuild_cases or (1_000 if quick else 20_000)
    scale_cases = args.scale_cases or (3_000 if quick else 1_000_000)
    samples = args.samples or (300 if quick else 2_000)
    say(f"zizhu benchmarks{' (quick)' if quick else ''} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} (other work on the machine "
        "slows baseline and subject alike, but not always at the same moment)")
    began = time.perf_counter()
    if args.only in (None, "rebuild"):
        for backend in args.backend or ["sqlite", "postgres"]:
            rebuild.run_backend(backend, rebuild_cases, args.batch_size, per_event_sample=200 if quick else 2_000,
                                repeats=args.repeats or (2 if quick else 3), keep=args.keep, views=args.view)
    if args.only in (None, "scale"):
        scale.run(scale_cases, samples, batch_size=args.batch_size, keep=args.keep)
    if args.only in (None, "matching"):
        matching.run(quick)
    backends = tuple(args.backend) if args.backend else None
    if args.only in (None, "command"):
        command_path.run(quick, backends=backends or ("sqlite", "postgres"), students=args.commands_students)
    if args.only in (None, "http"):
        http_load.run(quick, backends=backends)
    if args.only in (None, "annual"):
        annual_cycle.run(quick, students=args.annual_students, workers=args.annual_workers)
    if args.only in (None, "memory"):
        memory.run(quick)
    say(f"\nall scenarios took {time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
