"""bench/repeat.py: the spread of one run repeated, and the trial at which repeats parted."""

from bench.repeat import parted, report

HOST = {"cpu": "znver4", "machine_id": "eec9d6"}


def rep(best_ms: float, schedules: list[str], **extra) -> dict:
    return {"host": HOST, "layer": "deepseek-r1-moe", "strategy": "mcts-random", "config": "default", "seed": 0,
            "trials": 64, "best_s": best_ms / 1e3, "schedules": schedules, **extra}  # fmt: skip


def test_repeats_part_at_the_first_schedule_they_measured_differently():
    assert parted(["a", "b", "c"], ["a", "b", "x"]) == 3
    assert parted(["a", "b"], ["a", "b"]) is None
    assert parted(["a"], ["b"]) == 1
    assert parted(["a", "b"], ["a"]) == 2  # one run stopped early


def test_the_report_gives_each_group_its_spread_and_where_its_repeats_parted():
    rows = [rep(1.0, ["a", "b", "c"]), rep(2.0, ["a", "b", "d"]), rep(1.5, ["a", "x", "y"]),
            rep(3.0, ["q"], seed=1)]  # fmt: skip
    lines = report(rows).splitlines()
    assert len(lines) == 4  # header, rule, one line per (machine, layer, strategy, config, seed)
    assert (
        "| znver4-eec9d6 | deepseek-r1-moe | mcts-random@64 | default | 0 | 3 | 1.500 (1.000-2.000) | 2.00x | 2-3 |"
        in lines
    )
    assert lines[3].endswith("| 1 | 1 | 3.000 (3.000-3.000) | 1.00x | - |")
