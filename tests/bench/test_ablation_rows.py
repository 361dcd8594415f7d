"""The benchmark keeps only rows that measured what they name."""

from bench.ablation import unhealthy_fleet
from search.engine.llm import PARSE_ERROR, SERVER_ERROR, TIMEOUT
from search.engine.policy import ModelStats


def fleet(**models: tuple[int, dict[str, int]]) -> dict:
    """A run summary's ``llm`` part, as the policy's per-model statistics write it."""
    out = {}
    for name, (calls, errors) in models.items():
        stats = ModelStats(calls=calls)
        for kind, n in errors.items():
            stats.error(kind, n)
        out[name] = stats.to_dict()
    return {"models": out}


def test_a_row_whose_model_server_failed_its_calls_is_not_kept():
    # what a stream saved when its servers were stopped under it: every call a server error
    assert unhealthy_fleet(fleet(qwen=(58, {SERVER_ERROR: 58}))) == "58 of qwen's 58 LLM calls got no reply"
    # one dead model of three: the policy backs off it, so its failures are few of the fleet's calls
    dead = fleet(smollm=(40, {}), qwen=(12, {}), gemma=(4, {SERVER_ERROR: 3, TIMEOUT: 1}))
    assert unhealthy_fleet(dead) == "4 of gemma's 4 LLM calls got no reply"
    assert unhealthy_fleet(fleet(qwen=(30, {TIMEOUT: 4}))) == "4 of qwen's 30 LLM calls got no reply"


def test_replies_the_policy_rejects_and_a_stray_failure_do_not_discard_a_row():
    assert unhealthy_fleet(fleet(smollm=(26, {"no_child": 2, PARSE_ERROR: 9}), qwen=(30, {SERVER_ERROR: 3}))) is None
    assert unhealthy_fleet(None) is None and unhealthy_fleet({"models": {}}) is None  # no LLM: nothing to check


def test_rows_of_another_fleet_stand_for_no_new_run_but_keep_their_label():
    """LLM rows that ran the fleet whose largest model was Qwen2.5-Coder-0.5B are history: a new
    run is measured (same_run does not reuse them), the report and the pairs leave them out, and
    the ablation table names the fleet they ran; rows without LLMs are not touched."""
    from types import SimpleNamespace

    from bench.ablation import LOCAL_LARGEST, label, same_run, settings_for, stale

    assert LOCAL_LARGEST == "qwen2.5-coder-1.5b"
    host = {"cpu": "znver4", "machine_id": "abcdef"}
    settings = settings_for("default", 0)

    def row(strategy: str, largest: str | None) -> dict:
        llm = {"largest_model": largest, "llm_calls": 30} if largest else None
        return {"host": host, "layer": "flux-conv2d", "strategy": strategy, "config": "default", "seed": 0,
                "trials": 64, "trials_budget": 64, "settings": settings.to_dict(), "llm": llm}  # fmt: skip

    old, new, random = row("colt", "qwen2.5-coder-0.5b"), row("colt", LOCAL_LARGEST), row("mcts-random", None)
    assert [stale(r) for r in (old, new, random)] == [True, False, False]
    assert label(old) == "default, largest=qwen2.5-coder-0.5b" and label(new) == "default" == label(random)
    args = SimpleNamespace(trials=64, wall_clock=None)
    assert not same_run({"a": old}, host, "flux-conv2d", "colt", settings, args, 0)
    assert same_run({"a": new}, host, "flux-conv2d", "colt", settings, args, 0)
