"""Same-seed pairs of two search configurations on one machine: how a lever changes each run.

For every (layer, strategy, seed) that both configurations measured on the machine, the speed
ratio (the base's best latency / the configuration's: above 1, the lever is faster), the
wall-clock ratio and, where the rows have them, LLM calls and USD. Best latencies are the
retimed ones where both rows of a pair were timed again (``bench/retime.py``), else as run.
A row pairs by the settings it ran, whatever its name (a ``default`` row from before a default
changed stands for the configuration that names those settings today). Rows pair only within one
machine (``bench.strategies.machine``)::

    .venv/bin/python bench/pairs.py --base default+pop3 --config default   # population 3 -> 16
    .venv/bin/python bench/pairs.py --host emeraldrapids-19f57b --config default+cutoff3 --strategy mcts-random
    .venv/bin/python bench/pairs.py --config default+cutoff3 --wall-clock 300   # equal wall-clock rows
    .venv/bin/python bench/pairs.py --config default --form=-staged   # a layer's old formulation -> today's

With ``--form`` (a suffix of bench/forms.py's old formulations) the pairs are of one configuration
on the two formulations of a layer: the base is the old one (``flux-attention-staged``), the
other the library's (``flux-attention``).

At a trial budget the pairs also compare the time spent building and timing candidates
(``measure`` column: the configuration's / the base's); at a wall-clock budget, the trials
each row measured in its time.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import table  # noqa: E402
from bench.ablation import levers, load, settings_for, stale  # noqa: E402
from bench.forms import base_layer  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402


def best(row: dict, retimed: bool) -> float | None:
    return row.get("retimed_s") if retimed else row.get("best_s")


def pairs(
    store: dict,
    host: str,
    base: str,
    config: str,
    strategy: str | None = None,
    trials: int = 64,
    wall: float | None = None,
    form: str | None = None,
) -> list[dict]:
    """One dict per same-seed pair of ``base`` and ``config`` rows on machine ``host`` at ``trials``
    or, given ``wall``, at that wall-clock budget (whatever trials they reached); a row that ran other
    settings than its name means today (a ``default`` row from before a default changed) stands for
    the configuration whose settings it ran (``default+pop3`` for a ``default`` row that ran the
    papers' 3 root samples), as ``same_run`` reuses it; a row under its own name comes first.
    With ``form``, both sides run ``config``: ``base`` names the rows of the layers' old formulation
    with that suffix, ``config`` those of the library's."""

    @functools.cache
    def means(name: str, strat: str, layer: str) -> dict:
        """The levers configuration ``name`` means today for ``strat`` on ``layer``."""
        return levers(settings_for(name, 0).to_dict(), strat, layer)

    rows: dict = {}
    for r in store.values():
        if machine(r["host"]) != host or r.get("wall_budget_s") != wall or (strategy and r["strategy"] != strategy):
            continue
        if (wall is None and r.get("trials_budget", r["trials"]) != trials) or stale(r):
            continue
        strat, layer = r["strategy"], r["layer"]
        if form:
            if layer not in (base_layer(layer), base_layer(layer) + form):
                continue  # another formulation
            # one side per row, named by its formulation, both running ``config``
            sides, where = [(base if layer.endswith(form) else config, config)], base_layer(layer)
        elif strat != "evolutionary" and means(base, strat, layer) == means(config, strat, layer):
            continue  # two names of one set of settings (default+pop16 since 16 is the default): no lever
        else:
            sides, where = [(base, base), (config, config)], layer
        ran = levers(r.get("settings") or {}, strat, layer)
        for name, runs in sides:
            # MetaSchedule's own search has no levers: its name decides
            stands = r["config"] == runs if strat == "evolutionary" else ran == means(runs, strat, layer)
            slot = (where, strat, r["seed"], name)
            if stands and (slot not in rows or r["config"] == runs):
                rows[slot] = r
    out = []
    for (layer, strat, seed, name), b in sorted(rows.items()):
        c = rows.get((layer, strat, seed, config))
        if name != base or c is None:
            continue
        retimed = "retimed_s" in b and "retimed_s" in c
        if not (best(b, retimed) and best(c, retimed)):
            continue
        llm_b, llm_c = b.get("llm") or {}, c.get("llm") or {}
        out.append(
            {
                "layer": layer,
                "strategy": strat,
                "seed": seed,
                "base_ms": best(b, retimed) * 1e3,
                "ms": best(c, retimed) * 1e3,
                "speed": best(b, retimed) / best(c, retimed),
                "wall": c["wall_s"] / b["wall_s"],
                "measure": c["measure_s"] / b["measure_s"] if b.get("measure_s") and c.get("measure_s") else None,
                "trials": (b["trials"], c["trials"]),
                "retimed": retimed,
                "calls": (llm_b.get("llm_calls"), llm_c.get("llm_calls")),
                "usd": llm_c["usd"] / llm_b["usd"] if llm_b.get("usd") and llm_c.get("usd") else None,
            }
        )
    return out


def summary(found: list[dict]) -> str:
    """Geometric means of the speed and wall-clock ratios, per strategy and over all pairs."""
    lines = []
    for strat in sorted({p["strategy"] for p in found}) + [None]:
        ps = [p for p in found if strat is None or p["strategy"] == strat]
        speed = statistics.geometric_mean(p["speed"] for p in ps)
        wall = statistics.geometric_mean(p["wall"] for p in ps)
        faster = sum(p["speed"] > 1 for p in ps)
        measured = [p["measure"] for p in ps if p["measure"]]
        measure = f", measuring {statistics.geometric_mean(measured):.2f}x" if measured else ""
        layers = sorted({p["layer"] for p in ps})
        by_layer = ", ".join(
            f"{layer} {statistics.geometric_mean(p['speed'] for p in ps if p['layer'] == layer):.2f}x"
            for layer in layers
        )
        lines.append(
            f"{strat or 'all'}: speed {speed:.2f}x, wall-clock {wall:.2f}x{measure} over {len(ps)} pairs "
            f"({faster} faster; speed {min(p['speed'] for p in ps):.2f}-{max(p['speed'] for p in ps):.2f}x; "
            f"by layer: {by_layer})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="the machine (default: this one)")
    parser.add_argument("--base", default="default")
    parser.add_argument("--config", required=True)
    parser.add_argument("--strategy")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--wall-clock", type=float, help="pair the rows of this wall-clock budget instead")
    parser.add_argument("--form", help="pair the layers' old formulation of this suffix (-staged) with today's")
    args = parser.parse_args()
    host = args.host or machine(host_info())
    if args.form:
        args.base = f"{args.config}{args.form}"
    found = pairs(load(), host, args.base, args.config, args.strategy, args.trials, args.wall_clock, args.form)
    if not found:
        print(f"no same-seed pairs of {args.base} and {args.config} on {host}")
        return
    headers = ["layer", "strategy", "seed", f"{args.base} ms", f"{args.config} ms", "speed", "wall-clock"]
    print(
        table(
            [*headers, "measure", "trials", "calls", "USD"],
            [
                [
                    p["layer"],
                    p["strategy"],
                    p["seed"],
                    f"{p['base_ms']:.3f}",
                    f"{p['ms']:.3f}" + ("" if p["retimed"] else " (as run)"),
                    f"{p['speed']:.2f}x",
                    f"{p['wall']:.2f}x",
                    f"{p['measure']:.2f}x" if p["measure"] else "-",
                    f"{p['trials'][0]} -> {p['trials'][1]}",
                    "-" if p["calls"][0] is None else f"{p['calls'][0]} -> {p['calls'][1]}",
                    f"{p['usd']:.2f}x" if p["usd"] else "-",
                ]
                for p in found
            ],  # fmt: skip
        )
    )
    print()
    print(summary(found))


if __name__ == "__main__":
    main()
