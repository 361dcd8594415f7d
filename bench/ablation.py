"""Ablation of the search levers against the papers' search, side by side on one host.

Each row is one run: a layer, a strategy, a named configuration of search settings (``paper``
is the search exactly as the papers specify it), a seed. Rows are saved as they finish
(``bench/results/ablation.json``, keyed by host, layer, strategy, configuration, trials and
seed), so an interrupted benchmark keeps what it measured; rerunning skips rows already there.
Pin one stream per core, e.g.::

    taskset -c 0 .venv/bin/python bench/ablation.py --kernels llama4-scout-mlp --configs paper screen32 &
    taskset -c 1 .venv/bin/python bench/ablation.py --kernels flux-conv2d --configs paper screen32 &

``bench/ablation.py --report`` prints the table (median and min-max over seeds per cell).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _store  # noqa: E402
from bench._report import table, write_section  # noqa: E402
from bench.forms import base_layer, bench_kernel  # noqa: E402
from bench.strategies import CallTimer, host_info, machine  # noqa: E402
from search.engine.llm import SERVER_ERROR, TIMEOUT  # noqa: E402
from search.engine.request import (  # noqa: E402
    MODEL_WARMUP,
    PRESETS,
    PRIOR_EXPANSIONS,
    Budget,
    RunRequest,
    SearchSettings,
    default_generations,
)
from search.engine.strategies import STRATEGIES  # noqa: E402
from search.engine.tuning import tune  # noqa: E402
from search.engine.warm import Record, WarmStart  # noqa: E402
from search.engine.workloads import PAPER_LAYERS  # noqa: E402
from search.localfleet import LOCAL_MODELS  # noqa: E402
from search.services import load_fleet, local_servers  # noqa: E402

#: the local fleet's largest model: single-llm's model, and the one colt escalates to
LOCAL_LARGEST = max(LOCAL_MODELS, key=lambda m: m.params).name

RESULTS = Path(__file__).resolve().parent / "results" / "ablation.json"
RECORDS = _store.RECORDS

LEAD = (
    "Produced by `bench/ablation.py` (raw rows with their progress curves and host in "
    "`bench/results/ablation.json`) and `bench/peers.py` (numpy, `bench/results/peers.json`). One stream "
    "per core (`taskset`), so every kernel runs on one thread; timing number 3, repeat 5, min_repeat_ms 100; "
    "every best checked against numpy. `paper` is the search exactly as the papers specify it; each other "
    "configuration changes only the settings it names (`variants`/`screen`: children realized per expansion, "
    "the cost model keeps the best; `expansions_per_round`/`wide`: expansions between measurement rounds; "
    "`measured_reward`: measured latencies back-propagated as rewards; `prior50`: half of an LLM "
    "expansion's screening attempts apply the target's mutator prior instead of the model's proposal; "
    "`cutoff3`: a candidate whose first two single runs are already 3x slower than the best keeps the faster "
    "and is not timed in full; `costroute`: the nodes screening adds go to the small model with the most "
    "expected hits per dollar, "
    "not the best hit rate; `refine2048`: refine screens 2048 mutants per round, not 512; "
    "`scout1`/`scout2`: each round one/two sketches the tree has no schedule of, each the best-scored of a "
    "few samples, join the root and are measured in the next round, and the root samples come from distinct "
    "sketches; `pop16`/`pop3`: 16/3 root samples (16 the default since the 2026-12-05 evening rows; "
    "with `scout1`, from 16 distinct sketches); "
    "`rfresh256`: refine's parents also take the best-scored of 256 random samples each round; `random2`: two "
    "places of each batch go to new random samples, unscreened; `llm2`: two places of each batch go to the "
    "best-scored nodes an LLM proposed; `onemut`: the mutators an LLM names are alternatives of one move "
    "each, not a sequence (`single_mutator`); `popfirst`: the root population's samples are measured before "
    "any other node (`population_first`); `restart1`: the trial budget in two halves, the second searching from a "
    "new root population with the cost model kept (`restarts`); `random-model`: every cost-model score random "
    "(a control: the search blind); `fresh_samples`: new design-space "
    "points screened each round, the best added at the root; `refine`: mutants of the fastest measured "
    "schedules screened each round, the best `measure_batch` join the tree; `directed`: LLM replies may set "
    "one decision; `warm`: the cost model pre-trained on the other layers' records from this CPU model, never this "
    "layer's own, a leave-one-out row; `default-unmemoized`/`default-replay-memory`: the product's defaults run "
    "before the search remembered replays and features, and with the replay memory alone: the same search, "
    "slower; `default`: the product's defaults when the row ran, recorded in the row). Against `paper` the "
    "ratio pairs runs of the same seed (geometric mean of paper's best / this best); against evolutionary@256 "
    "and numpy it is their "
    "median best latency over this cell's median. Above 1: this cell is faster."
)

#: configuration name -> search settings that differ from the papers' search (``default``: the
#: product's defaults, SearchSettings(), whatever they are when the row runs; its row records them)
CONFIGS: dict[str, dict] = {
    "default": {},
    "default+warm": {"warm_start": True},  # leave-one-out: see refine512+warm
    "paper": {},
    "screen32": {"variants": 32},
    "screen32-wide": {"variants": 32, "expansions_per_round": 64},
    "measured": {"measured_reward": True},
    "screen32+measured": {"variants": 32, "measured_reward": True},
    "fresh256": {"fresh_samples": 256},
    "screen32+fresh256": {"variants": 32, "fresh_samples": 256},
    "refine512": {"refine": 512},
    "refine512+measured": {"refine": 512, "measured_reward": True},
    "screen32+measured+refine512": {"variants": 32, "measured_reward": True, "refine": 512},
    # leave-one-out warm start: the cost model pre-trained on the other layers' records from this
    # CPU model's machines (bench/out/records/<cpu>, written by every tree-strategy row); never
    # this layer's own
    "refine512+warm": {"refine": 512, "warm_start": True},
    "refine512+fresh256": {"refine": 512, "fresh_samples": 256},
    "refine2048": {"refine": 2048},
    "refine1024x4": {"refine": 1024, "refine_generations": 4},
    "screen32+measured+refine1024x4": {
        "variants": 32,
        "measured_reward": True,
        "refine": 1024,
        "refine_generations": 4,
    },
    "default+directed": {"directed": True},
    # half of each LLM expansion's screened variants drawn from the target's mutator prior
    "default+prior50": {"prior_variants": 0.5},
    "default+costroute": {"cost_routing": True},
    "default+refine2048": {"refine": 2048},  # four times the default's screening per round
    # the product's defaults with screening-added nodes expanded by the largest model (before 2026-12-04)
    "default-screened-to-largest": {"screened_to_small": False},
    "default-full-prompt": {"compact_prompt": False},
    "default+inflight3": {"llm_in_flight": 3},
    # the root's sketches: more first samples, or a large fresh sample screened every round
    "default+pop16": {"population": 16},
    # a candidate whose first two single runs are 3x slower than the best is not timed in full
    "default+cutoff3": {"timing_cutoff": 3.0},
    "default+pop16+cutoff3": {"population": 16, "timing_cutoff": 3.0},
    # the same, measured before 2026-12-05 03:40 with colt, when every root sample's children went
    # to the largest model (its rows were renamed; a superseded configuration never counts as the same run)
    "default+pop16-largest": {"population": 16},
    "default+fresh1024": {"fresh_samples": 1024},
    # each round the best-scored sample of the best-scored sketch(es) the tree lacks, measured
    "default+scout1": {"sketch_scout": 1},
    # refine's parents: the fastest measured and the best-scored of 256 random samples per round
    "default+rfresh256": {"refine_fresh": 256},
    # two of each round's eight measurements: new random samples, unscreened
    "default+random2": {"random_picks": 2},
    # two of each round's eight measurements: the best-scored nodes the LLMs proposed (refine's
    # mutants outscore them, so by default none is measured)
    "default+llm2": {"llm_places": 2},
    # ... and the LLMs may name a decision (directed moves were measured before only where none
    # of their nodes was measured)
    "default+llm2+directed": {"llm_places": 2, "directed": True},
    # each round the LLMs propose a move for each of refine's four parents (the fastest measured), and
    # half of those parents' mutants apply it: their moves compete where the batch is decided
    "default+llmrefine": {"llm_refine": 4},
    # the cost model's scores unused (random), as MetaSchedule's evolutionary search below 100 records
    "default+random-model": {"model_warmup": 100000},
    # the first two rounds picked at random: a model of 8 records ranks unmeasured root samples worse
    # than chance (bench/costmodel.py, "cross"), so it only ranks once it holds 16; the default since
    # the 2026-12-06 znver5 rows, so default rows of before stand for default+warmup0
    "default+warmup16": {"model_warmup": 16},
    "default+warmup0": {"model_warmup": 0},
    # rounds of 4 measurements, not 8: the cost model is retrained twice as often (ranking within a
    # run improves quickly with its records: bench/costmodel.py, "within"); measured with the model
    # used from the first record (default+batch4+warmup0) and, on three seeds, with the warmup
    "default+batch4": {"measure_batch": 4},
    "default+batch4+warmup0": {"measure_batch": 4, "model_warmup": 0},
    "default+batch4+warmup16": {"measure_batch": 4, "model_warmup": 16},
    "default+scout2": {"sketch_scout": 2},
    "default+pop16+scout1": {"population": 16, "sketch_scout": 1},
    # the papers' root population under today's defaults (16 since the 2026-12-05 evening rows)
    "default+pop3": {"population": 3},
    "default+pop3+scout1": {"population": 3, "sketch_scout": 1},
    # refine's 512 mutants over 2 or 4 generations, each mutating the best-scored of the one before
    # (a hill climb on the cost model, moves of 2-4 mutators, as MetaSchedule's evolutionary search
    # evolves 4 generations per round); one seed each on 2026-11-25 (conv 1.63x, MLP 0.48x)
    "default+gen2": {"refine_generations": 2},
    "default+gen4": {"refine_generations": 4},
    # one generation on every layer: the default before 2026-12-06 (night), since when the layers whose
    # design space tiles several stages (the MLP, attention) run 4 (default rows of before are these)
    "default+gen1": {"refine_generations": 1},
    # refine's four parents at most two (one) of one root sample's descendants: a run whose fastest
    # schedules are all mutants of one sample mutates other neighbourhoods too
    "default+lineage2": {"refine_per_lineage": 2},
    "default+lineage1": {"refine_per_lineage": 1},
    # (colt) 8 expansions of the prior's per round beside the LLMs' 8: the tree grows by as many
    # nodes per round as mcts-random's, the LLMs' children added
    "default+prior8": {"prior_expansions": 8},
    # colt's default before prior_expansions became 8 where LLMs expand
    "default+prior0": {"prior_expansions": 0},
    # the prior's children keep their leaf's model (the largest model's share fell to 11% without)
    "default+priorkeep": {"prior_keeps_model": True},
    # an LLM's named mutators as alternatives, one move per child (the models name two to four)
    "default+onemut": {"single_mutator": True},
    # the same where two places of every batch measure the LLMs' best-scored nodes (their hit rate measured)
    "default+llm2+onemut": {"llm_places": 2, "single_mutator": True},
    # the largest model keeps at least 20% of the calls, as the prompt asks (the default since)
    "default+floor20": {"largest_share_floor": 0.2},
    # colt's default before largest_share_floor became 0.2
    "default+floor0": {"largest_share_floor": 0.0},
    # the root population measured before any other node (its samples' best as the run's start)
    "default+popfirst": {"population_first": True},
    "default+restart1": {"restarts": 1},
    "refine512+directed": {"refine": 512, "directed": True},
    "directed": {"directed": True},
}


def settings_for(config: str, seed: int) -> SearchSettings:
    if config.startswith("default"):  # the product's defaults, and what the name adds to them
        return SearchSettings(seed=seed, **CONFIGS[config])
    return SearchSettings.paper(seed=seed, **CONFIGS[config])


#: the settings that tell configurations apart: the levers the paper preset turns off (it names
#: population too), and the search's own settings a configuration changes
LEVER_KEYS = (*PRESETS["paper"], "expansions_per_round", "warm_start", "measure_batch")
#: what a row stored before its lever was a lever key (no configuration had changed it then)
LEVER_BEFORE = {"expansions_per_round": None, "warm_start": False, "measure_batch": 8}


#: settings that only act where LLMs expand the tree, and where a fleet of several does
LLM_ONLY = (
    "directed",
    "screened_to_small",
    "compact_prompt",
    "llm_in_flight",
    "prior_variants",
    "cost_routing",
    "llm_places",
    "llm_refine",
    "prior_keeps_model",
    "largest_share_floor",
    "single_mutator",
)
FLEET_ONLY = ("screened_to_small", "cost_routing", "prior_keeps_model", "largest_share_floor")


@functools.cache
def tiled_stages(layer: str) -> int | None:
    """The stages the layer's design space tiles on a CPU (None: a layer the library lacks)."""
    try:
        spec = bench_kernel(layer)
    except (KeyError, ValueError):
        return None
    from search.engine.compiler import SearchSpace

    return SearchSpace(spec, "llvm").tiled_stages


def levers(row_settings: dict, strategy: str | None = None, layer: str | None = None) -> dict:
    """A row's lever values in full (older rows store only what differs from the papers' search);
    for a strategy without LLMs, without the settings that only act on LLM calls. Settings left
    unset resolve as the run resolved them: by strategy and, given ``layer``, by kernel."""
    full = {**PRESETS["paper"], **LEVER_BEFORE, **row_settings}
    llm = strategy is None or STRATEGIES[strategy].uses_llm
    if strategy is not None:  # unset: the strategy's default, as the run used
        if full["model_warmup"] is None:
            full["model_warmup"] = MODEL_WARMUP[llm]
        if full["prior_expansions"] is None:
            full["prior_expansions"] = PRIOR_EXPANSIONS[llm]
    stages = tiled_stages(layer) if full["refine_generations"] is None and layer is not None else None
    if stages is not None:  # unset: the kernel's default, as the run used
        full["refine_generations"] = default_generations(stages)
    fleet = strategy is None or strategy == "colt"
    return {k: full[k] for k in LEVER_KEYS if (llm or k not in LLM_ONLY) and (fleet or k not in FLEET_ONLY)}


#: configurations whose rows ran code that has changed since, so they never stand for a new run
SUPERSEDED = {"default+pop16-largest", "default-unmemoized", "default-replay-memory"}


def fleet_largest(row: dict) -> str | None:
    """The largest model of the fleet an LLM row ran (None: a row without LLMs)."""
    return (row.get("llm") or {}).get("largest_model") if STRATEGIES[row["strategy"]].uses_llm else None


def stale(row: dict) -> bool:
    """A row that stands for no new run: its configuration's code has changed since, or it is an
    LLM row of another fleet than the local one of today (before 2026-12-06 the largest model was
    Qwen2.5-Coder-0.5B; single-llm is that model alone, so its rows changed with it)."""
    if row["config"] in SUPERSEDED:
        return True
    largest = fleet_largest(row)
    return largest is not None and largest != LOCAL_LARGEST


def same_run(store: dict, host: dict, layer: str, strategy: str, settings: SearchSettings, args, seed: int) -> bool:
    """A row of the same settings under another configuration name (``default`` is one of the
    named combinations): measured once, reported under both."""
    want = levers(settings.to_dict(), strategy, layer)
    return any(
        not stale(r) and
        machine(r["host"]) == machine(host) and r["layer"] == layer and r["strategy"] == strategy and r["seed"] == seed
        and r.get("trials_budget", r["trials"]) == args.trials and r.get("wall_budget_s") == args.wall_clock
        and levers(r.get("settings") or {}, strategy, layer) == want
        for r in store.values()
    )  # fmt: skip


def key(host: dict, layer: str, strategy: str, config: str, trials: int, seed: int, wall: float | None = None) -> str:
    budget = f"{trials}" if wall is None else f"{trials}+{wall:g}s"
    return f"{machine(host)}|{layer}|{strategy}|{config}|{budget}|{seed}"


def load() -> dict:
    return _store.read(RESULTS, {})


def save(k: str, row: dict) -> None:
    """Add a row (under the file's lock: the other stream may save meanwhile)."""
    _store.update(RESULTS, {}, lambda stored: {**stored, k: row})


def measured_statuses(outcome) -> dict[str, int]:
    """How many measured candidates came back ok, wrong (failed the numpy check), a build or run
    error or a timeout: the trials a run spent on schedules that cannot be its best."""
    return dict(Counter(n.status for n in outcome.result.tree.nodes[1:] if n.status is not None))


def save_records(host: dict, layer: str, k: str, outcome) -> None:
    nodes = [n for n in outcome.result.tree.nodes[1:] if n.status == "ok" and n.latency]
    if not nodes:
        return
    path = RECORDS / host["cpu"] / f"{k.replace('|', '_')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"layer": layer, "records": [[n.candidate.trace_json(), n.latency] for n in nodes]}))


def leave_one_out(host: dict, layer: str) -> WarmStart:
    """The records of every other layer's runs on this CPU model's machines (never this layer's own,
    in any of its formulations: the cost model learns throughput relative to each workload, so a
    machine's speed cancels)."""
    records = []
    for path in sorted((RECORDS / host["cpu"]).glob("*.json")):
        data = json.loads(path.read_text())
        if base_layer(data["layer"]) == base_layer(layer):
            continue
        spec = bench_kernel(data["layer"])
        records += [Record(spec, trace, latency) for trace, latency in data["records"]]
    return WarmStart(records)


def run(args) -> None:
    with_llm = any(STRATEGIES[s].uses_llm for s in args.strategies)
    fleet = load_fleet("local") if with_llm else None
    with local_servers(with_llm):
        run_rows(args, fleet)


def unhealthy_fleet(llm: dict | None, tolerated: float = 0.1) -> str | None:
    """Why a run's LLM calls do not stand for its fleet, or None: a model whose calls got no
    reply (its server failed or timed out, e.g. stopped under the run) more than ``tolerated``
    of the time. Per model: the policy backs off a failing model, so its failures would be a
    small share of the whole fleet's calls."""
    for name, m in ((llm or {}).get("models") or {}).items():
        kinds = m.get("errors_by_kind") or {}
        failed = kinds.get(SERVER_ERROR, 0) + kinds.get(TIMEOUT, 0)
        if failed > tolerated * m["calls"]:
            return f"{failed} of {name}'s {m['calls']} LLM calls got no reply"
    return None


def run_rows(args, fleet) -> None:
    host = host_info()
    for layer in args.kernels:
        for config in args.configs:
            for strategy in args.strategies:
                for seed in args.seeds:
                    k = key(host, layer, strategy, config, args.trials, seed, args.wall_clock)
                    settings = settings_for(config, seed)
                    stored = load()
                    if same_run(stored, host, layer, strategy, settings, args, seed):
                        continue
                    if k in stored:  # a row of this name ran other settings (``default``: the defaults then)
                        k = f"{k}|{time.strftime('%Y-%m-%d %H:%M')}"
                        if k in stored:
                            continue
                    request = RunRequest(
                        kernel=bench_kernel(layer),
                        strategy=strategy,
                        budget=Budget(trials=args.trials, wall_s=args.wall_clock),
                        settings=settings,
                        fleet=fleet if STRATEGIES[strategy].uses_llm else None,
                    ).checked()
                    timer = CallTimer()
                    warm = leave_one_out(host, layer) if settings.warm_start else None
                    started = time.perf_counter()
                    outcome = tune(request, sink=timer, warm=warm)
                    s = outcome.summary()
                    why = unhealthy_fleet(s.get("llm"))
                    if why:  # the row would measure the search without its LLMs; run it again later
                        print(f"{layer} {strategy} {config} seed {seed}: not saved, {why}", flush=True)
                        continue
                    save_records(host, layer, k, outcome)
                    row = {
                        "host": host,
                        "layer": layer,
                        "strategy": strategy,
                        "config": config,
                        "settings": {k: getattr(settings, k) for k in LEVER_KEYS},
                        "seed": seed,
                        "trials": s["trials"],
                        "trials_budget": args.trials,
                        "wall_budget_s": args.wall_clock,
                        "baseline_s": s["baseline_latency_s"],
                        "best_s": s["best_latency_s"],
                        "wall_s": time.perf_counter() - started,
                        "evaluations_per_trial": s.get("evaluations_per_trial"),
                        "nodes": s["nodes"],
                        "stop_reason": s["stop_reason"],
                        "curve": timer.curve,
                        "llm": s.get("llm"),
                        "llm_s": timer.llm_s,
                        "measure_s": s.get("measure_s"),  # building, checking and timing candidates
                        "build_s": s.get("build_s"),
                        "coarse_trials": s.get("coarse_trials"),
                        "statuses": measured_statuses(outcome),  # of the measured candidates
                        # traces replayed and post-processed, and those the replay memory answered
                        "replays": outcome.space.replays,
                        "replays_saved": outcome.space.replays_saved,
                        "sketches": s.get("sketches"),  # with a measured schedule, of
                        "sketches_total": s.get("sketches_total"),  # the design space's
                        "date": time.strftime("%Y-%m-%d %H:%M"),
                        "warm_start": s.get("warm_start"),
                        # per origin (root sample, prior mutator, refine, each LLM): nodes added,
                        # measured, and measurements that set a new best; the final best's origin
                        "origins": timer.origins() if strategy != "evolutionary" else None,
                    }
                    save(k, row)
                    best = f"{s['best_latency_s'] * 1e3:.3f} ms" if s["best_latency_s"] else "no valid schedule"
                    print(
                        f"{layer} {strategy} {config} seed {seed}: {best} "
                        f"in {row['wall_s']:.0f} s, {row['evaluations_per_trial']:.0f} evals/trial, "
                        f"{row['sketches']} of {row['sketches_total']} sketches measured",
                        flush=True,
                    )


PEERS = Path(__file__).resolve().parent / "results" / "peers.json"


def label(row: dict) -> str:
    """A row's configuration name, and how its settings differ from what the name means today
    (a row that ran before a default changed: ``default, compact_prompt=False``)."""
    config, strategy = row["config"], row["strategy"]
    if strategy == "evolutionary" or config not in CONFIGS:
        return config
    layer = row["layer"]
    ran = levers(row.get("settings") or {}, strategy, layer)
    now = levers(settings_for(config, 0).to_dict(), strategy, layer)
    largest = fleet_largest(row)
    fleet = f", largest={largest}" if largest not in (None, LOCAL_LARGEST) else ""
    return config + "".join(f", {k}={ran[k]}" for k in ran if ran[k] != now[k]) + fleet


def report() -> str:
    """Per host and layer: each configuration's best latency (median and min-max over seeds),
    against evolutionary at 64 and 256 and numpy on one thread, measured on the same host."""
    rows = list(load().values())
    peers = json.loads(PEERS.read_text()) if PEERS.exists() else {}
    cells: dict = {}
    for r in rows:  # a wall-clock row is its own cell, whatever number of trials it reached
        budget = (r.get("wall_budget_s") or 0.0, 0 if r.get("wall_budget_s") else r["trials"])
        cells.setdefault((machine(r["host"]), r["layer"], r["strategy"], label(r), budget), []).append(r)
    evo = {
        (where, layer, trials): statistics.median(r["best_s"] for r in rs if r["best_s"])
        for (where, layer, strategy, _, (wall, trials)), rs in cells.items()
        if strategy == "evolutionary" and not wall
    }
    paper = {  # per seed, to compare a configuration with the papers' search seed by seed
        (where, layer, strategy, r["seed"]): r["best_s"]
        for (where, layer, strategy, config, _), rs in cells.items()
        if config == "paper" and strategy != "evolutionary"
        for r in rs
        if r["best_s"]
    }
    out = []
    for (where, layer, strategy, config, (wall, trials)), rs in sorted(cells.items()):
        best = sorted(r["best_s"] * 1e3 for r in rs if r["best_s"]) or [float("nan")]
        med = statistics.median(best) / 1e3
        paired = [paper[(where, layer, strategy, r["seed"])] / r["best_s"] for r in rs
                  if r["best_s"] and (where, layer, strategy, r["seed"]) in paper]  # fmt: skip
        ref = statistics.geometric_mean(paired) if paired else None
        e256 = evo.get((where, layer, 256))
        numpy = (peers.get(f"{where}|{base_layer(layer)}") or {}).get("numpy_s")
        out.append(
            [
                where,
                layer,
                f"{strategy}@{trials}"
                if not wall
                else f"{strategy}@{wall:g}s ({statistics.median(r['trials'] for r in rs):.0f} trials)",
                config,
                ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"])),
                f"{statistics.median(best):.3f} ({best[0]:.3f}-{best[-1]:.3f})",
                f"{ref:.2f}" if ref and strategy != "evolutionary" else "-",
                f"{e256 / med:.2f}" if e256 else "-",
                f"{numpy / med:.2f}" if numpy else "-",
                f"{statistics.median(r['wall_s'] for r in rs):.0f}",
                f"{statistics.median(r['evaluations_per_trial'] or 0 for r in rs):.0f}",
                *llm_cells(rs),
            ]
        )
    return table(
        [
            "host",
            "layer",
            "strategy",
            "config",
            "seeds",
            "best ms: median (min-max)",
            "speed vs paper, same seeds (geomean)",
            "speed vs evolutionary@256",
            "speed vs numpy (1 thread)",
            "wall s (median)",
            "cost-model evals / trial",
            "LLM calls",
            "largest-model share",
            "USD",
            "LLM s / call",
        ],
        out,
    )


def llm_cells(rows: list[dict]) -> list[str]:
    """Medians over the seeds of the LLM figures (calls, the largest model's share, USD, seconds
    per call); dashes for a strategy without LLMs."""
    llm = [r["llm"] for r in rows if r.get("llm") and r["llm"].get("llm_calls")]
    if not llm:
        return ["-"] * 4
    per_call = [
        r["llm_s"] / r["llm"]["llm_calls"] for r in rows if r.get("llm_s") and (r.get("llm") or {}).get("llm_calls")
    ]
    return [
        f"{statistics.median(x['llm_calls'] for x in llm):.0f}",
        f"{statistics.median(x['largest_share'] for x in llm):.0%}",
        f"${statistics.median(x['usd'] for x in llm):.5f}",
        f"{statistics.median(per_call):.2f}" if per_call else "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", nargs="+", default=list(PAPER_LAYERS))
    parser.add_argument("--strategies", nargs="+", default=["mcts-random"], choices=list(STRATEGIES))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--wall-clock", type=float, default=None)
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    parser.add_argument("--docs", action="store_true", help="with --report: write it into docs/benchmarks.md")
    args = parser.parse_args()
    if args.report:
        body = report()
        print(body)
        if args.docs:
            write_section("ablation", "### Search levers: ablation\n\n" + LEAD + "\n\n" + body)
    else:
        run(args)


if __name__ == "__main__":
    main()
