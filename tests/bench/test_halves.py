"""bench/halves.py: what independent half-budget runs would have found, from the rows' curves."""

import pytest

from bench.halves import best_at, cells, compare


def stored(seed: int, curve: list[tuple[int, float]], *, machine_id="abc123", settings=None, **over) -> dict:
    row = {
        "host": {"cpu": "znver4", "machine_id": machine_id},
        "layer": "flux-attention",
        "strategy": "mcts-random",
        "config": "default",
        "settings": settings or {"population": 16},
        "seed": seed,
        "trials_budget": 64,
        "wall_budget_s": None,
        "curve": [[t, b, 0.0, 1.0] for t, b in curve],
    }
    return {**row, **over}


def test_the_best_after_some_trials_is_the_curve_s_last_point_up_to_them():
    row = stored(0, [(8, 9.0), (16, 7.0), (32, 5.0), (40, 4.0), (64, 3.0)])
    assert best_at(row, 32) == 5.0 and best_at(row, 39) == 5.0 and best_at(row, 64) == 3.0
    assert best_at(row, 4) is None


def test_a_cell_compares_its_median_with_the_best_of_every_pair_of_half_runs():
    # seed 0 climbs one basin slowly (10 -> 4), seed 1 is stuck (12 -> 11), seed 2 finds 3 early
    rows = {
        0: stored(0, [(32, 10.0), (64, 4.0)]),
        1: stored(1, [(32, 12.0), (64, 11.0)]),
        2: stored(2, [(32, 3.0), (64, 3.0)]),
    }
    got = compare(rows, 2)
    # one 64-trial run: median 4, slowest 11; two 32-trial runs: min(10, 12) = 10, min(10, 3) = 3,
    # min(12, 3) = 3: median 3, slowest 10
    assert got == {"seeds": 3, "median": 4.0, "restarts_median": 3.0, "worst": 11.0, "restarts_worst": 10.0}
    assert compare(rows, 4) is None  # too few seeds for four parts


def test_cells_are_one_machine_and_one_setting_each_and_skip_other_budgets():
    store = {
        "a": stored(0, [(64, 1.0)]),
        "b": stored(1, [(64, 1.0)]),
        "c": stored(0, [(64, 1.0)], machine_id="def456"),
        "d": stored(0, [(64, 1.0)], settings={"population": 3}),
        "e": stored(0, [(64, 1.0)], trials_budget=256),
        "f": stored(0, [(64, 1.0)], wall_budget_s=300.0),
        "g": stored(0, [(64, 1.0)], strategy="evolutionary"),
        "h": stored(0, [(64, 1.0)], settings={"population": 16, "restarts": 1}),
    }
    got = cells(store, ("mcts-random",), None)
    assert sorted(len(v) for v in got.values()) == [1, 1, 2]
    assert cells(store, ("mcts-random",), ["flux-conv2d"]) == {}


@pytest.mark.parametrize("parts", [1, 3])
def test_parts_must_split_the_budget_evenly(parts, capsys):
    from bench.halves import main

    with pytest.raises(SystemExit):
        main(["--parts", str(parts)])
