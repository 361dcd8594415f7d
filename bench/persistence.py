"""The engine's overhead with persistence on: time per iteration outside compile, measurement
and LLM calls, and database writes per iteration, with the event sink writing to SQLite or
PostgreSQL versus no sink at all.

    .venv/bin/python bench/persistence.py                       # SQLite (a temporary file)
    .venv/bin/python bench/persistence.py --database-url postgres://postgres@127.0.0.1:5432/colt_bench
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class TimedMeasurer:
    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def measure(self, traces, config=None, *, cutoff_s=None):
        start = time.perf_counter()
        try:
            return self.inner.measure(traces, config, cutoff_s=cutoff_s)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self):
        self.inner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--kernel", default="gemm-128")
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="colt-bench-")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "colt_site.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        import psycopg

        cfg = connection.settings_dict
        with psycopg.connect(
            host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')
            admin.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    call_command("migrate", verbosity=0)

    from bench._report import table, write_section
    from search import services
    from search.engine import events as ev
    from search.engine.measure import LocalMeasurer, MeasureConfig
    from search.engine.request import Budget, RunRequest, SearchSettings
    from search.engine.tuning import tune
    from search.engine.workloads import get_kernel

    spec = get_kernel(args.kernel)
    timing = MeasureConfig(number=1, repeat=2, min_repeat_ms=0)
    settings = SearchSettings(seed=1)
    request = RunRequest(kernel=spec, budget=Budget(trials=args.trials), settings=settings, timing=timing).checked()
    measurer = TimedMeasurer(LocalMeasurer(spec, "llvm", timing))
    measurer.measure([None])  # warm the worker process
    rows = []

    # 1. no persistence: the engine alone
    measurer.seconds = 0.0
    sink = ev.ListSink()
    start = time.perf_counter()
    outcome = tune(request, sink=sink, measurer=measurer)
    total = time.perf_counter() - start
    engine = (total - measurer.seconds) / outcome.result.expansions
    rows.append(
        ["none (events kept in memory)", outcome.result.expansions, len(sink.events), "-", f"{engine * 1e3:.1f}", "-"]
    )

    # 2. the database sink
    queries = {"n": 0, "writes": 0}

    def count(execute, sql, params, many, context):
        queries["n"] += 1
        if not sql.lstrip().upper().startswith("SELECT"):
            queries["writes"] += 1
        return execute(sql, params, many, context)

    run = services.create_run(request, enqueue=False)
    measurer.seconds = 0.0
    with connection.execute_wrapper(count):
        start = time.perf_counter()
        outcome = services.execute_run(run.pk, measurer=measurer)
        total = time.perf_counter() - start
    run.refresh_from_db()
    persisted = (total - measurer.seconds) / outcome.result.expansions
    rows.append(
        [
            f"{connection.vendor} ({'file' if connection.vendor == 'sqlite' else '127.0.0.1'})",
            outcome.result.expansions,
            run.last_seq,
            f"{queries['writes'] / outcome.result.expansions:.1f}",
            f"{persisted * 1e3:.1f}",
            f"{(persisted - engine) * 1e3:+.1f}",
        ]
    )
    measurer.close()
    headers = [
        "event sink",
        "iterations",
        "events",
        "DB writes / iteration",
        "engine ms / iteration",
        "persistence ms / iteration",
    ]
    md = table(headers, rows)
    print(md)
    if not args.no_docs:
        section = f"persistence-{connection.vendor}"
        write_section(
            section,
            f"### Engine overhead with persistence on ({connection.vendor})\n\n"
            f"`bench/persistence.py` on {args.kernel}, mcts-random, {args.trials} trials, measured "
            f"{time.strftime('%Y-%m-%d')}. Engine time = wall time minus time in the measurer "
            "(compile + run), divided by iterations (expansions).\n\n" + md,
        )


if __name__ == "__main__":
    main()
