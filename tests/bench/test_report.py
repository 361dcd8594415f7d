"""bench/report.py: the headline ratios are of the same cell medians the per-layer table shows."""

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
    assert lines["colt@64 / evolutionary@256 speedup"] == "0.50 (1 layers)"  # 1 ms / 2 ms
    assert lines["colt / single-llm speedup"] == "2.00 (1 layers)"
    assert lines["colt / single-llm USD"] == "0.50 (1 layers)"
    assert lines["mcts-random@64 / evolutionary@256 speedup"] == "not measured"


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
