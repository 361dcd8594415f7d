"""What independent restarts would have found, read off the stored rows' progress curves.

A run's first t trials are a run of t trials (nothing in the search depends on the budget), so
the best a run had after 32 of its 64 trials is what a 32-trial run of that seed finds. For every
cell (machine, layer, strategy, settings) with at least ``parts`` seeds at a budget of 64 trials,
this compares the cell's median best at 64 trials with the median, over every combination of
``parts`` of its seeds, of the fastest of their bests at 64 / ``parts`` trials: the same
measurements spent on ``parts`` independent searches instead of one. Above 1: the restarts would
have been faster. The slowest seed is compared the same way (the cell's slowest best at 64
against the slowest combination). Bests are as run (a curve holds no retimed points)::

    .venv/bin/python bench/halves.py              # two halves, every cell of the tree strategies
    .venv/bin/python bench/halves.py --parts 3 --layers flux-attention llama3-8b-attention

The ``restarts`` setting (search/engine/mcts.py) is the lever this estimates, with one
difference in its favour: its later epochs start with the cost model trained on the earlier
ones' records, where these independent runs start cold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import table  # noqa: E402
from bench.ablation import load  # noqa: E402
from bench.strategies import machine  # noqa: E402

TRIALS = 64


def best_at(row: dict, trials: int) -> float | None:
    """The best latency the row had measured after ``trials`` trials (None: nothing by then)."""
    best = None
    for point in row.get("curve") or []:
        if point[0] > trials:
            break
        best = point[1]
    return best


def cells(store: dict, strategies: tuple[str, ...], layers: list[str] | None) -> dict[tuple, dict[int, dict]]:
    """Rows at 64 trials (no wall-clock budget), by (machine, layer, strategy, settings as run), by seed."""
    out: dict[tuple, dict[int, dict]] = {}
    for row in store.values():
        if row.get("trials_budget") != TRIALS or row.get("wall_budget_s") or row.get("strategy") not in strategies:
            continue
        if layers and row["layer"] not in layers:
            continue
        if (row.get("settings") or {}).get("restarts"):
            continue  # already split into epochs: its 64 trials are not one search
        key = (machine(row["host"]), row["layer"], row["strategy"], json.dumps(row.get("settings"), sort_keys=True))
        out.setdefault(key, {})[row["seed"]] = row
    return out


def compare(rows: dict[int, dict], parts: int) -> dict | None:
    """One cell: its median and slowest best at 64 trials against those of ``parts`` independent
    runs of 64 / ``parts`` trials (every combination of its seeds); None with too few seeds."""
    seeds = sorted(rows)
    if len(seeds) < parts:
        return None
    full = [best_at(rows[s], TRIALS) for s in seeds]
    part = [best_at(rows[s], TRIALS // parts) for s in seeds]
    if any(b is None for b in full + part):
        return None
    combos = [min(part[i] for i in c) for c in itertools.combinations(range(len(seeds)), parts)]
    return {
        "seeds": len(seeds),
        "median": statistics.median(full),
        "restarts_median": statistics.median(combos),
        "worst": max(full),
        "restarts_worst": max(combos),
    }


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, default=2, help="independent runs the 64 trials are split into")
    ap.add_argument("--strategies", nargs="+", default=["mcts-random", "colt"])
    ap.add_argument("--layers", nargs="+", default=None)
    args = ap.parse_args(argv)
    if args.parts < 2 or TRIALS % args.parts:
        ap.error(f"--parts must be at least 2 and divide {TRIALS}")
    lines, groups = [], {}
    for (host, layer, strategy, _), rows in sorted(cells(load(), tuple(args.strategies), args.layers).items()):
        got = compare(rows, args.parts)
        if got is None:
            continue
        speed, worst = got["median"] / got["restarts_median"], got["worst"] / got["restarts_worst"]
        group = groups.setdefault("attention" if "attention" in layer else "other layers", ([], []))
        group[0].append(speed)
        group[1].append(worst)
        lines.append(
            [
                host,
                layer,
                strategy,
                str(got["seeds"]),
                f"{got['median'] * 1e3:.3f}",
                f"{got['restarts_median'] * 1e3:.3f}",
                f"{speed:.2f}x",
                f"{worst:.2f}x",
            ]  # fmt: skip
        )
    n = TRIALS // args.parts
    out = table(
        [
            "machine",
            "layer",
            "strategy",
            "seeds",
            "median best @64 ms",
            f"median best of {args.parts} x {n} ms",
            "speed",
            "slowest seed",
        ],  # fmt: skip
        lines,
    )
    summary = table(
        ["layers", "cells", "speed (geometric mean)", "slowest seed (geometric mean)", "cells faster"],
        [
            [name, str(len(s)), f"{geomean(s):.2f}x", f"{geomean(w):.2f}x", str(sum(x > 1 for x in s))]
            for name, (s, w) in sorted(groups.items())
        ],  # fmt: skip
    )
    text = f"{out}\n\n{summary}"
    print(text)
    return text


if __name__ == "__main__":
    main()
