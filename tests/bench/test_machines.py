"""Benchmark rows pair only with rows of the same machine: two machines of one CPU model ran
26-29% apart (emeraldrapids, 2026-12-05), so the CPU model alone does not name a machine."""

from types import SimpleNamespace

from bench.ablation import key, same_run, settings_for
from bench.strategies import host_info, machine

OLD = {"cpu": "emeraldrapids", "cores": 1}  # a row from before boots were recorded
HERE = {"cpu": "emeraldrapids", "cores": 1, "calibration_ms": 21.4, "machine_id": "19f57b"}
THERE = {"cpu": "emeraldrapids", "cores": 1, "calibration_ms": 16.4, "machine_id": "a0c3e1"}


def test_this_machine_is_named_by_its_cpu_and_boot():
    host = host_info()
    assert host["calibration_ms"] > 0 and len(host["machine_id"]) == 6
    assert machine(host) == f"{host['cpu']}-{host['machine_id']}"
    assert machine(host_info()) == machine(host)  # the same boot, the same name
    assert machine(OLD) == "emeraldrapids"  # older rows stay under the CPU model


def stored(host: dict) -> dict:
    settings = settings_for("default", 0).to_dict()
    row = {"host": host, "layer": "deepseek-r1-moe", "strategy": "mcts-random", "config": "default", "seed": 0,
           "trials": 64, "trials_budget": 64, "wall_budget_s": None, "settings": settings}  # fmt: skip
    return {key(host, "deepseek-r1-moe", "mcts-random", "default", 64, 0): row}


def test_a_row_of_another_machine_of_the_same_cpu_is_not_the_same_run():
    args = SimpleNamespace(trials=64, wall_clock=None)
    settings = settings_for("default", 0)
    for other in (OLD, THERE):  # measured elsewhere: this machine measures its own row
        assert not same_run(stored(other), HERE, "deepseek-r1-moe", "mcts-random", settings, args, 0)
    assert same_run(stored(HERE), HERE, "deepseek-r1-moe", "mcts-random", settings, args, 0)
    assert not same_run(stored(HERE), HERE, "deepseek-r1-moe", "mcts-random", settings_for("default+pop16", 0), args, 0)
    assert key(HERE, "flux-conv2d", "colt", "default", 64, 1) == "emeraldrapids-19f57b|flux-conv2d|colt|default|64|1"
