"""The benchmark report: the papers' five layers x {colt, single-llm, mcts-random, evolutionary}
at 64 trials (and evolutionary at 256), from the results ``bench/strategies.py --section report-*``
wrote; a table, sample efficiency, cost, and one plot per layer (best latency over trials).
The 2026-11-24 report ran as two streams, each pinned to one core (the sections must start
with ``report-``: this script reads ``bench/results/report-*.json``):

    L="llama3-8b-attention deepseek-r1-moe flux-attention flux-conv2d llama4-scout-mlp"
    taskset -c 0 .venv/bin/python bench/strategies.py --section report-search --trials 64 --kernels $L \\
        --strategies mcts-random evolutionary --no-docs
    taskset -c 0 .venv/bin/python bench/strategies.py --section report-search --trials 256 \\
        --kernels flux-conv2d llama4-scout-mlp deepseek-r1-moe llama3-8b-attention --strategies evolutionary --no-docs
    taskset -c 1 .venv/bin/python bench/strategies.py --section report-llm --trials 64 --kernels $L \\
        --strategies colt single-llm --no-docs
    taskset -c 1 .venv/bin/python bench/strategies.py --section report-evo256 --trials 256 \\
        --kernels flux-attention --strategies evolutionary --no-docs
    .venv/bin/python bench/report.py          # docs/benchmarks.md (section "report"), docs/plots/
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import table, write_section  # noqa: E402

RESULTS = sorted((ROOT / "bench" / "results").glob("report-*.json"))
PLOTS = ROOT / "docs" / "plots"
STRATEGIES = ("colt", "single-llm", "mcts-random", "evolutionary")
LAYERS = ("llama3-8b-attention", "deepseek-r1-moe", "flux-attention", "flux-conv2d", "llama4-scout-mlp")
# colt at 64 trials against another strategy: (the other's strategy and trials, the value compared)
RATIOS = {
    "speedup / mcts-random speedup": (("mcts-random", 64), lambda s: s["speedup"]),
    "speedup / evolutionary speedup (64 trials)": (("evolutionary", 64), lambda s: s["speedup"]),
    "speedup / evolutionary speedup (256 trials)": (("evolutionary", 256), lambda s: s["speedup"]),
    "speedup / single-llm speedup": (("single-llm", 64), lambda s: s["speedup"]),
    "USD / single-llm USD": (("single-llm", 64), lambda s: (s.get("llm") or {}).get("usd")),
    "wall time / single-llm wall time": (("single-llm", 64), lambda s: s["wall_s"]),
    "LLM time / single-llm LLM time": (("single-llm", 64), lambda s: s.get("llm_s")),
}
#: issue 13's headline: (row label, numerator (strategy, trials), denominator, value); the
#: cell is the geometric mean over the layers that have both rows
SPEEDUP = "speedup"
HEADLINE = [
    ("colt@64 / evolutionary@256 speedup", ("colt", 64), ("evolutionary", 256), SPEEDUP),
    ("mcts-random@64 / evolutionary@256 speedup", ("mcts-random", 64), ("evolutionary", 256), SPEEDUP),
    ("colt@64 / mcts-random@64 speedup", ("colt", 64), ("mcts-random", 64), SPEEDUP),
    ("colt / single-llm speedup", ("colt", 64), ("single-llm", 64), SPEEDUP),
    ("colt / single-llm USD", ("colt", 64), ("single-llm", 64), "usd"),
    ("colt / single-llm wall-clock", ("colt", 64), ("single-llm", 64), "wall_s"),
    ("colt largest-model share", ("colt", 64), None, "largest_share"),
]


def headline_value(summary: dict, what: str) -> float | None:
    if what in ("usd", "largest_share"):
        return (summary.get("llm") or {}).get(what)
    return summary.get(what)


def headline_rows(results: dict) -> list[list[str]]:
    rows = []
    for label, num, den, what in HEADLINE:
        values = []
        for layer in LAYERS:
            a = results.get((layer, *num))
            b = results.get((layer, *den)) if den else None
            x = headline_value(a, what) if a else None
            y = headline_value(b, what) if b else 1.0
            if x and y:
                values.append(x / y)
        cell = f"{statistics.geometric_mean(values):.2f} ({len(values)} layers)" if values else "not measured"
        rows.append([label, cell])
    return rows


COLOURS = {"colt": "#d62728", "single-llm": "#9467bd", "mcts-random": "#1f77b4", "evolutionary": "#2ca02c"}


def best_at(summary: dict, trials: int) -> float | None:
    """The best latency found within the first ``trials`` trials."""
    best = None
    for trial, latency in summary["history"]:
        if trial <= trials:
            best = latency
    return best


def trials_to_reach(summary: dict, target: float) -> int | None:
    for trial, latency in summary["history"]:
        if latency <= target:
            return trial
    return None


def load() -> dict:
    data = {}
    for path in RESULTS:
        data.update(json.loads(path.read_text()))
    out = {}
    for key, value in data.items():
        layer, strategy, trials = key.split("|")
        out[(layer, strategy, int(trials))] = value["summary"]
    return out


def plot(layer: str, results: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "colt-report"  # the same data gives the same SVG (clean diffs)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
    drawn = False
    for strategy in STRATEGIES:
        for trials, style in ((64, "-"), (256, ":")):
            s = results.get((layer, strategy, trials))
            if not s or not s["history"] or not s["baseline_latency_s"]:
                continue
            xs = [t for t, _ in s["history"]] + [s["trials"]]
            ys = [s["baseline_latency_s"] / lat for _, lat in s["history"]]
            ys.append(ys[-1])
            ax.step(
                xs,
                ys,
                where="post",
                linestyle=style,
                color=COLOURS[strategy],
                label=strategy + (" (256)" if trials == 256 else ""),
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(layer, fontsize=10)
    ax.set_xlabel("measured trials")
    ax.set_ylabel("speedup over unscheduled")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{layer}.svg"
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    return f"plots/{layer}.svg"


def host_label(summary: dict) -> str:
    h = summary.get("host")
    return (
        f"{h['cpu']}, {h['cores']} core{'s' if h['cores'] != 1 else ''} ({h['machine']})" if h else "host not recorded"
    )


def common_baselines(results: dict) -> dict[str, float]:
    """Per layer, the median of the unscheduled latencies its runs measured: the speedups below
    divide it by each run's best, so one noisy baseline measurement does not move a ratio."""
    by_layer: dict[str, list[float]] = {}
    for (layer, _, _), s in results.items():
        if s["baseline_latency_s"]:
            by_layer.setdefault(layer, []).append(s["baseline_latency_s"])
    return {layer: statistics.median(v) for layer, v in by_layer.items()}


def main() -> None:
    results = load()
    base = common_baselines(results)
    for (layer, _, _), s in results.items():  # speedups against the layer's common baseline
        s["own_speedup"] = s["speedup"]
        s["speedup"] = base[layer] / s["best_latency_s"] if s["best_latency_s"] and layer in base else None
        s["baseline_latency_s"], s["own_baseline_s"] = base.get(layer), s["baseline_latency_s"]
    spread_rows = []
    for layer in LAYERS:
        own = [s["own_baseline_s"] for (lay, _, _), s in results.items() if lay == layer and s["own_baseline_s"]]
        if own:
            spread_rows.append(
                [
                    layer,
                    len(own),
                    f"{min(own) * 1e3:.1f}",
                    f"{max(own) * 1e3:.1f}",
                    f"{base[layer] * 1e3:.1f}",
                    f"{(max(own) / min(own) - 1):.0%}",
                ]
            )
    rows, eff_rows, images = [], [], []
    colt_vs = {label: [] for label in RATIOS}
    samples_rows, sample_ratios = [], []
    for layer in LAYERS:
        present = [(s, t) for s in STRATEGIES for t in (64, 256) if (layer, s, t) in results]
        if not present:
            continue
        best64 = min(
            (
                results[(layer, s, 64)]["best_latency_s"]
                for s in STRATEGIES
                if (layer, s, 64) in results and results[(layer, s, 64)]["best_latency_s"]
            ),
            default=None,
        )
        for strategy, trials in present:
            s = results[(layer, strategy, trials)]
            llm = s.get("llm") or {}
            rows.append(
                [
                    layer,
                    strategy,
                    trials,
                    f"{s['baseline_latency_s'] * 1e3:.3f}" if s["baseline_latency_s"] else "-",
                    f"{s['best_latency_s'] * 1e3:.3f}" if s["best_latency_s"] else "-",
                    f"{s['speedup']:.1f}x" if s["speedup"] else "-",
                    f"{s['gflops']:.1f}" if s["gflops"] else "-",
                    f"{s['wall_s']:.0f}",
                    llm.get("llm_calls", "-"),
                    f"${llm['usd']:.5f}" if llm else "-",
                    f"{llm['largest_share']:.0%}" if llm and llm.get("largest_share") is not None else "-",
                    llm.get("escalations", "-"),
                ]
            )
            if trials == 64 and best64:
                b16, b32 = best_at(s, 16), best_at(s, 32)
                reach = trials_to_reach(s, best64 * 1.10)
                eff_rows.append(
                    [
                        layer,
                        strategy,
                        f"{s['baseline_latency_s'] / b16:.1f}x" if b16 else "-",
                        f"{s['baseline_latency_s'] / b32:.1f}x" if b32 else "-",
                        f"{s['speedup']:.1f}x" if s["speedup"] else "-",
                        reach if reach is not None else "not within 64",
                    ]
                )
        image = plot(layer, results)
        if image:
            images.append(f"![{layer}]({image})")
        c = results.get((layer, "colt", 64))
        if not c:
            continue
        for label, (other, value) in RATIOS.items():
            o = results.get((layer, *other))
            if o and value(c) and value(o):
                colt_vs[label].append(value(c) / value(o))
        evo256 = results.get((layer, "evolutionary", 256))
        colt_at = c["best_latency_s"] and trials_to_reach(c, c["best_latency_s"])
        if colt_at and evo256:
            evo_at = trials_to_reach(evo256, c["best_latency_s"])
            if evo_at is not None:
                sample_ratios.append(evo_at / colt_at)
            samples_rows.append(
                [
                    layer,
                    f"{c['speedup']:.1f}x",
                    colt_at,
                    evo_at if evo_at is not None else f"not within {evo256['trials']}",
                    f"{evo_at / colt_at:.1f}x" if evo_at is not None else f"> {evo256['trials'] / colt_at:.1f}x",
                ]
            )
    headers = [
        "layer",
        "strategy",
        "trials",
        "unscheduled (ms)",
        "best (ms)",
        "speedup",
        "GFLOP/s",
        "wall (s)",
        "LLM calls",
        "USD",
        "largest-model share",
        "escalations",
    ]
    eff_headers = ["layer", "strategy", "speedup @16", "@32", "@64", "trials to within 10% of the layer's best @64"]

    def geo(values):
        return f"{statistics.geometric_mean(values):.2f} ({len(values)} layers)" if values else "-"

    summary = table(
        ["ratio (colt at 64 trials / the other)", "geometric mean"],
        [[label, geo(values)] for label, values in colt_vs.items()],
    )
    expected = [(layer, strategy, 64) for layer in LAYERS for strategy in STRATEGIES]
    expected += [(layer, "evolutionary", 256) for layer in LAYERS]
    missing = [
        f"{layer} {strategy} @{trials}"
        for layer, strategy, trials in expected
        if (layer, strategy, trials) not in results
    ]
    hosts = sorted({host_label(s) for s in results.values()})
    if len(hosts) > 1:  # rows from different CPUs are not comparable: say so where it happens
        for row in rows:  # row[:3] is the result's key: layer, strategy, trials
            row[1] += f" ({host_label(results[tuple(row[:3])])})"
    measured_on = (
        f"Every row was measured on one host: {hosts[0]}."
        if len(hosts) == 1
        else "**Rows come from different hosts and are not comparable across them**: " + "; ".join(hosts)
    )
    status = (
        "Complete: every layer x strategy at 64 trials and evolutionary at 256."
        if not missing
        else f"**Incomplete: {len(missing)} of {len(expected)} rows not measured yet** ({'; '.join(missing)}). "
        "Rerun the commands in `bench/report.py` with `--kernels` for those layers; rows accumulate."
    )
    body = "\n\n".join(
        [
            "### The report: five layers x four strategies",
            status + " " + measured_on,
            "Produced by `bench/strategies.py` (the commands are in `bench/report.py`) and `bench/report.py`; "
            "raw numbers, curves and histories in `bench/results/report-*.json`. Two streams ran side by side, "
            "each pinned to one core of this 2-core host (so every TVM target has `num-cores=1` and every "
            "kernel, the unscheduled baseline included, runs on one thread): the search strategies on core 0, "
            "the LLM strategies and their local model servers on core 1 (and, once they were done, flux-attention's "
            "256-trial evolutionary run). Every best schedule was checked "
            "against numpy; timing number 3, repeat 5, min_repeat_ms 100; seed 0. The LLM strategies use the "
            "local fleet (SmolLM2-135M, Gemma-3-270M, Qwen2.5-Coder-0.5B on llama.cpp, one thread each) at "
            "their nominal prices ($0.20/$0.60 per million input/output tokens per billion parameters). "
            "Evolutionary's curve and its trial counts are MetaSchedule's own runner's timings; its best (the "
            "table) is its top three candidates timed again by the measurer every other strategy uses, which "
            "can read up to ~20% slower than MetaSchedule's runner did.",
            table(headers, rows),
            "#### Measurement noise: the unscheduled baseline as each run measured it",
            "Speedups above and below divide the layer's median baseline by each run's best latency.",
            table(["layer", "runs", "min (ms)", "max (ms)", "median, used (ms)", "max/min - 1"], spread_rows),
            "#### Sample efficiency (best speedup found within the first N trials)",
            table(eff_headers, eff_rows),
            "#### Headline ratios",
            table(["headline ratio", "geometric mean"], headline_rows(results)),
            "#### Ratios",
            summary,
            "#### Samples to reach colt's best (the papers' sample-efficiency measure)",
            "How many measured trials MetaSchedule's evolutionary search (256-trial run) needed to find a "
            "schedule at least as fast as the best colt found in 64, against the trials colt needed.",
            table(
                [
                    "layer",
                    "colt best @64",
                    "colt: trials to its best",
                    "evolutionary @256: trials to reach it",
                    "evolutionary / colt",
                ],
                samples_rows + [["geometric mean", "", "", "", geo(sample_ratios)]],
            ),
            "#### Best speedup over trials (64 trials solid, evolutionary at 256 dotted)",
            "\n".join(images),
        ]
    )
    write_section("report", body)
    print(body)


if __name__ == "__main__":
    main()
