"""The search's own time: the tree search with and without its memories, on every layer.

Apart from building and timing candidates, a tree strategy spends its time realizing schedules
(replaying a mutated trace and post-processing it) and scoring them with the cost model. Screening
and refine draw many of the same mutants again: ``SearchSpace.realize`` remembers each trace's
outcome and answers the ones the caller would discard without replaying them, and the cost model
keeps each schedule's features (``SearchSpace.remember`` switches both). This runs the
product's default search (mcts-random, every lever as the product sets it) twice per layer and
seed, with the memories off and on, against a stand-in measurer whose latency is a fixed function
of the schedule: both runs make the same tree node for node (checked), so the time apart is the
memories' alone, without the run-to-run noise of real timings (the equal wall-clock rows measure
what it buys on real hardware). One stream per core; each row is saved as it finishes
(``bench/results/overhead.json``, with its host and machine)::

    taskset -c 1 .venv/bin/python bench/overhead.py --trials 16 --seeds 0 1
    .venv/bin/python bench/overhead.py --report --docs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _store  # noqa: E402
from bench._report import table, write_section  # noqa: E402
from bench.forms import bench_kernel  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402
from search.engine.compiler import SearchSpace  # noqa: E402
from search.engine.measure import MeasureResult  # noqa: E402
from search.engine.request import Budget, RunRequest, SearchSettings  # noqa: E402
from search.engine.tuning import tune  # noqa: E402
from search.engine.workloads import PAPER_LAYERS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"


class StandIn:
    """A measurer whose latency is a fixed function of the schedule (1-11 ms): the search's own
    time alone, and the same choices in every run of a seed."""

    def measure(self, traces, config=None, *, cutoff_s=None):
        digests = (hashlib.sha1(json.dumps(t).encode()).digest() for t in traces)
        return [MeasureResult("ok", 1e-3 * (1 + int.from_bytes(d[:4]) % 1000 / 100)) for d in digests]

    def close(self):
        pass


def one(layer: str, seed: int, trials: int, memory: bool) -> dict:
    SearchSpace.remember = memory
    request = RunRequest(
        kernel=bench_kernel(layer),
        strategy="mcts-random",
        budget=Budget(trials=trials),
        settings=SearchSettings(seed=seed),
    ).checked()
    started = time.perf_counter()
    outcome = tune(request, measurer=StandIn(), baseline_latency=0.1)
    wall = time.perf_counter() - started
    tree = hashlib.sha1("".join(n.shash or "" for n in outcome.result.tree.nodes).encode()).hexdigest()[:16]
    return {
        "wall_s": wall,
        "replays": outcome.space.replays,
        "replays_saved": outcome.space.replays_saved,
        "evaluations": outcome.result.evaluations,
        "extractions": outcome.result.extractions,
        "nodes": len(outcome.result.tree) - 1,
        "tree": tree,
    }


def load() -> list[dict]:
    return _store.read(RESULTS, [])


def save(row: dict) -> None:
    _store.update(RESULTS, [], lambda rows: [*rows, row])


def run(args) -> None:
    host = host_info()
    for seed in args.seeds:
        for layer in args.kernels:
            runs = {}
            for memory in (False, True):  # off first: the machine's state favours neither
                runs["on" if memory else "off"] = one(layer, seed, args.trials, memory)
            row = {"host": host, "layer": layer, "seed": seed, "trials": args.trials, **runs,
                   "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
            save(row)
            off, on = runs["off"], runs["on"]
            print(
                f"{layer} seed {seed}: {off['wall_s']:.0f} s -> {on['wall_s']:.0f} s "
                f"({on['wall_s'] / off['wall_s']:.2f}x), {on['replays_saved']} of {off['replays']} replays saved, "
                f"{on['extractions']} of {on['evaluations']} scored schedules' features extracted, "
                f"same tree: {off['tree'] == on['tree']}",
                flush=True,
            )


def report() -> str:
    rows = load()
    out = []
    for where, trials in sorted({(machine(r["host"]), r["trials"]) for r in rows}):
        for layer in PAPER_LAYERS:
            rs = [r for r in rows if machine(r["host"]) == where and r["layer"] == layer and r["trials"] == trials]
            if not rs:
                continue
            ratios = [r["on"]["wall_s"] / r["off"]["wall_s"] for r in rs]
            saved = [r["on"]["replays_saved"] / r["off"]["replays"] for r in rs]
            out.append([
                where, layer, ", ".join(str(r["seed"]) for r in rs), str(rs[0]["trials"]),
                f"{statistics.median(r['off']['wall_s'] for r in rs):.0f}",
                f"{statistics.median(r['on']['wall_s'] for r in rs):.0f}",
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{statistics.median(saved):.0%}",
                f"{statistics.median(1 - r['on']['extractions'] / max(1, r['on']['evaluations']) for r in rs):.0%}",
                f"{statistics.median(r['on']['evaluations'] / r['trials'] for r in rs):.0f}",
                "yes" if all(r["on"]["tree"] == r["off"]["tree"] for r in rs) else "NO",
            ])  # fmt: skip
    head = [
        "host", "layer", "seeds", "trials", "search s, memory off (median)", "memory on",
        "time on / off: median (min-max)", "replays saved", "feature extractions saved", "cost-model evals / trial",
        "same tree",
    ]  # fmt: skip
    return table(head, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", nargs="+", default=list(PAPER_LAYERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    parser.add_argument("--docs", action="store_true", help="with --report: write it into docs/benchmarks.md")
    args = parser.parse_args()
    if not args.report:
        run(args)
        return
    body = report()
    print(body)
    if args.docs:
        write_section("overhead", "### The search's own time: replay and feature memories\n\n" + LEAD + "\n\n" + body)


LEAD = (
    "Produced by `bench/overhead.py` (rows in `bench/results/overhead.json`): mcts-random with the product's "
    "defaults, run twice per layer and seed against a stand-in measurer whose latency is a fixed function of "
    "the schedule, with the search's memories off and on (`SearchSpace.realize` remembers each trace's "
    "outcome, the cost model each schedule's features); both runs build the same tree node for node (last "
    "column), so the time apart is the memories'. `search s`: the whole run, which here is the search's own "
    "work (realizing schedules and scoring them), with no building or timing. One stream per core."
)


if __name__ == "__main__":
    main()
