"""Benchmark rows pair only with rows of the same machine: two machines of one CPU model ran
26-29% apart (emeraldrapids, 2026-12-05), so the CPU model alone does not name a machine."""

from types import SimpleNamespace

from bench.ablation import LEVER_KEYS, key, same_run, settings_for
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
    assert not same_run(stored(HERE), HERE, "deepseek-r1-moe", "mcts-random", settings_for("default+pop3", 0), args, 0)
    assert key(HERE, "flux-conv2d", "colt", "default", 64, 1) == "emeraldrapids-19f57b|flux-conv2d|colt|default|64|1"


def row(host: dict, config: str, seed: int, best_s: float, **extra) -> dict:
    settings = {k: v for k, v in settings_for(config, seed).to_dict().items() if k in LEVER_KEYS}
    return {"host": host, "layer": "flux-conv2d", "strategy": "mcts-random", "config": config, "seed": seed,
            "best_s": best_s, "wall_s": 100.0, "trials": 64, "trials_budget": 64, "settings": settings,
            **extra}  # fmt: skip


def test_a_lever_is_read_from_same_seed_pairs_on_one_machine():
    from bench.pairs import pairs

    store = {
        "a": row(HERE, "default", 0, 0.004, retimed_s=0.002),
        "b": row(HERE, "default+pop3", 0, 0.003, retimed_s=0.001),
        "c": row(HERE, "default", 1, 0.002),
        "d": row(HERE, "default+pop3", 1, 0.004, wall_s=50.0),
        "e": row(THERE, "default+pop3", 2, 0.001),  # another machine's: no pair here
        "f": row(HERE, "default", 2, 0.002),
        "g": row(HERE, "default+pop3", 2, 0.001, trials_budget=256),  # another budget: no pair
        "h": row(HERE, "default", 3, 0.002, settings={**row(HERE, "default", 3, 0)["settings"], "population": 3}),
        "i": row(HERE, "default+pop3", 3, 0.001),  # its base ran other defaults then: no pair
    }
    found = pairs(store, machine(HERE), "default", "default+pop3")
    assert [(p["seed"], p["retimed"]) for p in found] == [(0, True), (1, False)]
    assert found[0]["speed"] == 2.0  # both retimed: the retimed latencies
    assert found[1]["speed"] == 0.5 and found[1]["wall"] == 0.5  # as run


def test_wall_clock_rows_pair_apart_and_the_time_spent_measuring_is_compared():
    from bench.pairs import pairs, summary

    at = {"trials_budget": 100_000, "wall_budget_s": 300.0}
    store = {
        "a": row(HERE, "default", 0, 0.004, measure_s=80.0),
        "b": row(HERE, "default+cutoff3", 0, 0.004, measure_s=40.0),
        "c": row(HERE, "default", 0, 0.003, trials=120, **at),
        "d": row(HERE, "default+cutoff3", 0, 0.002, trials=200, **at),
        "e": row(HERE, "default+cutoff3", 1, 0.002, trials=210, **at),  # no base at seed 1
        "f": row(HERE, "default+cutoff3", 0, 0.002, trials=90, **{**at, "wall_budget_s": 100.0}),  # another budget
    }
    at_trials = pairs(store, machine(HERE), "default", "default+cutoff3")
    assert [(p["measure"], p["trials"]) for p in at_trials] == [(0.5, (64, 64))]
    at_wall = pairs(store, machine(HERE), "default", "default+cutoff3", wall=300.0)
    assert [(p["seed"], p["trials"], p["speed"], p["measure"]) for p in at_wall] == [(0, (120, 200), 1.5, None)]
    assert "measuring 0.50x" in summary(at_trials) and "measuring" not in summary(at_wall)


def test_a_row_pairs_by_the_settings_it_ran_whatever_its_name():
    from bench.pairs import pairs

    ran3 = {**row(HERE, "default", 0, 0)["settings"], "population": 3}  # a ``default`` row from before 16
    store = {
        "a": row(HERE, "default", 0, 0.004, settings=ran3),  # stands for default+pop3 today
        "b": row(HERE, "default+pop16", 0, 0.002),  # stands for default today
        "c": row(HERE, "default", 1, 0.003, settings=ran3),
        "d": row(HERE, "default+pop16", 1, 0.006),
        "e": row(HERE, "default", 1, 0.001),  # the same settings under its own name comes first
    }
    found = pairs(store, machine(HERE), "default+pop3", "default")
    assert [(p["seed"], p["speed"]) for p in found] == [(0, 2.0), (1, 3.0)]
    assert pairs(store, machine(HERE), "default", "default+pop16") == []  # one setting, no lever


def test_a_setting_left_unset_pairs_as_the_run_resolved_it_for_its_layer():
    """``default`` leaves refine's generations unset: 4 on the MLP (three tiled stages), 1 on the
    conv (one). So on the MLP a default+gen4 row is a default run and an old default row (one
    generation) stands for default+gen1; on the conv default+gen1 is default, and +gen4 a lever."""
    from bench.pairs import pairs

    def mlp(config, seed, best_s, **extra):
        return {**row(HERE, config, seed, best_s, **extra), "layer": "llama4-scout-mlp"}

    old = {**row(HERE, "default", 0, 0)["settings"], "refine_generations": 1}  # a default row of before
    store = {
        "a": mlp("default", 0, 0.004, settings=old),
        "b": mlp("default+gen4", 0, 0.002),
        "c": row(HERE, "default", 0, 0.003),
        "d": row(HERE, "default+gen4", 0, 0.006),
    }
    assert [(p["layer"], p["speed"]) for p in pairs(store, machine(HERE), "default+gen1", "default")] == [
        ("llama4-scout-mlp", 2.0)
    ]
    assert [(p["layer"], p["speed"]) for p in pairs(store, machine(HERE), "default", "default+gen4")] == [
        ("flux-conv2d", 0.5)
    ]
    args = SimpleNamespace(trials=64, wall_clock=None)
    rows = {k: {**r, "trials": 64} for k, r in store.items()}
    assert same_run(rows, HERE, "llama4-scout-mlp", "mcts-random", settings_for("default", 0), args, 0)
    assert not same_run(rows, HERE, "flux-conv2d", "mcts-random", settings_for("default+gen2", 0), args, 0)


def test_every_setting_a_configuration_changes_tells_its_rows_apart():
    """A configuration whose setting is not a lever key would read as ``default``: its rows would
    stand for default's runs (and default's for its), and pair with them as the same settings.
    Rows stored before a setting became a lever key read as what every configuration ran then."""
    from bench.ablation import CONFIGS, LEVER_BEFORE, levers

    for config, changes in CONFIGS.items():  # (one may equal default since a default changed: pop16)
        assert set(changes) <= set(LEVER_KEYS), config
    assert levers(settings_for("default+batch4", 0).to_dict()) != levers(settings_for("default", 0).to_dict())
    args = SimpleNamespace(trials=64, wall_clock=None)
    batch4 = settings_for("default+batch4", 0)
    assert batch4.measure_batch == 4
    assert not same_run(stored(HERE), HERE, "deepseek-r1-moe", "mcts-random", batch4, args, 0)
    old = stored(HERE)
    for r in old.values():
        r["settings"] = {k: v for k, v in r["settings"].items() if k not in LEVER_BEFORE}
    assert same_run(old, HERE, "deepseek-r1-moe", "mcts-random", settings_for("default", 0), args, 0)


def test_a_layers_old_formulation_pairs_with_todays_under_one_configuration():
    """``--form -staged``: the rows of ``flux-attention-staged`` are the base, those of
    ``flux-attention`` the other side, both of one configuration; other formulations, other
    layers and other configurations stay out."""
    from bench.pairs import pairs

    def att(layer: str, config: str, seed: int, best_s: float) -> dict:
        return {**row(HERE, config, seed, best_s), "layer": layer}

    store = {
        "a": att("flux-attention-staged", "default", 0, 0.006),
        "b": att("flux-attention", "default", 0, 0.003),
        "c": att("flux-attention-staged", "default", 1, 0.004),
        "d": att("flux-attention", "default", 1, 0.004),
        "e": att("flux-attention-fused", "default", 2, 0.009),  # another formulation: no pair
        "f": att("flux-attention", "default", 2, 0.003),
        "g": att("flux-attention-staged", "default+pop3", 3, 0.009),  # another configuration
        "h": att("flux-attention", "default", 3, 0.003),
        "i": row(HERE, "default", 0, 0.002),  # the conv has no staged formulation
    }
    found = pairs(store, machine(HERE), "default-staged", "default", form="-staged")
    assert [(p["layer"], p["seed"], p["speed"]) for p in found] == [
        ("flux-attention", 0, 2.0),
        ("flux-attention", 1, 1.0),
    ]
