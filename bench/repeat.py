"""The same run again: how far apart two runs of one layer, strategy, configuration and seed land.

Same-seed pairs (``bench/pairs.py``) read a lever as the ratio of two runs that differ only in
that lever. Timings vary 10-15% run to run, the cost model trains on them and picks the next
candidates from them, so two runs of the *same* settings and seed may part ways too; this
measures how much, as the floor under every same-seed pair. Each repeat is saved as it finishes
(``bench/results/repeat.json``, with its host and machine), with the schedules it measured in
order, so the trial at which two repeats first measured different schedules shows when they parted::

    taskset -c 0 .venv/bin/python bench/repeat.py --kernel deepseek-r1-moe --strategy mcts-random --repeats 3
    .venv/bin/python bench/repeat.py --report
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _store  # noqa: E402
from bench._report import table  # noqa: E402
from bench.ablation import CONFIGS, settings_for  # noqa: E402
from bench.forms import bench_kernel  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402
from search.engine import events as ev  # noqa: E402
from search.engine.request import Budget, RunRequest  # noqa: E402
from search.engine.strategies import STRATEGIES  # noqa: E402
from search.engine.tuning import tune  # noqa: E402
from search.services import load_fleet, local_servers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "repeat.json"


class Order:
    """The nodes in the order they were measured."""

    def __init__(self):
        self.measured: list[int] = []

    def emit(self, event):
        if isinstance(event, ev.NodeMeasured):
            self.measured.append(event.node_id)


def load() -> list[dict]:
    return _store.read(RESULTS, [])


def save(row: dict) -> None:
    _store.update(RESULTS, [], lambda rows: [*rows, row])


def run(args) -> None:
    uses_llm = STRATEGIES[args.strategy].uses_llm
    fleet = load_fleet("local") if uses_llm else None
    host = host_info()
    with local_servers(uses_llm):
        for i in range(args.repeats):
            request = RunRequest(
                kernel=bench_kernel(args.kernel),
                strategy=args.strategy,
                budget=Budget(trials=args.trials),
                settings=settings_for(args.config, args.seed),
                fleet=fleet,
            ).checked()
            order = Order()
            started = time.perf_counter()
            outcome = tune(request, sink=order)
            tree = getattr(outcome.result, "tree", None)
            nodes = tree.nodes if tree else []
            row = {
                "host": host,
                "layer": args.kernel,
                "strategy": args.strategy,
                "config": args.config,
                "seed": args.seed,
                "trials": args.trials,
                "best_s": outcome.result.best_latency,
                "wall_s": time.perf_counter() - started,
                "schedules": [nodes[n].shash for n in order.measured] if nodes else [],
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            save(row)
            print(f"{args.kernel} {args.strategy} {args.config} seed {args.seed}, repeat {i}: "
                  f"{(row['best_s'] or 0) * 1e3:.3f} ms in {row['wall_s']:.0f} s", flush=True)  # fmt: skip


def parted(a: list, b: list) -> int | None:
    """The first trial (1-based) at which two runs measured different schedules (one stopping
    before the other counts); None: the same schedules throughout."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) + 1 if len(a) != len(b) else None


def report(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(
            (machine(r["host"]), r["layer"], r["strategy"], r["config"], r["seed"], r["trials"]), []
        ).append(r)
    out = []
    for (host, layer, strategy, config, seed, trials), rs in sorted(groups.items()):
        bests = [r["best_s"] * 1e3 for r in rs if r["best_s"]]
        if not bests:
            continue
        firsts = [parted(a["schedules"], b["schedules"]) for i, a in enumerate(rs) for b in rs[i + 1 :]]
        known = [f for f in firsts if f is not None]
        out.append([
            host, layer, f"{strategy}@{trials}", config, seed, len(bests),
            f"{statistics.median(bests):.3f} ({min(bests):.3f}-{max(bests):.3f})", f"{max(bests) / min(bests):.2f}x",
            ("never" if not known else f"{min(known)}-{max(known)}") if firsts else "-",
        ])  # fmt: skip
    headers = ["host", "layer", "strategy", "config", "seed", "runs", "best ms: median (min-max)", "max / min",
               "first trial that differs"]  # fmt: skip
    return table(headers, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="deepseek-r1-moe")
    parser.add_argument("--strategy", default="mcts-random", choices=list(STRATEGIES))
    parser.add_argument("--config", default="default", choices=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    args = parser.parse_args()
    if args.report:
        print(report(load()))
    else:
        run(args)


if __name__ == "__main__":
    main()
