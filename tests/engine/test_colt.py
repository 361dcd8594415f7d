"""The colt and single-llm strategies in a real tuning run (real TVM, real measurements),
with LLM calls through LiteLLM to a fake OpenAI-compatible server."""

import itertools
import json
from collections import Counter
from dataclasses import asdict

import pytest

from search.console import summary_lines
from search.engine import events as ev
from search.engine.llm import LiteLLMClient
from search.engine.mcts import SavedState
from search.engine.policy import LLMPolicy
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.tuning import tune
from tests.engine.test_policy import fleet_at
from tests.fakellm import FakeLLMServer, Script

pytestmark = pytest.mark.slow

MUT_CYCLE = ["MutateTileSize", "MutateUnroll", "MutateParallel", "MutateComputeLocation"]


@pytest.fixture
def fake():
    server = FakeLLMServer()
    turns = itertools.count()

    def reply(body):
        n = next(turns)
        return json.dumps(
            {"mutators": ["MutateTileSize", MUT_CYCLE[n % 4]], "next_model": ["small", "mid", "large", "small"][n % 4]}
        )

    for name in ("small", "mid", "large"):
        server.scripts[name] = Script(reply, prompt_tokens=200, completion_tokens=20)
    yield server
    server.close()


def run(spec, measurer, fleet, strategy="colt", trials=8, expansions=8, in_flight=1, settings=None, **budget):
    sink = ev.ListSink()
    request = RunRequest(
        kernel=spec,
        strategy=strategy,
        budget=Budget(trials=trials, **budget),
        settings=SearchSettings.paper(
            measure_batch=4, expansions_per_round=expansions, seed=3, llm_in_flight=in_flight, **(settings or {})
        ),
        fleet=fleet,
    ).checked()
    outcome = tune(request, sink=sink, measurer=measurer)
    return outcome, sink


def test_colt_run_accounts_for_every_call_and_links_nodes_to_calls(fake, gemm128, gemm_measurer):
    outcome, sink = run(gemm128, gemm_measurer, fleet_at(fake.api_base))
    llm = outcome.llm_summary
    calls = sink.of(ev.LLMCallRecorded)
    assert outcome.result.trials == 8 and outcome.result.best.status == "ok"
    assert llm["llm_calls"] == len(calls) == len(fake.requests) > 0
    assert llm["usd"] == pytest.approx(sum(c.usd for c in calls))
    assert sum(m["calls"] for m in llm["models"].values()) == llm["llm_calls"]
    assert llm["largest_share"] == pytest.approx(llm["models"]["large"]["calls"] / llm["llm_calls"])
    # the first LLM calls are the largest model's (children of depth-1 nodes are assigned to it)
    assert calls[0].model == "large"
    by_id = {c.call_id: c for c in calls}
    created = sink.of(ev.NodeCreated)
    llm_nodes = [n for n in created if n.call_id is not None]
    assert llm_nodes, "no node came from an LLM proposal"
    for node in llm_nodes:
        call = by_id[node.call_id]
        assert node.created_by == call.model
        assert node.expand_model == call.next_model
        assert set(node.mutators) <= set(call.mutators)
    for esc in sink.of(ev.Escalation):
        assert esc.large_model == "large" and esc.small_model != "large"
        assert by_id[esc.call_id].escalation
    # the model asked for a leaf is the one its creator assigned to it (joint actions at work)
    assigned = {n.node_id: n.expand_model for n in created}
    for call in calls:
        if not call.escalation:
            assert call.model == assigned[call.node_id]
    assert sum(1 for m in llm["models"].values() if m["calls"]) >= 2


def test_llm_call_budget_stops_the_run_cleanly(fake, gemm128, gemm_measurer):
    outcome, sink = run(gemm128, gemm_measurer, fleet_at(fake.api_base), trials=64, llm_calls=3)
    assert outcome.result.stop_reason == "LLM call budget spent"
    assert outcome.llm_summary["llm_calls"] == 3
    assert outcome.result.trials < 64 and outcome.result.best is not None  # what was proposed got measured
    assert sink.events[-1].kind == "run_finished" and sink.events[-1].status == "succeeded"


def test_calls_in_flight_at_once_go_to_different_leaves_and_models(fake, gemm128, gemm_measurer):
    for script in fake.scripts.values():
        script.delay_s = 0.2
    outcome, sink = run(gemm128, gemm_measurer, fleet_at(fake.api_base), trials=12, in_flight=3, llm_calls=9)
    calls = [c for c in sink.of(ev.LLMCallRecorded) if not c.escalation]
    assert fake.peak_in_flight >= 2  # calls overlapped ...
    assert fake.overlapping() and all(a != b for a, b in fake.overlapping())  # ... one per model at a time
    assert outcome.llm_summary["llm_calls"] <= 9  # in-flight calls never overrun the call budget
    assert [c.call_id for c in sink.of(ev.LLMCallRecorded)] == list(range(1, outcome.llm_summary["llm_calls"] + 1))
    # every call still asked the model assigned to its leaf, and made that leaf's child
    created = sink.of(ev.NodeCreated)
    assigned = {n.node_id: n.expand_model for n in created}
    for call in calls:
        assert call.model == assigned[call.node_id]
    by_call = {n.call_id: n for n in created if n.call_id is not None}
    for call in calls:
        if call.call_id in by_call:
            assert by_call[call.call_id].parent_id == call.node_id
    assert outcome.result.best is not None and outcome.result.best.status == "ok"
    # virtual visits are all taken back: every node's visits equal the rewards back-propagated through it
    visits: dict[int, int] = {}
    for bp in sink.of(ev.Backpropagated):
        for node_id in bp.path:
            visits[node_id] = visits.get(node_id, 0) + 1
    for node in outcome.result.tree.nodes[1:]:
        assert node.visits == visits.get(node.id, 0)


def test_single_llm_uses_only_the_largest_model(fake, gemm128, gemm_measurer):
    outcome, sink = run(gemm128, gemm_measurer, fleet_at(fake.api_base), strategy="single-llm")
    assert set(outcome.llm_summary["models"]) == {"large"}
    assert {c.model for c in sink.of(ev.LLMCallRecorded)} == {"large"}
    assert not sink.of(ev.Escalation)
    assert {b["model"] for b in fake.requests} == {"large"}


def test_a_fleet_whose_servers_are_all_down_still_finishes(gemm128, gemm_measurer):
    from tests.helpers import free_port

    outcome, sink = run(gemm128, gemm_measurer, fleet_at(f"http://127.0.0.1:{free_port()}/v1", timeout_s=2.0))
    calls = sink.of(ev.LLMCallRecorded)
    assert calls and all(c.outcome == "server_error" for c in calls)
    assert outcome.result.trials == 8 and outcome.result.best is not None


@pytest.mark.parametrize("prior", [0.0, 0.5])
def test_prior_variants_compete_with_the_models_proposal_and_the_winner_is_counted(gemm128, gemm_measurer, prior):
    """A model that always proposes MutateUnroll: with ``prior_variants`` half of each expansion's
    screened variants apply the target's prior instead, the cost model keeps the best of both,
    and the model's ``own_share`` counts the children that kept its own mutators, live and after
    a resume alike."""
    server = FakeLLMServer()
    server.scripts["large"] = Script('{"mutators": ["MutateUnroll"], "next_model": "large"}')
    try:
        outcome, sink = run(
            gemm128,
            gemm_measurer,
            fleet_at(server.api_base).only("large"),
            strategy="single-llm",
            trials=12,
            settings={"variants": 8, "prior_variants": prior},
        )
    finally:
        server.close()
    calls = {c.call_id: c for c in sink.of(ev.LLMCallRecorded)}
    nodes = sink.of(ev.NodeCreated)
    by_model = [n for n in nodes if n.created_by == "large" and n.parent_score is not None]
    assert len(by_model) >= 6
    own = [n for n in by_model if n.mutators == ["MutateUnroll"]]  # the model's proposal
    drawn = [n for n in by_model if len(n.mutators) == 1 and n.mutators[0].startswith("Prior Mutate")]
    assert len(own) + len(drawn) == len(by_model)  # each kept child says where its move came from
    stats = outcome.llm_summary["models"]["large"]
    assert stats["own_share"] == pytest.approx(len(own) / len(by_model))
    if prior == 0.0:  # every child is the model's own
        assert not drawn
    else:  # the prior's moves won some expansions (tile sizes, 90% of the prior), and lost others
        assert own and drawn
        assert any(n.mutators == ["Prior MutateTileSize"] for n in drawn)
    # a resumed run counts the same from the saved nodes and calls
    restored = LLMPolicy(fleet_at("http://127.0.0.1:9").only("large"), LiteLLMClient(), kernel="g", target="llvm")
    restored.restore(SavedState(nodes=nodes, trials=12, calls=[asdict(c) for c in calls.values()]))
    assert restored.stats["large"].own_share == pytest.approx(stats["own_share"])


@pytest.mark.parametrize("to_small", [True, False])
def test_only_the_papers_three_root_samples_hand_their_children_to_the_largest_model(
    fake, gemm128, gemm_measurer, to_small
):
    """With a root population beyond the papers' three, the children of the extra samples go to a
    small model (``screened_to_small``), so the largest model does not take most of the calls."""
    outcome, sink = run(
        gemm128,
        gemm_measurer,
        fleet_at(fake.api_base),
        trials=8,
        expansions=12,
        settings={"population": 8, "screened_to_small": to_small},
    )
    created = sink.of(ev.NodeCreated)
    roots = [n.node_id for n in created if n.parent_id == 0]
    assert len(roots) == 8
    under = [n for n in created if n.parent_id in roots and n.call_id is None]  # depth-1 random expansions
    assert {roots.index(n.parent_id) for n in under} - {0, 1, 2}, "no child under an extra root sample"
    for node in under:
        papers = roots.index(node.parent_id) < 3
        assert node.expand_model == ("large" if papers or not to_small else None)


def test_the_summary_says_how_many_llm_proposals_were_measured_and_whose_the_best_is(fake, gemm128, gemm_measurer):
    outcome, sink = run(gemm128, gemm_measurer, fleet_at(fake.api_base), trials=12)
    creator = {e.node_id: e.created_by for e in sink.of(ev.NodeCreated)}
    proposed = {e.node_id for e in sink.of(ev.NodeCreated) if e.created_by}  # an LLM proposal applied
    measured = {e.node_id for e in sink.of(ev.NodeMeasured)}
    best = sink.of(ev.BestImproved)[-1].node_id
    summary = outcome.summary()["llm_proposals"]
    assert summary == {"nodes": len(proposed), "measured": len(proposed & measured), "best_from": creator[best]}
    assert summary["nodes"] > 0 and summary["measured"] > 0
    line = next(x for x in summary_lines(outcome.summary()) if "LLM proposals" in x)
    assert f"{len(proposed)} nodes, {len(proposed & measured)} measured" in line
    # every node's origin, as the search recorded it on its event, counted per origin
    origin = {e.node_id: e.origin for e in sink.of(ev.NodeCreated)}
    assert set(origin.values()) <= set(ev.ORIGINS) and {"sample", "prior", "llm"} <= set(origin.values())
    origins = outcome.summary()["origins"]
    assert {k: c["nodes"] for k, c in origins["by"].items()} == Counter(origin.values())
    assert {k: c["measured"] for k, c in origins["by"].items() if c["measured"]} == Counter(origin[i] for i in measured)
    assert origins["best"] == origin[best]
    assert [c["measured"] for c in origins["by"].values()] == sorted(
        (c["measured"] for c in origins["by"].values()), reverse=True
    )
    line = next(x for x in summary_lines(outcome.summary()) if "measured by origin" in x)
    assert f"the best: {origin[best]}" in line
    # a search without LLMs has no such figure
    assert (
        tune(
            RunRequest(
                kernel=gemm128, strategy="mcts-random", budget=Budget(trials=4), settings=SearchSettings.paper()
            ),
            measurer=gemm_measurer,
        ).summary()["llm_proposals"]
        is None
    )


@pytest.mark.parametrize("prior, expected, keep", [(0, 0, False), (3, 3, False), (None, 8, False), (3, 3, True)])
def test_prior_expansions_grow_the_tree_beside_the_llms_without_calls(
    fake, gemm128, gemm_measurer, prior, expected, keep
):
    """With ``prior_expansions`` N, each round also expands N leaves with a mutator drawn from the
    prior and no call: the tree gets N more nodes per round, no call makes them, and their
    children go to a small model (no model assigned), as screening's nodes do, or with
    ``prior_keeps_model`` to the model their leaf was assigned. Unset, colt's is 8."""
    outcome, sink = run(
        gemm128,
        gemm_measurer,
        fleet_at(fake.api_base),
        trials=12,
        expansions=4,
        settings={"prior_expansions": prior, "prior_keeps_model": keep},
    )
    rounds = len(sink.of(ev.Progress))
    assert outcome.result.trials == 12 and rounds == 3
    assert outcome.result.expansions == rounds * (4 + expected)
    calls = [c for c in sink.of(ev.LLMCallRecorded) if not c.escalation]
    assert len(calls) <= rounds * 4  # the prior's expansions make no call
    created = sink.of(ev.NodeCreated)
    depth = {n.node_id: n.depth for n in created}
    assigned = {n.node_id: n.expand_model for n in created}
    # below the root samples' children every expansion is an LLM's, unless it is the prior's
    deep = [n for n in created if n.depth >= 3]
    by_prior = [n for n in deep if n.call_id is None]
    for node in by_prior:
        assert node.origin == ev.PRIOR_MOVE and node.created_by is None
        assert len(node.mutators) == 1 and depth[node.parent_id] >= 2
        # every leaf at depth 2 or more has a model: an LLM named it, or its own leaf's was kept
        assert node.expand_model == (assigned[node.parent_id] if keep else None)
        assert (node.expand_model in {"small", "mid", "large"}) == keep
    assert bool(by_prior) == bool(expected)


def refine_ready(server, space, measurer, **settings):
    """A colt search (the fake server's three models) after one measured round: refine may run."""
    from search.engine.mcts import MCTSSearch

    for name in ("small", "mid", "large"):
        server.scripts.setdefault(name, Script('{"mutators": ["MutateUnroll"], "next_model": "mid"}'))
    policy = LLMPolicy(fleet_at(server.api_base), LiteLLMClient(), kernel="gemm-128", target="llvm")
    sink = ev.ListSink()
    settings = SearchSettings.paper(**{"measure_batch": 4, "expansions_per_round": 4, "seed": 3, **settings})
    search = MCTSSearch(space=space, policy=policy, measurer=measurer, sink=sink, settings=settings,
                        budget=Budget(trials=16))  # fmt: skip
    search._init_population()
    for leaf in search.tree.root.children[:3]:  # depth-1 children: random moves, no call
        search.expand(leaf)
    search.measure_round()
    assert search.cost_model.trained and not server.requests
    return search, policy, sink


def test_llm_refine_puts_the_models_moves_among_refines_mutants_of_the_fastest(gemm128, gemm_space, gemm_measurer):
    """With ``llm_refine``: after a round, a model proposes a move for each of the fastest measured
    schedules (its prompt shows their measured latency), every other mutant of those applies it
    instead of the prior's mutator, one batched score ranks them all, and the batch's best-scored
    mutants join the tree: the model's as its nodes (origin llm-refine, its call, its hit rate)."""
    from search.engine.events import LLM_REFINE, REFINE

    server = FakeLLMServer()
    search, policy, sink = refine_ready(server, gemm_space, gemm_measurer, refine=64, llm_refine=2)
    fastest = sorted((n for n in search.tree.nodes[1:] if n.latency), key=lambda n: n.latency)[:2]
    applied = []
    real_apply = search._apply
    search._apply = lambda trace, mutators: (applied.append(list(mutators)), real_apply(trace, mutators))[1]
    before = len(search.tree)
    search._refine()
    try:
        calls = sink.of(ev.LLMCallRecorded)
        assert [c.node_id for c in calls] == [n.id for n in fastest]  # one call per parent, the fastest first
        # each asks the model its node was assigned (the largest for the papers' depth-1 children),
        # a root sample (no model assigned) the smallest, as a tree expansion would
        assert [c.model for c in calls] == [n.expand_model or "small" for n in fastest]
        for body, node in zip(server.requests, fastest, strict=True):
            assert f"measured {node.latency * 1e3:.3f} ms" in body["messages"][1]["content"]  # the timing
        # half of the 64 mutants (every other one of each asked parent's) applied the proposal
        assert applied == [["MutateUnroll"]] * 32
        kept = search.tree.nodes[before:]
        assert len(kept) == 4 and {n.origin for n in kept} == {REFINE, LLM_REFINE}  # (both won places here)
        for node in kept:
            if node.origin == LLM_REFINE:
                assert node.parent in fastest and node.mutators == ["MutateUnroll"] and node.expand_model == "mid"
                assert node.created_by == calls[fastest.index(node.parent)].model
            else:
                assert node.created_by is None and len(node.mutators) == 1  # one of the prior's
        created = {e.node_id: e for e in sink.of(ev.NodeCreated)}
        assert all(created[n.id].origin == n.origin for n in kept)
        mine = [created[n.id] for n in kept if n.origin == LLM_REFINE]
        assert {e.call_id for e in mine} <= {c.call_id for c in calls}
        # each proposal with a kept mutant is judged once, by the best-scored of them (the one with a
        # parent score); a resumed run counts the same from the saved nodes and calls
        judged = [e for e in mine if e.parent_score is not None]
        assert len(judged) == len({e.parent_id for e in mine}) == sum(s.scored for s in policy.stats.values())
        for e in judged:
            assert e.predicted == max(x.predicted for x in mine if x.parent_id == e.parent_id)
        restored = LLMPolicy(fleet_at("http://127.0.0.1:9"), LiteLLMClient(), kernel="g", target="llvm")
        restored.restore(SavedState(nodes=list(created.values()), trials=4, calls=[asdict(c) for c in calls]))
        assert {m: (x.scored, x.hits) for m, x in restored.stats.items()} == {
            m: (x.scored, x.hits) for m, x in policy.stats.items()
        }
        # off, refine asks nobody
        search.s = SearchSettings.paper(measure_batch=4, expansions_per_round=4, seed=3, refine=64)
        applied.clear()
        search._refine()
        assert len(sink.of(ev.LLMCallRecorded)) == 2 and not applied
        assert {n.origin for n in search.tree.nodes[before + 4 :]} == {REFINE}
    finally:
        server.close()


def test_llm_refine_calls_in_flight_go_one_per_model_and_never_more_than_allowed(gemm_space, gemm_measurer):
    """With ``llm_in_flight`` > 1, refine's calls go out in waves as the tree's: different models at
    once, at most ``llm_in_flight``; a parent routed to a model already in the wave waits for the next."""
    server = FakeLLMServer()
    for name in ("small", "mid", "large"):
        server.scripts[name] = Script('{"mutators": ["MutateUnroll"], "next_model": "mid"}', delay_s=0.3)
    try:
        search, _, sink = refine_ready(server, gemm_space, gemm_measurer, refine=64, llm_refine=2, llm_in_flight=2)
        fastest = sorted((n for n in search.tree.nodes[1:] if n.latency), key=lambda n: n.latency)[:2]
        search._refine()
        calls = sink.of(ev.LLMCallRecorded)
        assert sorted(c.node_id for c in calls) == sorted(n.id for n in fastest)
        assert len({c.model for c in calls}) == 2  # a root sample's (small) and a depth-2 node's (large)
        assert server.peak_in_flight == 2 and server.overlapping() and all(a != b for a, b in server.overlapping())
        # both parents assigned one model: one call after the other
        for node in fastest:
            node.expand_model = "mid"
        server.answered.clear()
        search._refine()
        later = sink.of(ev.LLMCallRecorded)[len(calls) :]
        assert [c.model for c in later] == ["mid", "mid"] and not server.overlapping()
    finally:
        server.close()
