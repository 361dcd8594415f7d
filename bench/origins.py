"""Where each cell's measured schedules came from: the root samples, the tree's expansions (a
mutator from the prior, or an LLM's proposal), or refine's mutants of the fastest measured.

Reads the ``origins`` that ``bench/ablation.py`` records with every row since 2026-12-06 (told
from the search's events, ``bench.strategies.CallTimer``) and prints, per (layer, strategy,
configuration) on one machine, summed over the cell's seeds: the share of measured candidates
per origin, the measurements that set a new best per origin, and how many runs' final best came
from each::

    .venv/bin/python bench/origins.py                          # this machine
    .venv/bin/python bench/origins.py --host znver4-a29ef1 --configs default default+llm2 --docs
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import table, write_section  # noqa: E402
from bench.ablation import load  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402

#: the origins in the order a run adds them; each LLM's nodes count together as ``llm``
KINDS = ("sample", "prior", "llm", "refine", "llm-refine")


def kind(origin: str) -> str:
    return origin.split(":")[0] if origin.startswith(("llm:", "llm-refine:")) else origin


def cells(store: dict, host: str, configs: list[str] | None = None) -> dict[tuple[str, str, str], list[dict]]:
    """The rows of machine ``host`` that recorded their origins, by (layer, strategy, configuration)."""
    out: dict = {}
    for r in store.values():
        if machine(r["host"]) != host or not r.get("origins") or r.get("wall_budget_s"):
            continue
        if configs and r["config"] not in configs:
            continue
        out.setdefault((r["layer"], r["strategy"], r["config"]), []).append(r)
    return out


def summarize(rows: list[dict]) -> dict:
    """Summed over ``rows``: measured and improved counts per kind of origin, and the final bests'."""
    measured, improved = Counter(), Counter()
    for r in rows:
        for origin, c in r["origins"]["by"].items():
            measured[kind(origin)] += c["measured"]
            improved[kind(origin)] += c["improved"]
    bests = Counter(kind(r["origins"]["best"]) for r in rows if r["origins"]["best"])
    return {"measured": measured, "improved": improved, "bests": bests}


def row_of(key: tuple[str, str, str], rows: list[dict]) -> list[str]:
    s = summarize(rows)
    total = sum(s["measured"].values()) or 1
    others = sorted(set(s["measured"]) - set(KINDS))  # warm seeds, scouts, random picks

    def share(k: str) -> str:
        return f"{100 * s['measured'][k] / total:.0f}%"

    improved = ", ".join(f"{k} {s['improved'][k]}" for k in (*KINDS, *others) if s["improved"][k])
    bests = ", ".join(f"{k} {n}" for k, n in s["bests"].most_common())
    seeds = ", ".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
    other = "; ".join(f"{k} {share(k)}" for k in others)
    return [*key, seeds, *(share(k) for k in KINDS), other or "-", improved or "-", bests or "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None, help="the machine (default: this one)")
    parser.add_argument("--configs", nargs="+", default=None, help="only these configurations")
    parser.add_argument("--docs", action="store_true", help="write the table into docs/benchmarks.md (section origins)")
    args = parser.parse_args()
    host = args.host or machine(host_info())
    found = cells(load(), host, args.configs)
    if not found:
        sys.exit(f"no rows with origins on {host}")
    head = ["layer", "strategy", "config", "seeds", *(f"measured: {k}" for k in KINDS), "other",
            "new bests by origin", "final best from"]  # fmt: skip
    body = table(head, [row_of(k, found[k]) for k in sorted(found)])
    print(f"machine {host}\n")
    print(body)
    if args.docs:
        lead = (
            f"#### Where the measured schedules came from (`bench/origins.py`, machine `{host}`)\n\n"
            "Per cell, summed over its seeds: the share of the 64 measured candidates per run that were root "
            "samples, children the tree's expansions made with a mutator from the target's prior (mcts-random's "
            "every expansion; colt's children of the root samples), children an LLM proposed, refine's "
            "mutants of the fastest measured schedules, and those of refine's mutants that apply an LLM's "
            "proposal for their parent (`llm_refine`); the measurements that set a new best, and where each "
            "run's final best came from. Each node's origin is the one the search recorded (rows of before "
            "2026-12-06 16:00: told from the order of the search's events)."
        )
        write_section("origins", f"{lead}\n\n{body}")


if __name__ == "__main__":
    main()
