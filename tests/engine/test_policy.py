"""The LLM policy through LiteLLM over real HTTP to a fake OpenAI-compatible server:
joint actions, the next-model fallback chain, course alteration, budgets, faults, secrets."""

import json

import numpy as np
import pytest

from search.engine import events as ev
from search.engine.llm import Fleet, LiteLLMClient, ModelSpec
from search.engine.policy import ExpansionRequest, LLMPolicy, Proposal
from search.engine.request import Budget
from search.engine.tree import Tree
from tests.fakellm import FakeLLMServer, Script
from tests.helpers import free_port

MUTATORS = {"MutateTileSize": 0.9, "MutateComputeLocation": 0.05, "MutateUnroll": 0.03, "MutateParallel": 0.02}


@pytest.fixture
def fake():
    server = FakeLLMServer()
    yield server
    server.close()


def fleet_at(api_base, timeout_s=10.0, key_env=None):
    return Fleet.of(
        [
            ModelSpec("small", "openai/small", 135e6, 0.03, 0.08, api_base, key_env, timeout_s),
            ModelSpec("mid", "openai/mid", 270e6, 0.05, 0.16, api_base, key_env, timeout_s),
            ModelSpec("large", "openai/large", 494e6, 0.10, 0.30, api_base, key_env, timeout_s),
        ]
    )


def make_policy(fleet, **kw):
    policy = LLMPolicy(fleet, LiteLLMClient(), kernel="gemm-128", target="llvm", **kw)
    sink = ev.ListSink()
    policy.bind(sink=sink, rng=np.random.default_rng(0))
    return policy, sink


def request_for(model="small"):
    tree = Tree()
    a = tree.add(tree.root, None, shash="a")
    b = tree.add(a, None, shash="b", expand_model=model)
    b.predicted = 0.5
    return ExpansionRequest(
        leaf=b,
        model=model,
        mutator_probs=MUTATORS,
        trials_used=3,
        trials_budget=16,
        describe=lambda n: {"tile": [[4, 32]], "unroll": [16]},
    )


def test_a_joint_action_is_parsed_accounted_and_recorded(fake):
    fake.scripts["small"] = Script(
        '{"mutators": ["MutateTileSize", "MutateUnroll"], "next_model": "mid"}', prompt_tokens=321, completion_tokens=17
    )
    policy, sink = make_policy(fleet_at(fake.api_base))
    proposal = policy.propose(request_for("small"))
    assert proposal.mutators == ["MutateTileSize", "MutateUnroll"]
    assert proposal.next_model == "mid" and proposal.model == "small" and proposal.call_id == 1
    (call,) = sink.of(ev.LLMCallRecorded)
    assert (call.model, call.prompt_tokens, call.completion_tokens, call.outcome) == ("small", 321, 17, "ok")
    assert call.usd == pytest.approx((321 * 0.03 + 17 * 0.08) / 1e6)
    assert policy.spent() == {"llm_calls": 1, "usd": pytest.approx(call.usd)}
    # the request carried the schema with enums, and the stable system prompt first
    body = fake.requests[-1]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["next_model"]["enum"] == ["small", "mid", "large"]
    assert body["messages"][0]["role"] == "system" and "MutateTileSize" in body["messages"][0]["content"]
    assert "Depth 2, trials 3/16." in body["messages"][1]["content"]


def test_system_prompt_is_byte_identical_across_calls_for_the_prefix_cache(fake):
    policy, _ = make_policy(fleet_at(fake.api_base))
    policy.propose(request_for("small"))
    policy.propose(request_for("mid"))
    assert fake.requests[0]["messages"][0] == fake.requests[1]["messages"][0]


def test_the_settings_choose_the_compact_prompt_or_the_papers(fake):
    from types import SimpleNamespace

    from search.engine.request import Budget, RunRequest, SearchSettings
    from search.engine.strategies import get_strategy
    from search.engine.workloads import get_kernel

    fleet = fleet_at(fake.api_base)
    kernel = get_kernel("gemm-128")
    sent = {}
    for name, settings in (("default", SearchSettings()), ("paper", SearchSettings.paper())):
        request = RunRequest(kernel=kernel, strategy="colt", budget=Budget(trials=8), settings=settings, fleet=fleet)
        # the strategy's own wiring from settings to policy, without a search space or measurer
        policy = get_strategy("colt").make_policy(SimpleNamespace(request=request.checked(), llm_client=None))
        policy.bind(sink=ev.ListSink(), rng=np.random.default_rng(0))
        leaf = request_for("small")
        leaf.leaf.parent.predicted = 0.3
        policy.propose(leaf)
        sent[name] = fake.requests[-1]["messages"]
    assert "Parent (differs in): same decisions; score 0.300" in sent["default"][1]["content"]
    assert "calls/hit rate/errors" in sent["default"][0]["content"]
    assert "Parent: tile [[4, 32]]; unroll [16]; score 0.300" in sent["paper"][1]["content"]
    assert "differs" not in sent["paper"][0]["content"] + sent["paper"][1]["content"]
    # directed moves name decisions by index, so their prompts show every ancestor whole
    assert make_policy(fleet, compact_prompt=True, directed=True)[0].compact_prompt is False


def test_calls_for_several_leaves_are_in_flight_at_once_and_accounted_in_order(fake):
    for name in ("small", "mid", "large"):
        fake.scripts[name] = Script(
            f'{{"mutators": ["MutateUnroll"], "next_model": "{name}"}}', prompt_tokens=50, delay_s=0.3
        )
    policy, sink = make_policy(fleet_at(fake.api_base))
    requests = [request_for(m) for m in ("mid", "small", "large")]
    proposals = policy.propose_many(requests)
    assert fake.peak_in_flight == 3  # all three calls were being answered at the same time
    assert [p.model for p in proposals] == ["mid", "small", "large"]  # each leaf's own model, in order
    assert [p.next_model for p in proposals] == ["mid", "small", "large"]  # each its own reply
    assert [p.call_id for p in proposals] == [1, 2, 3]
    calls = sink.of(ev.LLMCallRecorded)
    assert [(c.call_id, c.model, c.node_id) for c in calls] == [(1, "mid", 2), (2, "small", 2), (3, "large", 2)]
    assert policy.spent()["llm_calls"] == 3 and {s.calls for s in policy.stats.values()} == {1}
    busy, total = fake.busy_s()
    # more than 1.5 calls in flight on average while any was (three overlap fully when nothing else
    # runs; a loaded CI host measured 1.98): peak_in_flight above is the exact check
    assert total > 1.5 * busy
    # one request: an ordinary call
    (single,) = policy.propose_many([request_for("small")])
    assert single.call_id == 4 and single.model == "small"


def test_unknown_next_model_falls_back_best_hit_rate_then_current_then_largest(fake):
    fake.scripts["small"] = Script('{"mutators": ["MutateTileSize"], "next_model": "gpt-5"}')
    fake.scripts["mid"] = Script('{"mutators": ["MutateTileSize"]}')
    policy, sink = make_policy(fleet_at(fake.api_base))
    # nobody has a hit rate yet: the current model
    p = policy.propose(request_for("small"))
    assert p.next_model == "small"
    assert sink.of(ev.LLMCallRecorded)[-1].outcome == "invalid_model"
    assert policy.stats["small"].errors_by_kind == {"invalid_model": 1}
    # mid scores a hit, small a miss: the best hit rate wins
    hit(policy, "mid")
    hit(policy, "small")
    policy.review(request_for("small"), Proposal(["MutateTileSize"], model="small"), 0.9, 0.1)
    assert policy.propose(request_for("small")).next_model == "mid"
    # missing next_model (no error counted) follows the same chain
    assert policy.propose(request_for("mid")).next_model == "mid"
    assert policy.stats["mid"].errors == 0


def test_a_node_screening_added_goes_to_a_small_model_not_the_largest(fake):
    """Refine, fresh samples and warm seeds add nodes no call assigned: a small model expands
    them (the smallest first, then by smoothed hit rate), never the largest while a small one is up."""
    policy, sink = make_policy(fleet_at(fake.api_base), course_alteration_k=None)
    assert policy.propose(request_for(None)).model == "small"
    # small misses twice, mid hits once: mid's smoothed rate (2/3) beats small's (1/4)
    hit(policy, "mid")
    regress(policy, "small")
    regress(policy, "small", parent=0.9, child=0.1)
    assert policy.propose(request_for(None)).model == "mid"
    # a node assigned by a call keeps its model
    assert policy.propose(request_for("large")).model == "large"
    # both small servers down: the largest after all
    for name in ("small", "mid"):
        policy.stats[name].consecutive_failures = policy.UNHEALTHY_AFTER
        policy.stats[name].failed_at = 1e18
    assert policy.propose(request_for(None)).model == "large"
    assert [c.model for c in sink.of(ev.LLMCallRecorded)] == ["small", "mid", "large", "large"]
    # the papers' preset (and the setting off): the largest, as before the lever
    policy, _ = make_policy(fleet_at(fake.api_base), course_alteration_k=None, screened_to_small=False)
    assert policy.propose(request_for(None)).model == "large"


def test_every_small_model_is_tried_before_hit_rates_decide(fake):
    """Screening keeps the best of many variants, so nearly every call scores above its parent: a
    model called first with a hit rate near 1 would keep every screened node, and a small model the
    user chose would never be called. Each untried small model goes first (the smallest first),
    then the smoothed hit rate decides, with or without cost routing."""
    for cost_routing in (False, True):
        policy, sink = make_policy(fleet_at(fake.api_base), course_alteration_k=None, cost_routing=cost_routing)
        first = policy.propose(request_for(None))
        assert first.model == "small"
        for _ in range(5):  # small: 5 hits in 5, smoothed 6/7
            hit(policy, "small")
        assert policy.propose(request_for(None)).model == "mid"  # untried, however good small is
        hit(policy, "mid")  # mid: 2/3
        assert policy.propose(request_for(None)).model == "small"  # both tried: the better rate
        assert [c.model for c in sink.of(ev.LLMCallRecorded)] == ["small", "mid", "small"]
        assert policy.stats["large"].calls == 0


def test_garbage_reply_is_a_parse_error_with_no_mutators(fake):
    fake.scripts["small"] = Script("I am a small model and I like trains.")
    policy, sink = make_policy(fleet_at(fake.api_base))
    p = policy.propose(request_for("small"))
    assert p.mutators == [] and p.next_model in ("small", "mid", "large")
    assert sink.of(ev.LLMCallRecorded)[-1].outcome == "parse_error"
    assert policy.stats["small"].errors_by_kind == {"parse_error": 1}


def regress(policy, model="small", parent=0.8, child=0.2):
    return policy.review(request_for(model), Proposal(["MutateTileSize"], model=model), parent, child)


def hit(policy, model="small"):
    """A call of ``model`` whose child scored above its parent."""
    return policy.review(request_for(model), Proposal(["MutateTileSize"], model=model), 0.5, 0.9)


@pytest.mark.parametrize("k", [2, 3])
def test_course_alteration_on_every_kth_consecutive_small_model_regression(fake, k):
    fake.scripts["large"] = Script('{"mutators": ["MutateParallel"], "next_model": "small"}')
    policy, sink = make_policy(fleet_at(fake.api_base), course_alteration_k=k)
    fired = []
    for i in range(1, 3 * k + 1):
        replacement = regress(policy, "small" if i % 2 else "mid")
        fired.append(replacement is not None)
        if replacement is not None:
            assert replacement.model == "large" and replacement.escalation
            assert replacement.mutators == ["MutateParallel"]
    assert fired == [i % k == 0 for i in range(1, 3 * k + 1)]
    calls = sink.of(ev.LLMCallRecorded)
    assert len(calls) == 3 and all(c.escalation and c.model == "large" and c.outcome == "escalation" for c in calls)
    assert "Correction:" in fake.requests[-1]["messages"][1]["content"]
    assert policy.escalations == 3 and policy.stats["large"].escalations == 3


def test_a_non_regression_resets_and_the_largest_model_leaves_the_count_unchanged(fake):
    policy, _ = make_policy(fleet_at(fake.api_base), course_alteration_k=2)
    assert regress(policy) is None  # streak 1
    assert regress(policy, "large") is None  # unchanged
    assert policy.streak == 1
    assert regress(policy, "small", 0.2, 0.8) is None  # a hit resets
    assert policy.streak == 0
    assert regress(policy) is None and regress(policy) is not None  # 1, 2 -> escalate


def test_single_llm_never_escalates_and_has_no_phi(fake):
    policy, _ = make_policy(fleet_at(fake.api_base).only("large"))
    assert policy.model_params() == {} and policy.name == "single-llm"
    for _ in range(4):
        assert regress(policy, "large") is None
    assert policy.propose(request_for("large")).next_model == "large"


def test_call_and_usd_budgets(fake):
    policy, _ = make_policy(fleet_at(fake.api_base), budget=Budget(llm_calls=2))
    policy.propose(request_for())
    assert policy.exhausted() is None
    policy.propose(request_for())
    assert policy.exhausted() == "LLM call budget spent"
    fake.scripts["small"] = Script(prompt_tokens=1_000_000, completion_tokens=0)
    policy, _ = make_policy(fleet_at(fake.api_base), budget=Budget(usd=0.05))
    policy.propose(request_for())
    assert policy.exhausted() is None  # $0.03
    policy.propose(request_for())
    assert policy.exhausted() == "USD budget spent"


def test_unreachable_server_is_recorded_and_routed_around(fake):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = list(fleet_at(fake.api_base).models)
    models[0] = ModelSpec("small", "openai/small", 135e6, 0.03, 0.08, dead, None, 5.0)
    policy, sink = make_policy(Fleet(tuple(models)))
    p = policy.propose(request_for("small"))
    assert p.mutators == [] and sink.of(ev.LLMCallRecorded)[-1].outcome == "server_error"
    for _ in range(2):
        policy.propose(request_for("small"))
    assert not policy._healthy("small")
    # the next request for small goes to a healthy model instead
    policy.propose(request_for("small"))
    assert sink.of(ev.LLMCallRecorded)[-1].model != "small"


def test_slow_server_times_out(fake):
    fake.scripts["small"] = Script(delay_s=3.0)
    policy, sink = make_policy(fleet_at(fake.api_base, timeout_s=0.5))
    policy.propose(request_for("small"))
    call = sink.of(ev.LLMCallRecorded)[-1]
    assert call.outcome == "timeout" and call.latency_s < 2.5


def test_http_500_is_a_server_error(fake):
    fake.scripts["mid"] = Script(status=500)
    policy, sink = make_policy(fleet_at(fake.api_base))
    policy.propose(request_for("mid"))
    assert sink.of(ev.LLMCallRecorded)[-1].outcome == "server_error"


def test_api_keys_come_from_the_environment_and_never_reach_events(fake, monkeypatch):
    secret = "sk-test-" + "x" * 24
    monkeypatch.setenv("COLT_TEST_KEY", secret)
    fake.scripts["small"] = Script(status=401)
    policy, sink = make_policy(fleet_at(fake.api_base, key_env="COLT_TEST_KEY"))
    policy.propose(request_for("small"))
    assert fake.requests[-1]["_authorization"] == f"Bearer {secret}"  # sent to the provider
    assert sink.of(ev.LLMCallRecorded)[-1].outcome == "server_error"
    assert secret not in json.dumps([e.to_dict() for e in sink.events])  # and nowhere else
    with pytest.raises(ValueError, match="environment"):
        ModelSpec.from_dict({"name": "x", "model": "openai/x", "params": 1e6, "api_key": secret})


def test_cost_routing_sends_screened_nodes_to_the_most_hits_per_dollar(fake):
    """With ``cost_routing``, a node no call assigned goes to the small model with the most expected
    hits per dollar: a model at 0.58x the price needs only 0.58x the hit rate. Without it, the best
    hit rate wins whatever it costs. Where a small model is free, parameter counts price them all."""
    fleet = fleet_at(fake.api_base)
    small_price = fleet.get("small").cost(*LLMPolicy.TYPICAL_CALL)
    mid_price = fleet.get("mid").cost(*LLMPolicy.TYPICAL_CALL)
    assert 0.5 < small_price / mid_price < 0.6

    def hit_and_miss(policy, model):  # smoothed: (1 + 1) / (2 + 2), as if untried
        hit(policy, model)
        regress(policy, model)

    def trained(**kw):
        policy, sink = make_policy(fleet_at(fake.api_base), course_alteration_k=None, **kw)
        hit(policy, "mid")  # mid: 2/3
        hit_and_miss(policy, "small")  # small: 2/4
        return policy, sink

    # small's 1/2 against mid's 2/3: the hit rate picks mid, the price picks small
    assert trained()[0].propose(request_for(None)).model == "mid"
    policy, sink = trained(cost_routing=True)
    assert policy.call_prices(["small", "mid"]) == pytest.approx({"small": small_price, "mid": mid_price})
    assert policy.propose(request_for(None)).model == "small"
    # small misses twice more (2/6): 0.33 / 0.58 of mid's price is less than mid's 2/3
    regress(policy, "small")
    regress(policy, "small", parent=0.9, child=0.1)
    assert policy.propose(request_for(None)).model == "mid"
    assert [c.model for c in sink.of(ev.LLMCallRecorded)] == ["small", "mid"]
    # never the largest while a small model is up, however cheap its hits
    assert policy.stats["large"].calls == 0

    # a fleet where a small model is free: parameter counts stand in for every price (one unit)
    for free_one in ("small", "mid"):
        models = [ModelSpec(m.name, m.model, m.params, 0.0, 0.0, m.api_base) if m.name == free_one else m
                  for m in fleet.models]  # fmt: skip
        policy, _ = make_policy(Fleet.of(models), course_alteration_k=None, cost_routing=True)
        assert policy.call_prices(["small", "mid"]) == {"small": 135e6, "mid": 270e6}
        hit(policy, "mid")
        hit_and_miss(policy, "small")
        assert policy.propose(request_for(None)).model == "small"  # 1/2 per 135M beats 2/3 per 270M


@pytest.mark.parametrize("floor", [0.0, 0.25])
def test_the_largest_model_keeps_its_floor_of_the_calls(fake, floor):
    """Every reply names the smallest model, as small local models do: without a floor the largest
    makes no call; with ``largest_share_floor`` it takes the calls that keep its share at the
    floor, the first included, and never more than it needs. Calls in flight together count."""
    for name in ("small", "mid", "large"):
        fake.scripts[name] = Script('{"mutators": ["MutateUnroll"], "next_model": "small"}')
    policy, sink = make_policy(fleet_at(fake.api_base), course_alteration_k=None, largest_share_floor=floor)
    for _ in range(12):
        policy.propose(request_for("small"))
    policy.propose_many([request_for("small") for _ in range(4)])
    models = [c.model for c in sink.of(ev.LLMCallRecorded)]
    assert len(models) == 16
    if not floor:
        assert "large" not in models
        return
    assert models[0] == "large" and models.count("large") == 4  # 25% of 16
    for n in range(1, len(models) + 1):  # after every call, the share is at the floor or above it
        assert models[:n].count("large") >= floor * n
    assert policy.largest_share() == 0.25
    # a single-model fleet has no floor to keep
    single = Fleet.of([fleet_at(fake.api_base).get("small")])
    policy, _ = make_policy(single, largest_share_floor=0.5)
    assert policy.largest_share_floor == 0.0
