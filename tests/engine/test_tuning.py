"""Real tuning runs on small shapes: the shared MCTS loop and the evolutionary baseline."""

import json

import pytest

from search.engine import events as ev
from search.engine.measure import MeasureResult
from search.engine.request import Budget, RequestError, RunRequest, SearchSettings
from search.engine.tuning import tune

pytestmark = pytest.mark.slow


class RecordingMeasurer:
    """Wraps a real measurer and remembers what each trace measured."""

    def __init__(self, inner):
        self.inner = inner
        self.seen: dict[str, MeasureResult] = {}

    def measure(self, traces, config=None, *, cutoff_s=None):
        results = self.inner.measure(traces, config)
        for trace, res in zip(traces, results, strict=True):
            self.seen[json.dumps(trace)] = res
        return results

    def close(self):
        pass


class ReplayMeasurer:
    """Answers with the measurements a RecordingMeasurer took: same inputs, same numbers."""

    def __init__(self, seen):
        self.seen = seen

    def measure(self, traces, config=None, *, cutoff_s=None):
        return [self.seen[json.dumps(t)] for t in traces]

    def close(self):
        pass


SETTINGS = SearchSettings.paper(measure_batch=4, expansions_per_round=6, seed=7)  # the papers: its invariants


def run(spec, measurer, trials=12, settings=SETTINGS, **kw):
    sink = ev.ListSink()
    request = RunRequest(kernel=spec, strategy="mcts-random", budget=Budget(trials=trials), settings=settings).checked()
    outcome = tune(request, sink=sink, measurer=measurer, **kw)
    return outcome, sink


@pytest.fixture(scope="module")
def recorded(gemm128, gemm_measurer):
    recorder = RecordingMeasurer(gemm_measurer)
    outcome, sink = run(gemm128, recorder)
    return recorder, outcome, sink


def test_small_run_finds_a_correct_faster_schedule(recorded, gemm128, gemm_measurer):
    _, outcome, sink = recorded
    result = outcome.result
    assert result.trials == 12 and result.stop_reason == "trial budget spent"
    assert outcome.baseline_latency > 0
    assert result.best is not None and result.best.status == "ok"
    assert result.best_latency < outcome.baseline_latency
    # the best schedule re-measured from its stored trace: correct against numpy
    again = gemm_measurer.measure([result.best.candidate.trace_json()])[0]
    assert again.ok and again.max_error is not None and again.max_error < 1e-3
    finished = sink.of(ev.RunFinished)[-1]
    assert finished.status == "succeeded" and finished.best_node_id == result.best.id


def test_events_tell_the_whole_story_in_order(recorded):
    _, outcome, sink = recorded
    kinds = [e.kind for e in sink.events]
    assert kinds[0] == "run_started" and kinds[1] == "baseline_measured" and kinds[-1] == "run_finished"
    created = sink.of(ev.NodeCreated)
    assert [e.node_id for e in created] == list(range(1, len(created) + 1))
    known = {0}
    for e in created:
        assert e.parent_id in known  # a parent is announced before its children
        known.add(e.node_id)
    assert len(created) == len(outcome.result.tree) - 1
    measured = sink.of(ev.NodeMeasured)
    assert [e.trial for e in measured] == list(range(1, 13))
    assert len({e.node_id for e in measured}) == 12  # never the same node twice
    for bp in sink.of(ev.Backpropagated):
        assert bp.path[-1] == 0 and bp.reward >= 0
    bests = [e.latency_s for e in sink.of(ev.BestImproved)]
    assert bests == sorted(bests, reverse=True) and bests[-1] == outcome.result.best_latency


def test_tree_invariants(recorded):
    _, outcome, _ = recorded
    tree = outcome.result.tree
    assert len(tree.root.children) == SETTINGS.population
    for node in tree.nodes[1:]:
        assert len(node.children) <= SETTINGS.branching
        # one visit from its own creation (population nodes have none), one per child visit,
        # and one per failed expansion at the node
        assert node.visits >= (1 if node.depth > 1 else 0) + sum(c.visits for c in node.children)
    assert len({n.shash for n in tree.nodes[1:]}) == len(tree) - 1  # deduplicated
    # every expansion, successful or failed, back-propagates exactly once through the root
    assert tree.root.visits == outcome.result.expansions


def test_same_seed_same_measurements_same_tree(recorded, gemm128):
    recorder, first, _ = recorded
    second, _ = run(gemm128, ReplayMeasurer(recorder.seen))

    def shape(outcome):
        return [
            (n.id, n.parent.id if n.parent else None, n.shash, tuple(n.mutators), n.visits, round(n.value, 9))
            for n in outcome.result.tree.nodes
        ]

    assert shape(first) == shape(second)
    assert first.result.best.id == second.result.best.id


def test_another_seed_grows_another_tree(recorded, gemm128, gemm_measurer):
    _, first, _ = recorded
    other, _ = run(
        gemm128, gemm_measurer, trials=4, settings=SearchSettings(measure_batch=4, expansions_per_round=6, seed=8)
    )
    assert [n.shash for n in other.result.tree.nodes[1:4]] != [n.shash for n in first.result.tree.nodes[1:4]]


def test_wall_clock_budget_stops_cleanly(gemm128, gemm_measurer):
    sink = ev.ListSink()
    request = RunRequest(kernel=gemm128, budget=Budget(trials=1000, wall_s=1.0), settings=SETTINGS).checked()
    outcome = tune(request, sink=sink, measurer=gemm_measurer)
    assert outcome.result.stop_reason == "wall-clock budget spent"
    assert outcome.result.trials < 1000
    assert sink.events[-1].kind == "run_finished"


def test_cancel_request_stops_within_one_iteration(gemm128, gemm_measurer):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 3

    outcome, sink = run(gemm128, gemm_measurer, trials=50, should_stop=should_stop)
    assert outcome.result.stop_reason == "cancelled"
    assert outcome.result.expansions <= 3
    assert sink.of(ev.RunFinished)[-1].status == "cancelled"


def test_a_cancel_takes_effect_between_the_candidates_of_a_batch(gemm128, gemm_measurer):
    flag = {"stop": False}

    class StopAfterFirst:
        def measure(self, traces, config=None, *, cutoff_s=None):
            results = gemm_measurer.measure(traces, config)
            if traces != [None]:
                flag["stop"] = True  # the cancel arrives while the first candidate is timed
            return results

        def close(self):
            pass

    outcome, sink = run(gemm128, StopAfterFirst(), trials=50, should_stop=lambda: flag["stop"])
    assert outcome.result.stop_reason == "cancelled" and outcome.result.trials == 1  # not the batch of 4
    assert len(sink.of(ev.NodeMeasured)) == 1
    pending = [n for n in outcome.result.tree.nodes[1:] if n.status is None]
    assert len(pending) >= 3  # the rest of the batch stays in the tree, unmeasured, for a resume


def test_unknown_strategy_and_empty_budget_are_refused(gemm128):
    # refused when the request is checked, before anything is measured
    with pytest.raises(RequestError, match="unknown strategy") as err:
        RunRequest(kernel=gemm128, strategy="magic").checked()
    assert set(err.value.errors) == {"strategy"}
    with pytest.raises(RequestError, match="trials must be an integer between 1") as err:
        RunRequest(kernel=gemm128, budget=Budget(trials=0)).checked()
    assert set(err.value.errors) == {"budget.trials"}


def test_the_search_memories_change_no_choice_of_the_search(gemm128, gemm_measurer, monkeypatch):
    """With the product's screening and refine, the search realizes many traces and scores many
    schedules more than once; answering those from memory (outcomes of traces, features of
    schedules) leaves every node of the tree as it was (the same measurements replayed to a
    search without the memories)."""
    from search.engine.compiler import SearchSpace

    # the model's scores from its first record (not the default's 16th), so twelve trials retrain and rescore
    settings = SearchSettings(measure_batch=4, expansions_per_round=6, seed=11, variants=8, refine=64, model_warmup=0)
    recorder = RecordingMeasurer(gemm_measurer)
    first, _ = run(gemm128, recorder, trials=12, settings=settings)
    assert first.space.replays_saved > 0
    assert first.result.extractions < first.result.evaluations  # schedules scored again after retraining
    monkeypatch.setattr(SearchSpace, "remember", False)
    second, _ = run(gemm128, ReplayMeasurer(recorder.seen), trials=12, settings=settings)
    assert second.space.replays_saved == 0
    assert second.result.extractions == second.result.evaluations == first.result.evaluations
    assert second.space.replays == first.space.replays + first.space.replays_saved
    assert [n.shash for n in second.result.tree.nodes] == [n.shash for n in first.result.tree.nodes]
    assert [n.predicted for n in second.result.tree.nodes] == [n.predicted for n in first.result.tree.nodes]
    assert second.result.best_latency == first.result.best_latency
