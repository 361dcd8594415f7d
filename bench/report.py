"""The benchmark report: the papers' five layers x {colt, single-llm, mcts-random, evolutionary} at
64 trials and evolutionary at 256, several seeds per cell, numpy beside every layer, on one host.

It reads the rows ``bench/ablation.py`` saves (``bench/results/ablation.json``: one row per run,
keyed by host, layer, strategy, configuration, trials and seed) and ``bench/peers.py``'s numpy
timings, keeps one host's rows (or those of several machines of one CPU model, ``--host A B``,
whose rows complete each other: the note says how fast each is), and writes docs/benchmarks.md
sections ``report`` (per layer: each cell's best latency as median and min-max over its seeds; the
headline ratios) and ``wall-clock`` (equal wall-clock budget). The tree strategies' rows are those
of one search configuration (``--config``, the product's defaults by default; ``paper`` is the
papers' search). One stream per core, e.g. on a 2-core host::

    L="llama4-scout-mlp flux-conv2d deepseek-r1-moe llama3-8b-attention flux-attention"
    taskset -c 0 .venv/bin/python bench/ablation.py --strategies mcts-random colt single-llm \\
        --configs default --seeds 0 1 --kernels $L &
    taskset -c 1 .venv/bin/python bench/ablation.py --strategies evolutionary --configs paper \\
        --seeds 0 1 2 --trials 64 --kernels $L && \\
    taskset -c 1 .venv/bin/python bench/ablation.py --strategies evolutionary --configs paper \\
        --seeds 0 1 --trials 256 --kernels $L &
    # equal wall-clock: every strategy gets 300 s (and trials enough not to stop first)
    taskset -c 0 .venv/bin/python bench/ablation.py --strategies mcts-random colt evolutionary \\
        --configs default --seeds 0 --trials 100000 --wall-clock 300 --kernels $L
    # or: one queue file per core, its lines those arguments, editable while it runs
    bench/stream.sh /tmp/q0 0 18081 &  bench/stream.sh /tmp/q1 1 18181 &
    # once both streams are done: each row's fastest schedules timed again on the quiet host, and
    # numpy timed on this machine (the report's numpy column is per machine)
    taskset -c 0 .venv/bin/python bench/peers.py
    taskset -c 0 .venv/bin/python bench/retime.py --since "YYYY-MM-DD HH:MM"
    .venv/bin/python bench/report.py --host emeraldrapids-19f57b
    # MetaSchedule's own rows from another machine of the same CPU model and speed complete it:
    .venv/bin/python bench/report.py --host znver4-666052 znver4-eec9d6

Rows are grouped by machine (``bench.strategies.machine``: the CPU model and the boot), since two
machines of one CPU model ran 26-29% apart; rows from before boots were recorded go under the CPU
model alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import Counter
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import table, write_section  # noqa: E402
from bench.ablation import levers, settings_for, stale  # noqa: E402
from bench.forms import FORMS  # noqa: E402
from bench.strategies import machine  # noqa: E402
from search.engine.workloads import PAPER_LAYERS, flops, get_kernel  # noqa: E402

STORE = ROOT / "bench" / "results" / "ablation.json"
PEERS = ROOT / "bench" / "results" / "peers.json"
CELLS = [("colt", 64), ("single-llm", 64), ("mcts-random", 64), ("evolutionary", 64), ("evolutionary", 256)]
#: issue 13's headline: (row label, numerator cell, denominator cell, value); each layer's ratio is
#: of the two cells' medians, the table's figure the geometric mean over the layers having both
HEADLINE = [
    ("colt@64 / evolutionary@256 speedup", ("colt", 64), ("evolutionary", 256), "speed"),
    ("mcts-random@64 / evolutionary@256 speedup", ("mcts-random", 64), ("evolutionary", 256), "speed"),
    ("colt@64 / mcts-random@64 speedup", ("colt", 64), ("mcts-random", 64), "speed"),
    ("colt / single-llm speedup", ("colt", 64), ("single-llm", 64), "speed"),
    ("colt / single-llm USD", ("colt", 64), ("single-llm", 64), "usd"),
    ("colt / single-llm wall-clock", ("colt", 64), ("single-llm", 64), "wall_s"),
    ("colt largest-model share", ("colt", 64), None, "largest_share"),
]


#: which latency stands for a row's best: as its run measured it, or as bench/retime.py timed its
#: best schedules again on a quiet host (used when every reported row has that)
BEST = {"key": "best_s"}


def compare_retimed(cells: dict) -> bool:
    """Whether every row of ``cells`` was timed again (``bench/retime.py``); bests are then read
    from ``retimed_s``, else as the runs measured them."""
    retimed = bool(cells) and all("retimed_s" in r for rs in cells.values() for r in rs)
    BEST["key"] = "retimed_s" if retimed else "best_s"
    return retimed


def best_of(row: dict) -> float | None:
    return row[BEST["key"]] if BEST["key"] in row else row.get("best_s")  # (the wall-clock rows: as run)


def value(row: dict, what: str) -> float | None:
    llm = row.get("llm") or {}
    if what in ("usd", "largest_share", "llm_calls"):
        return llm.get(what)
    return row.get(what)


def median(rows: list[dict], what: str) -> float | None:
    """The cell's median of ``what``; for speed, 1 / the median best latency, the table's figure
    (with an even number of seeds the median of speeds would be another number)."""
    if what == "speed":
        best = [b for b in (best_of(r) for r in rows) if b]
        return 1.0 / statistics.median(best) if best else None
    values = [v for v in (value(r, what) for r in rows) if v is not None]
    return statistics.median(values) if values else None


def budget(row: dict) -> int:
    """The trial budget a row ran (older rows record only the trials they measured)."""
    return row.get("trials_budget", 64 if row["trials"] <= 64 else 256)


def select_rows(
    store: dict, hosts: str | Collection[str], config: str, wall: bool = False
) -> dict[tuple[str, str, int], list[dict]]:
    """The rows of ``hosts`` (one machine's name, or several machines of one CPU model) by (layer,
    strategy, trials): the tree strategies' rows with the settings of ``config`` (whatever name
    they ran under, unless that name marks code that has changed since), evolutionary's whatever
    its configuration is named (settings do not apply to it, nor does this project's code)."""
    hosts = {hosts} if isinstance(hosts, str) else set(hosts)
    settings = settings_for(config, 0).to_dict()
    cells: dict = {}
    for r in store.values():
        if machine(r["host"]) not in hosts or bool(r.get("wall_budget_s")) != wall or stale(r):
            continue
        strategy = r["strategy"]
        if strategy != "evolutionary" and (
            levers(r.get("settings") or {}, strategy, r["layer"]) != levers(settings, strategy, r["layer"])
        ):
            continue
        trials = budget(r) if not wall else 0
        cells.setdefault((r["layer"], r["strategy"], trials), []).append(r)
    return stand_in(cells)


def stand_in(cells: dict) -> dict:
    """A layer the machines measured only in an old formulation (bench/forms.py; the newest such)
    stands in it under the library's name: a report stays what it was when the library rewrote a
    layer. :func:`stand_ins` names them."""
    for layer in PAPER_LAYERS:
        if any(k[0] == layer for k in cells):
            continue
        for suffix in reversed(FORMS):
            old = [k for k in cells if k[0] == layer + suffix]
            for k in old:
                cells[(layer, *k[1:])] = cells.pop(k)
            if old:
                break
    return cells


def stand_ins(cells: dict) -> dict[str, str]:
    """Each layer of the report that stands in an old formulation -> that formulation's name."""
    return {k[0]: rs[0]["layer"] for k, rs in cells.items() if rs and rs[0]["layer"] != k[0]}


#: the headline's interval: the share of resampled geometric means it holds, and how many are drawn
LEVEL, DRAWS = 0.9, 2000


def _ratio(cells_of: list[tuple[list[dict], list[dict] | None]], what: str) -> float | None:
    """The geometric mean over layers of the ratio of two cells' medians (None: a cell without)."""
    ratios = []
    for num, den in cells_of:
        a = median(num, what)
        b = median(den, what) if den is not None else 1.0
        if a is None or not b:
            return None
        ratios.append(a / b)
    return statistics.geometric_mean(ratios)


def interval(cells_of: list[tuple[list[dict], list[dict] | None]], what: str, seed: int = 0) -> tuple[float, float]:
    """How far the seeds alone move a headline ratio: every cell's seeds drawn again with
    replacement (as many as it has), the ratio recomputed, DRAWS times; the central LEVEL of those
    ratios. With two seeds a cell's median is one seed, the other or their mean, so a goal missed
    inside this interval is missed by less than the seeds can resolve."""
    rng = random.Random(seed)
    got = []
    for _ in range(DRAWS):
        drawn = [
            ([rng.choice(num) for _ in num], [rng.choice(den) for _ in den] if den is not None else None)
            for num, den in cells_of
        ]
        if (r := _ratio(drawn, what)) is not None:
            got.append(r)
    got.sort()
    tail = (1.0 - LEVEL) / 2
    return got[int(tail * (len(got) - 1))], got[int((1.0 - tail) * (len(got) - 1) + 0.5)]


def headline(cells: dict) -> list[list[str]]:
    out = []
    for label, num, den, what in HEADLINE:
        cells_of = [
            (cells[(layer, *num)], cells[(layer, *den)] if den else None)
            for layer in PAPER_LAYERS
            if median(cells.get((layer, *num), []), what) is not None
            and (not den or median(cells.get((layer, *den), []), what))
        ]
        ratio = _ratio(cells_of, what) if cells_of else None
        if ratio is None:
            out.append([label, "not measured"])
            continue
        lo, hi = interval(cells_of, what)
        out.append([label, f"{ratio:.2f} ({len(cells_of)} layers; seeds resampled, {LEVEL:.0%}: {lo:.2f}-{hi:.2f})"])
    return out


def spread(rows: list[dict]) -> str:
    best = sorted(best_of(r) * 1e3 for r in rows if best_of(r))
    if not best:
        return "no valid schedule"
    return f"{statistics.median(best):.3f} ({best[0]:.3f}-{best[-1]:.3f})"


def numpy_times(peers: dict, hosts: list[str], layer: str) -> list[float]:
    """numpy's time for ``layer`` on each of the report's machines that timed it."""
    return [t for h in hosts if (t := (peers.get(f"{h}|{layer}") or {}).get("numpy_s"))]


def numpy_time(peers: dict, hosts: list[str], layer: str) -> float | None:
    """numpy's time for ``layer`` on the report's machines (the median where several timed it)."""
    times = numpy_times(peers, hosts, layer)
    return statistics.median(times) if times else None


def layer_hosts(rows: list[dict], hosts: list[str]) -> list[str]:
    """The report's machines that measured ``rows`` (one layer's; all of them where none did):
    numpy beside a layer is timed where its cells were, so a layer measured on one machine of the
    CPU model is compared with numpy on that machine, not with the other machines' median."""
    mine = {machine(r["host"]) for r in rows}
    return [h for h in hosts if h in mine] or hosts


def machines_note(cells: dict, peers: dict, hosts: list[str]) -> str:
    """For a report over several machines of one CPU model: how many rows each gave and how fast
    each is, by its calibration and by numpy's time on each layer (the evidence that they compare)."""
    rows = [r for rs in cells.values() for r in rs]
    parts = []
    for h in hosts:
        mine = [r for r in rows if machine(r["host"]) == h]
        calib = sorted(c for r in mine if (c := r["host"].get("calibration_ms")))
        kinds = Counter(f"{r['strategy']}@{budget(r)}" for r in mine)
        what = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        speed = f"calibration {calib[0]:.1f}-{calib[-1]:.1f} ms" if calib else "no calibration"
        parts.append(f"`{h}` ({len(mine)} rows: {what}; {speed})")
    times = [numpy_times(peers, hosts, layer) for layer in PAPER_LAYERS]
    ratios = [max(t) / min(t) for t in times if len(t) > 1]
    numpy = (
        f" numpy's time per layer differs between them by {min(ratios):.2f}-{max(ratios):.2f}x"
        f" ({len(ratios)} layers); a layer's numpy time is the median of the machines that measured its rows."
        if ratios
        else ""
    )
    return f"Rows from several machines of one CPU model: {'; '.join(parts)}.{numpy}"


def layer_rows(cells: dict, peers: dict, hosts: list[str]) -> list[list[str]]:
    out = []
    for layer in PAPER_LAYERS:
        rows_here = [r for (lay, _, _), rs in cells.items() if lay == layer for r in rs]
        baselines = [r["baseline_s"] for r in rows_here if r.get("baseline_s")]
        base = statistics.median(baselines) if baselines else None
        gflop = flops(get_kernel(layer)) / 1e9
        numpy_s = numpy_time(peers, layer_hosts(rows_here, hosts), layer)
        if numpy_s:
            out.append([layer, "numpy (OpenBLAS, 1 thread)", "-", "-", f"{numpy_s * 1e3:.3f}",
                        f"{base / numpy_s:.1f}x" if base else "-", f"{gflop / numpy_s:.1f}", "1.00",
                        "-", "-", "-", "-", "-"])  # fmt: skip
        for strategy, trials in CELLS:
            rs = cells.get((layer, strategy, trials))
            if not rs:
                out.append([layer, strategy, trials, "-", "not measured", *["-"] * 8])
                continue
            best = median(rs, "speed")
            calls, usd, share = median(rs, "llm_calls"), median(rs, "usd"), median(rs, "largest_share")
            evals = median(rs, "evaluations_per_trial")
            out.append(
                [
                    layer,
                    strategy,
                    trials,
                    ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"])),
                    spread(rs),
                    f"{base * best:.1f}x" if base and best else "-",
                    f"{gflop * best:.1f}" if best else "-",
                    f"{numpy_s * best:.2f}" if numpy_s and best else "-",
                    f"{median(rs, 'wall_s'):.0f}",
                    f"{evals:.0f}" if evals is not None else "-",
                    f"{calls:.0f}" if calls is not None else "-",
                    f"${usd:.5f}" if usd is not None else "-",
                    f"{share:.0%}" if share is not None else "-",
                ]
            )
    return out


COLOURS = {"colt": "#d62728", "single-llm": "#9467bd", "mcts-random": "#1f77b4", "evolutionary": "#2ca02c"}
PLOTS = ROOT / "docs" / "plots"


def plot(layer: str, cells: dict) -> str | None:
    """Best latency over measured trials, one thin line per seed (evolutionary at 256 dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "colt-report"  # the same data gives the same SVG
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
    labelled = set()
    for strategy, trials in CELLS:
        for r in cells.get((layer, strategy, trials), []):
            points = [(t, lat * 1e3) for t, lat, *_ in r.get("curve") or [] if lat]
            if not points:
                continue
            label = f"{strategy}@{trials}"
            ax.step(*zip(*points, strict=True), where="post", color=COLOURS[strategy], alpha=0.8, linewidth=1,
                    linestyle=":" if trials == 256 else "-", label=None if label in labelled else label)  # fmt: skip
            labelled.add(label)
    if not labelled:
        plt.close(fig)
        return None
    ax.set_title(layer, fontsize=10)
    ax.set_xlabel("measured trials")
    ax.set_ylabel("best latency (ms)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOTS / f"{layer}.svg", metadata={"Date": None})
    plt.close(fig)
    return f"plots/{layer}.svg"


WALL_HEADERS = [
    "layer",
    "strategy",
    "wall-clock budget s",
    "seeds",
    "best ms: median (min-max)",
    "vs evolutionary",
    "trials (median)",
    "LLM s (median)",
]


def _wall_cells(cells: dict) -> list[tuple[tuple[str, str, int], list[dict]]]:
    """The wall-clock cells in the table's order (not layers formulated differently before)."""
    current = [(k, rs) for k, rs in cells.items() if k[0] in PAPER_LAYERS]
    return sorted(current, key=lambda kv: (PAPER_LAYERS.index(kv[0][0]), kv[0][1]))


def against_evolutionary(cells: dict, layer: str, strategy: str) -> float | None:
    """A wall-clock cell's speed over evolutionary's on the same layer (their median bests); above 1:
    faster. None where either cell has no valid best, and for evolutionary itself."""
    evo = cells.get((layer, "evolutionary", 0))
    if strategy == "evolutionary" or not evo:
        return None
    mine, theirs = median(cells[(layer, strategy, 0)], "speed"), median(evo, "speed")
    return mine / theirs if mine and theirs else None


def wall_rows(cells: dict) -> list[list[str]]:
    out = []
    for (layer, strategy, _), rs in _wall_cells(cells):
        ratio = against_evolutionary(cells, layer, strategy)
        llm_s = median(rs, "llm_s")
        seeds = ", ".join(str(seed) for seed in sorted(r["seed"] for r in rs))
        out.append([layer, strategy, f"{rs[0]['wall_budget_s']:.0f}", seeds, spread(rs),
                    f"{ratio:.2f}x" if ratio else "-", f"{median(rs, 'trials'):.0f}",
                    f"{llm_s:.0f}" if llm_s else "-"])  # fmt: skip
    return out


def wall_verdict(cells: dict) -> str:
    """Per tree strategy: on how many of the layers measured beside evolutionary it is faster (the
    goal: every layer), and its ratio where it is not (a tie is not faster)."""
    lines = []
    for strategy in ("mcts-random", "colt"):
        ratios = {
            layer: r
            for (layer, s, _), _ in _wall_cells(cells)
            if s == strategy and (r := against_evolutionary(cells, layer, strategy)) is not None
        }
        if not ratios:
            continue
        behind = [f"{layer} {r:.2f}x" for layer, r in ratios.items() if r <= 1.0]
        lines.append(
            f"{strategy} is faster than evolutionary on {len(ratios) - len(behind)} of {len(ratios)} layers"
            + (f" (not on {', '.join(behind)})" if behind else "")
        )
    return "; ".join(lines) + "." if lines else ""


HEADERS = [
    "layer",
    "strategy",
    "trials",
    "seeds",
    "best ms: median (min-max)",
    "speedup",
    "GFLOP/s",
    "speed vs numpy",
    "wall s",
    "cost-model evals / trial",
    "LLM calls",
    "USD",
    "largest-model share",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--host",
        nargs="+",
        help="the machine whose rows to report, e.g. emeraldrapids-19f57b, or several machines of one CPU "
        "model whose rows complete each other (default: the one with most rows)",
    )
    parser.add_argument("--config", default="default", help="the tree strategies' search configuration")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["report", "wall-clock"],
        choices=["report", "wall-clock"],
        help="the docs/benchmarks.md sections to write (another host's wall-clock table alone: wall-clock)",
    )
    args = parser.parse_args()
    store = json.loads(STORE.read_text())
    peers = json.loads(PEERS.read_text()) if PEERS.exists() else {}
    hosts = args.host or [Counter(machine(r["host"]) for r in store.values()).most_common(1)[0][0]]
    cpus = {r["host"]["cpu"] for r in store.values() if machine(r["host"]) in hosts}
    if len(cpus) > 1:
        parser.error(f"rows of different CPU models do not compare: {', '.join(sorted(cpus))}")
    host = ", ".join(hosts)
    cells = select_rows(store, hosts, args.config)
    retimed = compare_retimed(cells)
    missing = [f"{layer} {s}@{t}" for layer in PAPER_LAYERS for s, t in CELLS if (layer, s, t) not in cells]
    status = (
        "Complete: every cell measured."
        if not missing
        else f"**Incomplete: {len(missing)} of {len(PAPER_LAYERS) * len(CELLS)} cells not measured yet** "
        f"({'; '.join(missing)})."
    )
    calibrated = [r["host"].get("calibration_ms") for rs in cells.values() for r in rs]
    known = sorted(c for c in calibrated if c)
    if known and (known[-1] > 1.1 * known[0] or len(known) < len(calibrated)):
        status += (
            f" Machines: the rows' calibrations span {known[0]:.1f}-{known[-1]:.1f} ms"
            f" ({len(calibrated) - len(known)} rows from before calibrations were recorded): "
            "rows from machines of different speed are compared."
        )
    if old := stand_ins(cells):
        status += (
            " Layers measured before the library rewrote them stand in that formulation (bench/forms.py): "
            + ", ".join(f"{layer} as `{name}`" for layer, name in sorted(old.items()))
            + "."
        )
    if len(hosts) > 1:
        status += " " + machines_note(cells, peers, hosts)
    elif not known:
        status += (
            " The rows predate machine calibrations: they may come from machines of one CPU model but different speed."
        )
    lead = (
        f"All rows: {'machines' if len(hosts) > 1 else 'host'} `{host}`, one stream per core (`taskset`), "
        "so every kernel runs on one thread; "
        f"the tree strategies in search configuration `{args.config}` (see the ablation below), evolutionary is "
        "MetaSchedule's own search. Each cell: its seeds, the best latency as median (min-max) over them; "
        "speedup = the layer's median unscheduled latency / the median best; `speed vs numpy` = numpy's time / "
        "the median best (above 1: faster than numpy). The LLM strategies use the local fleet (SmolLM2-135M, "
        "Gemma-3-270M, Qwen2.5-Coder-0.5B and the largest, Qwen2.5-Coder-1.5B, on llama.cpp, one thread, on the "
        "search's core; single-llm is the largest alone) at nominal prices ($0.20/$0.60 per million "
        "input/output tokens per billion parameters). Timing number 3, repeat 5, "
        "min_repeat_ms 100; every best checked against numpy. "
        + (
            "Best latencies are each run's three fastest schedules timed again one after another on the quiet "
            "host (`bench/retime.py`), since the other core's stream slowed some runs' own final timings; the "
            "curves are as the runs measured them. "
            if retimed
            else ""
        )
        + "Raw rows, with curves: "
        "`bench/results/ablation.json`; rerun with the commands in `bench/report.py`."
    )
    images = [] if args.no_docs else [f"![{lay}]({img})" for lay in PAPER_LAYERS if (img := plot(lay, cells))]
    body = "\n\n".join(
        [
            "### The report: five layers x four strategies, several seeds",
            status,
            lead,
            "#### Headline ratios (geometric mean over the layers of the ratio of cell medians)",
            f"In brackets: the central {LEVEL:.0%} of the ratio when every cell's seeds are drawn again with "
            f"replacement ({DRAWS} draws): how far the seeds alone move it. A goal missed inside that interval "
            "is missed by less than the report's seeds can resolve.",
            table(["headline ratio", "geometric mean"], headline(cells)),
            "#### Per layer",
            table(HEADERS, layer_rows(cells, peers, hosts)),
            "#### Best latency over trials (every seed a line; evolutionary at 256 dotted)",
            "\n".join(images),
        ]
    )
    wall = select_rows(store, hosts, args.config, wall=True)
    wall_retimed = compare_retimed(wall)
    wall_body = "### Equal wall-clock budget\n\n" + (
        f"Host `{host}`; each run stops when its wall-clock budget is spent (trials unbounded); the tree "
        f"strategies in configuration `{args.config}`. Best latencies "
        + (
            "are each run's three fastest schedules timed again on the quiet host (`bench/retime.py`). "
            if wall_retimed
            else "are as the runs measured them. "
        )
        + "`vs evolutionary`: MetaSchedule's evolutionary search's median best over this cell's (above 1: "
        "faster); `LLM s`: the seconds of the budget spent waiting on LLM calls. "
        + wall_verdict(wall)
        + "\n\n"
        + table(WALL_HEADERS, wall_rows(wall))
        if wall
        else "Not measured on this host yet."
    )
    print(body + "\n\n" + wall_body)
    if not args.no_docs:
        if "report" in args.sections:
            write_section("report", body)
        if "wall-clock" in args.sections:
            write_section("wall-clock", wall_body)


if __name__ == "__main__":
    main()
