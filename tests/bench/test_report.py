"""bench/report.py: the headline ratios are of the same cell medians the per-layer table shows."""

import pytest

from bench.report import headline, spread


def row(best_s: float, usd: float | None = None) -> dict:
    return {"best_s": best_s, "llm": {"usd": usd} if usd else None}


def test_a_headline_ratio_is_of_the_medians_the_table_shows_even_with_two_seeds():
    cells = {
        ("deepseek-r1-moe", "colt", 64): [row(0.001, 2.0), row(0.003, 4.0)],  # median 2 ms (speeds would give 1.5)
        ("deepseek-r1-moe", "evolutionary", 256): [row(0.001)],
        ("deepseek-r1-moe", "single-llm", 64): [row(0.004, 6.0)],
    }
    assert spread(cells[("deepseek-r1-moe", "colt", 64)]) == "2.000 (1.000-3.000)"
    lines = dict(headline(cells))
    # 1 ms / 2 ms; with colt's two seeds drawn again, its median is 1, 2 or 3 ms: 1.00, 0.50 or 0.33
    assert lines["colt@64 / evolutionary@256 speedup"] == "0.50 (1 layers; seeds resampled, 90%: 0.33-1.00)"
    assert lines["colt / single-llm speedup"] == "2.00 (1 layers; seeds resampled, 90%: 1.33-4.00)"
    assert lines["colt / single-llm USD"] == "0.50 (1 layers; seeds resampled, 90%: 0.33-0.67)"
    assert lines["mcts-random@64 / evolutionary@256 speedup"] == "not measured"


def test_the_headline_interval_is_as_wide_as_the_seeds_spread():
    """Seeds that agree leave a ratio where it is; seeds far apart widen its interval, and a layer
    whose seeds agree narrows the geometric mean's."""
    from bench.report import interval

    steady = [row(0.002), row(0.002), row(0.002)]
    spread_out = [row(0.001), row(0.002), row(0.004)]
    reference = [row(0.002)]
    assert interval([(steady, reference)], "speed") == (1.0, 1.0)
    lo, hi = interval([(spread_out, reference)], "speed")
    assert lo < 1.0 < hi and hi / lo > 2  # medians of 1-4 ms drawn again
    lo2, hi2 = interval([(spread_out, reference), (steady, reference)], "speed")
    assert lo < lo2 < 1.0 < hi2 < hi


def test_rows_of_code_that_has_changed_since_stand_for_no_cell():
    """A row of the same settings that ran before the search changed (here: before its memories)
    is kept in the store, but the report's cells take only rows of the code as it is."""
    from bench.ablation import settings_for
    from bench.report import select_rows

    host = {"cpu": "emeraldrapids", "machine_id": "c9cc21"}
    settings = settings_for("default", 0).to_dict()

    def stored(config: str, best_s: float) -> dict:
        return {"host": host, "layer": "flux-attention", "strategy": "mcts-random", "config": config,
                "settings": settings, "seed": 0, "trials": 40, "wall_budget_s": 300.0, "best_s": best_s}  # fmt: skip

    store = {"a": stored("default-unmemoized", 0.008), "b": stored("default", 0.004)}
    cells = select_rows(store, "emeraldrapids-c9cc21", "default", wall=True)
    assert [r["best_s"] for r in cells[("flux-attention", "mcts-random", 0)]] == [0.004]


def test_a_report_over_several_machines_of_one_cpu_model_says_how_fast_each_is():
    """Machines of one CPU model complete each other's cells (MetaSchedule's own rows do not depend
    on this project's code); the note gives each machine's rows, calibration and numpy's time."""
    from bench.report import machines_note, numpy_time, select_rows

    def stored(machine_id: str, strategy: str, best_s: float, calibration: float) -> dict:
        host = {"cpu": "znver4", "machine_id": machine_id, "calibration_ms": calibration}
        return {"host": host, "layer": "flux-conv2d", "strategy": strategy, "config": "paper", "settings": {},
                "seed": 0, "trials": 256, "best_s": best_s}  # fmt: skip

    store = {
        "a": stored("aaaaaa", "evolutionary", 0.002, 13.8),
        "b": stored("bbbbbb", "evolutionary", 0.003, 14.2),
        "c": stored("cccccc", "evolutionary", 0.009, 30.0),  # a third machine, not asked for
    }
    cells = select_rows(store, ["znver4-aaaaaa", "znver4-bbbbbb"], "default")
    assert sorted(r["best_s"] for r in cells[("flux-conv2d", "evolutionary", 256)]) == [0.002, 0.003]
    peers = {"znver4-aaaaaa|flux-conv2d": {"numpy_s": 0.010}, "znver4-bbbbbb|flux-conv2d": {"numpy_s": 0.011}}
    hosts = ["znver4-aaaaaa", "znver4-bbbbbb"]
    assert numpy_time(peers, hosts, "flux-conv2d") == pytest.approx(0.0105)
    note = machines_note(cells, peers, hosts)
    assert "`znver4-aaaaaa` (1 rows: evolutionary@256 x1; calibration 13.8-13.8 ms)" in note
    assert "differs between them by 1.10-1.10x (1 layers)" in note


def test_the_wall_clock_table_compares_each_tree_cell_with_evolutionary_and_says_where_it_is_behind():
    """Equal wall-clock: each tree cell's speed over evolutionary's on its layer (median bests), and
    the goal's verdict per strategy (faster on every layer), naming the layers where it is not."""
    from bench.report import wall_rows, wall_verdict

    def at(best_s: float, seed: int = 0, llm_s: float | None = None) -> dict:
        return {"best_s": best_s, "seed": seed, "wall_budget_s": 300.0, "trials": 60, "llm_s": llm_s}

    cells = {
        ("deepseek-r1-moe", "evolutionary", 0): [at(0.002), at(0.004, 1)],  # median 3 ms
        ("deepseek-r1-moe", "mcts-random", 0): [at(0.001, 1), at(0.002)],  # 1.5 ms: 2x evolutionary
        ("deepseek-r1-moe", "colt", 0): [at(0.004, llm_s=120.0), at(0.002, 1, llm_s=100.0)],  # 3 ms: 1x
        ("flux-conv2d", "evolutionary", 0): [at(0.002)],
        ("flux-conv2d", "mcts-random", 0): [at(0.001)],
        ("flux-conv2d", "colt", 0): [at(0.004, llm_s=150.0)],  # 0.5x
        ("llama4-scout-mlp", "colt", 0): [at(0.001)],  # no evolutionary cell: not judged
    }
    rows = {(r[0], r[1]): r for r in wall_rows(cells)}
    assert rows[("deepseek-r1-moe", "mcts-random")][3:7] == ["0, 1", "1.500 (1.000-2.000)", "2.00x", "60"]
    assert rows[("deepseek-r1-moe", "colt")][5:] == ["1.00x", "60", "110"]
    assert rows[("flux-conv2d", "colt")][5] == "0.50x"
    assert rows[("deepseek-r1-moe", "evolutionary")][5] == "-"
    assert rows[("llama4-scout-mlp", "colt")][5] == "-"
    verdict = wall_verdict(cells)
    assert verdict.startswith("mcts-random is faster than evolutionary on 2 of 2 layers; ")
    assert verdict.endswith(
        "colt is faster than evolutionary on 0 of 2 layers (not on deepseek-r1-moe 1.00x, flux-conv2d 0.50x)."
    )  # a tie is not faster


def test_a_layer_measured_only_in_an_old_formulation_stands_in_it_and_the_note_says_so():
    """When the library rewrites a layer its old rows are renamed (``flux-attention-staged``); a
    report of machines that measured only those keeps its cells under the library's name and
    names the formulation; where today's formulation was measured, the old rows stay out."""
    from bench.report import select_rows, stand_ins

    host = {"cpu": "znver4", "machine_id": "aaaaaa"}

    def stored(layer: str, best_s: float) -> dict:
        return {"host": host, "layer": layer, "strategy": "evolutionary", "config": "paper", "settings": {},
                "seed": 0, "trials": 256, "best_s": best_s}  # fmt: skip

    old_only = {"a": stored("flux-attention-staged", 0.004), "b": stored("llama3-8b-attention-fused", 0.009)}
    cells = select_rows(old_only, "znver4-aaaaaa", "default")
    assert [r["best_s"] for r in cells[("flux-attention", "evolutionary", 256)]] == [0.004]
    assert [r["best_s"] for r in cells[("llama3-8b-attention", "evolutionary", 256)]] == [0.009]
    assert stand_ins(cells) == {
        "flux-attention": "flux-attention-staged",
        "llama3-8b-attention": "llama3-8b-attention-fused",
    }
    both = {**old_only, "c": stored("flux-attention", 0.003)}
    cells = select_rows(both, "znver4-aaaaaa", "default")
    assert [r["best_s"] for r in cells[("flux-attention", "evolutionary", 256)]] == [0.003]
    assert ("flux-attention-staged", "evolutionary", 256) in cells  # kept apart, not reported
    assert stand_ins(cells) == {"llama3-8b-attention": "llama3-8b-attention-fused"}


def test_a_layer_measured_on_one_machine_of_several_is_compared_with_numpy_on_that_machine():
    """Where one machine measured a layer's cells (attention, rewritten since the others ran), the
    numpy column beside it is that machine's numpy, not the median over machines that ran other layers."""
    from bench.report import layer_rows

    def stored(machine_id: str, layer: str, best_s: float) -> dict:
        host = {"cpu": "znver4", "machine_id": machine_id}
        return {"host": host, "layer": layer, "strategy": "mcts-random", "seed": 0, "trials": 64, "best_s": best_s,
                "baseline_s": 0.1, "wall_s": 60.0}  # fmt: skip

    cells = {
        ("flux-attention", "mcts-random", 64): [stored("cccccc", "flux-attention", 0.004)],
        ("flux-conv2d", "mcts-random", 64): [stored("aaaaaa", "flux-conv2d", 0.002)],
    }
    hosts = ["znver4-aaaaaa", "znver4-bbbbbb", "znver4-cccccc"]
    peers = {f"{h}|{layer}": {"numpy_s": t} for h, t in zip(hosts, (0.002, 0.003, 0.008), strict=True) for layer in
             ("flux-attention", "flux-conv2d")}  # fmt: skip
    table = {(r[0], r[1]): r for r in layer_rows(cells, peers, hosts)}
    assert table[("flux-attention", "numpy (OpenBLAS, 1 thread)")][4] == "8.000"  # cccccc's, not the median 3.000
    assert table[("flux-attention", "mcts-random")][7] == "2.00"  # 8 ms / 4 ms
    assert table[("flux-conv2d", "numpy (OpenBLAS, 1 thread)")][4] == "2.000"
