"""The benchmark keeps only rows that measured what they name."""

from bench.ablation import unhealthy_fleet


def model(calls: int, server_errors: int = 0, **other: int) -> dict:
    kinds = {"server_error": server_errors, **other} if server_errors else dict(other)
    return {"calls": calls, "errors": sum(kinds.values()), "errors_by_kind": kinds}


def test_a_row_whose_model_server_failed_its_calls_is_not_kept():
    # what a stream saved when its servers were stopped under it: every call a server error
    dead = {"models": {"qwen2.5-coder-0.5b": model(58, server_errors=58)}}
    assert unhealthy_fleet(dead) == "58 of its 58 LLM calls failed at the model server"
    one_of_three = {"models": {"smollm2-135m": model(26), "gemma3-270m": model(6, server_errors=6)}}
    assert unhealthy_fleet(one_of_three) == "6 of its 32 LLM calls failed at the model server"


def test_replies_the_policy_rejects_and_a_stray_server_error_do_not_discard_a_row():
    fleet = {"models": {"smollm2-135m": model(26, no_child=2), "qwen2.5-coder-0.5b": model(30, server_errors=1)}}
    assert unhealthy_fleet(fleet) is None
    assert unhealthy_fleet(None) is None and unhealthy_fleet({"models": {}}) is None  # no LLM: nothing to check
