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
