"""The run request: one document, one table of limits, one message per bad value, and the
stop rule every strategy shares."""

import math

import pytest

from search.engine.llm import Fleet, ModelSpec
from search.engine.request import (
    LIMITS,
    Budget,
    RequestError,
    RunRequest,
    SearchSettings,
    StopRule,
    build_request,
)
from search.engine.workloads import LIBRARY

FLEET = Fleet.of(
    [
        ModelSpec("small", "openai/small", 1e8),
        ModelSpec("mid", "openai/mid", 3e8),
        ModelSpec("large", "openai/large", 5e8),
    ]
)


def test_a_document_becomes_a_request_and_round_trips():
    doc = {
        "kernel": "gemm-128",
        "strategy": "colt",
        "models": ["small", "large"],
        "budget": {"trials": 32, "usd": 0.5},
        "settings": {"branching": 3, "lam": 0.5},
        "timing": {"number": 1},
    }
    request = build_request(doc, offered_fleet=FLEET)
    assert request.kernel == LIBRARY["gemm-128"] and request.budget == Budget(trials=32, usd=0.5)
    assert request.settings == SearchSettings(branching=3, lam=0.5)
    assert request.timing.number == 1 and request.timing.repeat == 5
    assert request.fleet.names == ["small", "large"]
    assert build_request(request.to_dict(), stored=True) == request  # the stored form reads back the same


def test_a_run_stored_before_a_setting_existed_resumes_with_what_it_ran():
    """A run stored before ``model_warmup`` existed used its cost model from the first record; its
    default is by strategy now (16 for mcts-random), and the stored run reads back as it ran (a
    new request gets the default)."""
    doc = {"kernel": "gemm-128", "strategy": "mcts-random", "settings": {"population": 3}}
    assert build_request(doc).settings.model_warmup is None and SearchSettings().warmup(uses_llm=False) == 16
    old = build_request(doc, stored=True)
    assert old.settings.model_warmup == 0 and old.settings.population == 3
    again = build_request(old.to_dict(), stored=True)  # stored again (it is written whole now): the same
    assert again == old and again.to_dict()["settings"]["model_warmup"] == 0
    assert build_request({**doc, "settings": {"model_warmup": 16}}, stored=True).settings.model_warmup == 16


def test_every_bad_value_is_named_at_once():
    with pytest.raises(RequestError) as err:
        build_request(
            {
                "kernel": {"op": "gemm", "shape": {"M": 0, "N": 8, "K": 8}},
                "target": "llvm\n",
                "strategy": "mcts-random",
                "budget": {"trials": 1.5, "wall_s": math.inf},
                "settings": {"seed": -1, "c": "1"},
                "colour": "red",
            }
        )
    assert err.value.errors == {
        "kernel": "dimension M must be positive, got 0",
        "target": "unknown target 'llvm\\n'; use llvm, cuda or cuda-smXY (e.g. cuda-sm90)",
        "budget.trials": "trials must be an integer between 1 and 100000",
        "budget.wall_s": "wall_s must be a number between 1 and 604800",
        "settings.seed": "seed must be an integer between 0 and 2147483647",
        "settings.c": "c must be a number between 0 and 100",
        "colour": "unknown request field 'colour'",
    }


@pytest.mark.parametrize("section, name", [(s, n) for s, limits in LIMITS.items() for n in limits])
def test_each_limit_admits_its_bounds_and_refuses_beyond(section, name):
    limit = LIMITS[section][name]
    for ok in (limit.hi, limit.lo + (1 if limit.open_lo else 0)):
        build_request({"kernel": "gemm-128", section: {name: ok}})
    for bad in (limit.hi + 1, limit.lo - 1, True):
        with pytest.raises(RequestError) as err:
            build_request({"kernel": "gemm-128", section: {name: bad}})
        assert err.value.errors == {f"{section}.{name}": limit.message(name)}


def test_the_fleet_is_resolved_by_name_for_llm_strategies_only():
    assert build_request({"kernel": "gemm-128", "models": ["small"]}, offered_fleet=FLEET).fleet is None
    single = build_request({"kernel": "gemm-128", "strategy": "single-llm"}, offered_fleet=FLEET)
    assert single.fleet.names == ["large"]  # the largest when several are offered
    with pytest.raises(RequestError, match="colt needs at least two models"):
        build_request({"kernel": "gemm-128", "strategy": "colt", "models": ["mid"]}, offered_fleet=FLEET)
    with pytest.raises(RequestError, match="unknown model"):
        build_request({"kernel": "gemm-128", "strategy": "colt", "models": ["mid", "huge"]}, offered_fleet=FLEET)
    with pytest.raises(RequestError, match="needs a fleet of LLMs"):
        build_request({"kernel": "gemm-128", "strategy": "colt"})


def test_a_request_built_in_code_is_checked():
    assert RunRequest(kernel=LIBRARY["gemm-128"]).checked().budget.trials == 64
    with pytest.raises(RequestError, match="branching must be"):
        RunRequest(kernel=LIBRARY["gemm-128"], settings=SearchSettings(branching=99)).checked()


def test_the_stop_rule_names_the_first_budget_spent():
    now = [0.0]
    cancelled = [False]
    rule = StopRule(Budget(trials=10, llm_calls=5, usd=1.0, wall_s=60), lambda: cancelled[0], clock=lambda: now[0])
    assert rule.reason(trials=3, llm_calls=4, usd=0.5) is None
    assert rule.reason(trials=10) == "trial budget spent"
    assert rule.reason(trials=3, llm_calls=5) == "LLM call budget spent"
    assert rule.reason(trials=3, usd=1.0) == "USD budget spent"
    now[0] = 61.0
    assert rule.interrupt() == "wall-clock budget spent" and rule.reason(trials=3) == "wall-clock budget spent"
    cancelled[0] = True
    assert rule.interrupt() == "cancelled"  # a cancel comes before everything but the trials


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"strategy": ["colt"]}, "strategy"),
        ({"strategy": "colt", "fleet": [1, 2]}, "fleet"),
        ({"strategy": "colt", "models": "small"}, "models"),
        ({"timing": {"check": "no"}}, "timing.check"),
        ({"budget": [1]}, "budget"),
        ({"kernel": 7}, "kernel"),
    ],
)
def test_documents_of_the_wrong_shape_are_request_errors(doc, field):
    with pytest.raises(RequestError) as err:
        build_request({"kernel": "gemm-128", **doc}, offered_fleet=FLEET)
    assert field in err.value.errors


def test_a_user_names_models_and_never_defines_them():
    """An endpoint, a price or a key variable comes from the server's fleet, never from a user:
    otherwise a request could send COLT_SECRET_KEY to an endpoint of its own."""
    evil = [{"name": "x", "model": "openai/x", "params": 1e9, "api_base": "https://attacker.example/v1",
             "api_key_env": "COLT_SECRET_KEY"}]  # fmt: skip
    with pytest.raises(RequestError) as err:
        build_request({"kernel": "gemm-128", "strategy": "single-llm", "fleet": evil}, offered_fleet=FLEET)
    assert err.value.errors == {"fleet": "unknown request field 'fleet'"}
    stored = build_request({"kernel": "gemm-128", "strategy": "single-llm", "fleet": evil}, stored=True)
    assert stored.fleet.names == ["x"]  # what this code stored itself reads back


def test_stored_values_outside_todays_limits_still_read_back():
    doc = {"kernel": "gemm-128", "budget": {"trials": 12, "wall_s": 0.5}, "settings": {"branching": 40, "seed": -1}}
    request = build_request(doc, stored=True)
    assert request.budget.wall_s == 0.5 and request.settings.branching == 40 and request.settings.seed == -1


@pytest.mark.parametrize("value", [10**400, -(10**400), float("inf")])
def test_numbers_of_any_size_are_messages_not_crashes(value):
    with pytest.raises(RequestError) as err:
        build_request({"kernel": "gemm-128", "budget": {"trials": value, "usd": value}})
    assert set(err.value.errors) == {"budget.trials", "budget.usd"}


def test_a_kernel_name_is_plain_text():
    with pytest.raises(RequestError, match="a kernel name is"):
        build_request({"kernel": {"op": "gemm", "shape": {"M": 8, "N": 8, "K": 8}, "name": "x\nimport os"}})


def test_the_paper_preset_turns_every_lever_off_and_explicit_values_override_it():
    paper = build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).settings
    assert paper == SearchSettings.paper()
    assert (paper.variants, paper.measured_reward, paper.fresh_samples, paper.refine) == (1, False, 0, 0)
    assert (paper.compact_prompt, paper.screened_to_small, paper.llm_in_flight) == (False, False, 1)
    one = build_request({"kernel": "gemm-128", "settings": {"preset": "paper", "refine": 64}}).settings
    assert one == SearchSettings.paper(refine=64)  # one lever on, against the papers' search
    assert build_request({"kernel": "gemm-128"}).settings == SearchSettings()  # no preset: the defaults
    stored = build_request(build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).to_dict(),
                           stored=True)  # fmt: skip
    assert stored.settings == paper  # a stored run keeps its values, not the name of a preset


@pytest.mark.parametrize("preset", ["papers", 3, None, ""])
def test_an_unknown_preset_is_named(preset):
    with pytest.raises(RequestError) as err:
        build_request({"kernel": "gemm-128", "settings": {"preset": preset}})
    assert "unknown preset" in err.value.errors["settings.preset"]


def test_the_cost_models_warmup_defaults_by_whether_llms_expand_and_a_set_value_wins():
    """Unset, ``model_warmup`` is 16 for a strategy without LLMs and 0 where LLMs expand (measured
    per strategy, docs/benchmarks.md); a value the user sets, or the paper preset's 0, applies to
    every strategy; the limit still holds."""
    unset = SearchSettings()
    assert (unset.warmup(uses_llm=False), unset.warmup(uses_llm=True)) == (16, 0)
    for value in (0, 8, 16):
        settings = build_request({"kernel": "gemm-128", "settings": {"model_warmup": value}}).settings
        assert settings.warmup(uses_llm=False) == settings.warmup(uses_llm=True) == value
    paper = build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).settings
    assert paper.warmup(uses_llm=False) == 0
    with pytest.raises(RequestError, match="model_warmup"):
        build_request({"kernel": "gemm-128", "settings": {"model_warmup": -1}})


def test_refines_generations_default_by_the_kernels_tiled_stages_and_a_set_value_wins():
    """Unset, ``refine_generations`` is 4 where the design space tiles several stages (attention,
    a gated MLP) and 1 where it tiles one or none (measured per layer, docs/benchmarks.md); a value
    the user sets, or the paper preset's 1, applies to every kernel; a run stored before the
    default changed resumes with the one generation it ran."""
    unset = SearchSettings()
    assert [unset.generations(n) for n in (0, 1, 2, 3)] == [1, 1, 4, 4]
    for value in (1, 2, 8):
        settings = build_request({"kernel": "gemm-128", "settings": {"refine_generations": value}}).settings
        assert settings.generations(1) == settings.generations(3) == value
    paper = build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).settings
    assert paper.generations(3) == 1
    assert build_request({"kernel": "gemm-128", "settings": {}}, stored=True).settings.generations(3) == 1
    for bad in (0, 9):
        with pytest.raises(RequestError, match="refine_generations"):
            build_request({"kernel": "gemm-128", "settings": {"refine_generations": bad}})


def test_the_priors_expansions_default_by_whether_llms_expand_and_a_set_value_wins():
    """Unset, ``prior_expansions`` is 8 where LLMs expand the tree (its 8 LLM expansions per round
    then have 8 of the prior's beside them, as many as mcts-random's 16) and 0 for mcts-random
    (measured in same-seed pairs, docs/benchmarks.md); a value the user sets, or the paper
    preset's 0, applies to every strategy; a run stored before the setting existed resumes with
    none."""
    unset = SearchSettings()
    assert (unset.prior(uses_llm=False), unset.prior(uses_llm=True)) == (0, 8)
    for value in (0, 3, 16):
        settings = build_request({"kernel": "gemm-128", "settings": {"prior_expansions": value}}).settings
        assert settings.prior(uses_llm=False) == settings.prior(uses_llm=True) == value
    paper = build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).settings
    assert paper.prior(uses_llm=True) == 0
    stored = build_request({"kernel": "gemm-128", "settings": {}}, stored=True)
    assert stored.settings.prior(uses_llm=True) == 0
    for bad in (-1, 257, 2.5):
        with pytest.raises(RequestError, match="prior_expansions"):
            build_request({"kernel": "gemm-128", "settings": {"prior_expansions": bad}})


def test_the_largest_models_floor_defaults_to_a_fifth_and_stored_runs_keep_none():
    """``largest_share_floor`` is 0.2 by default (the share the prompt asks the models to keep),
    0 in the paper preset (the prompt's request alone) and for a run stored before the setting
    existed; a share outside 0-1 is refused."""
    assert SearchSettings().largest_share_floor == 0.2
    assert build_request({"kernel": "gemm-128"}).settings.largest_share_floor == 0.2
    paper = build_request({"kernel": "gemm-128", "settings": {"preset": "paper"}}).settings
    assert paper.largest_share_floor == 0.0
    assert build_request({"kernel": "gemm-128", "settings": {}}, stored=True).settings.largest_share_floor == 0.0
    set_ = build_request({"kernel": "gemm-128", "settings": {"largest_share_floor": 0.3}}, stored=True).settings
    assert set_.largest_share_floor == 0.3
    for bad in (-0.1, 1.5, "0.2"):
        with pytest.raises(RequestError, match="largest_share_floor"):
            build_request({"kernel": "gemm-128", "settings": {"largest_share_floor": bad}})
