"""A warm start on real TVM schedules and real measurements: earlier records of another kernel
and of this one pre-train the real XGBoost cost model before the first round, this kernel's
fastest are seeded at the root, and a cold run is left exactly as it was."""

import numpy as np
import pytest

from search.engine import events as ev
from search.engine.compiler import SearchSpace
from search.engine.mcts import WARM_SEED, SavedState
from search.engine.measure import LocalMeasurer
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.tuning import tune
from search.engine.warm import Record, WarmStart
from search.engine.workloads import KernelSpec
from tests.conftest import FAST
from tests.engine.test_mcts import new_search as mcts_search

pytestmark = pytest.mark.slow

OTHER = KernelSpec("gemm", {"M": 64, "N": 96, "K": 64}, name="gemm-other")


def measured(spec, n, seed):
    """``n`` real schedules of ``spec``, measured here: what an earlier run left."""
    space, rng = SearchSpace(spec, "llvm", seed=seed), np.random.default_rng(seed)
    cands = [c for c in (space.sample(rng) for _ in range(n)) if c is not None]
    measurer = LocalMeasurer(spec, "llvm", FAST)
    try:
        results = measurer.measure([c.trace_json() for c in cands])
    finally:
        measurer.close()
    return [Record(spec, c.trace_json(), r.latency_s) for c, r in zip(cands, results, strict=True) if r.ok]


@pytest.fixture(scope="module")
def records(gemm128):
    return measured(OTHER, 8, seed=1), measured(gemm128, 6, seed=2)


def new_search(space, measurer, **settings):
    return mcts_search(space, measurer, SearchSettings(measure_batch=4, expansions_per_round=4, seed=5, **settings), 4)


def test_a_warm_start_pretrains_the_cost_model_and_seeds_this_kernels_fastest(gemm_space, gemm_measurer, records):
    other, same = records
    search, sink = new_search(gemm_space, gemm_measurer, warm_start=True)
    assert not search.cost_model.trained
    report = search.warm_start(WarmStart([*other, *same], seeds=3))
    assert search.cost_model.trained and search.cost_model.size == len(other) + len(same) == report.records
    assert (report.kernels, report.seeded, report.skipped) == (2, 3, 0)
    fastest = sorted(same, key=lambda r: r.latency_s)[:3]
    seeded = search.tree.root.children
    assert [n.shash for n in seeded] == [gemm_space.load(r.trace).shash for r in fastest]
    assert all(n.status is None for n in seeded)  # measured again here, not taken on trust
    assert all(n.mutators == [WARM_SEED] for n in seeded)  # labelled: an earlier run's schedule
    search.run()
    assert len(search.tree.root.children) >= 3 + 3  # the population (3 or more) beside the 3 seeds
    assert search.cost_model.evaluations > 0 and search.trials == 4
    # a resumed run knows the population starts after the seeds (who expands their children)
    nodes = sink.of(ev.NodeCreated)  # the node records the engine emits (and persistence saves)
    resumed, _ = new_search(gemm_space, gemm_measurer, warm_start=True)
    resumed.restore(SavedState(nodes=nodes, trials=search.trials))
    assert resumed.warm_seeds == 3
    assert [n.mutators for n in resumed.tree.root.children[3:]] == [[]] * (len(search.tree.root.children) - 3)


def test_records_of_other_kernels_alone_seed_nothing(gemm_space, gemm_measurer, records):
    other, _ = records
    search, _ = new_search(gemm_space, gemm_measurer, warm_start=True)
    report = search.warm_start(WarmStart(other))
    assert (report.records, report.kernels, report.seeded) == (len(other), 1, 0)
    assert search.cost_model.trained and not search.tree.root.children


def test_a_trace_that_no_longer_applies_is_skipped(gemm_space, gemm_measurer, records):
    other, same = records
    broken = Record(same[0].kernel, [["nonsense"], []], 1e-3)
    search, _ = new_search(gemm_space, gemm_measurer, warm_start=True)
    report = search.warm_start(WarmStart([*other, broken]))
    assert report.skipped == 1 and report.records == len(other)


def test_a_cold_run_is_unchanged_by_records_it_did_not_ask_for(gemm128, gemm_measurer, records):
    """Until its first measurement a run is a function of its seed: the cold run given records
    (warm_start off) makes exactly the nodes of the cold run given none."""

    def first_round(warm):
        request = RunRequest(
            kernel=gemm128, budget=Budget(trials=4), settings=SearchSettings(seed=9, measure_batch=4)
        ).checked()
        sink = ev.ListSink()
        outcome = tune(request, sink=sink, measurer=gemm_measurer, baseline_latency=1.0, warm=warm)
        first = next(i for i, e in enumerate(sink.events) if isinstance(e, ev.NodeMeasured))
        assert not sink.of(ev.WarmStarted) and outcome.summary()["warm_start"] is None
        return [e.shash for e in sink.events[:first] if isinstance(e, ev.NodeCreated)]

    cold = first_round(None)
    assert len(cold) > 4 and first_round(WarmStart([*records[0], *records[1]])) == cold


def test_tune_reports_the_warm_start_as_an_event_and_in_the_summary(gemm128, gemm_measurer, records):
    request = RunRequest(
        kernel=gemm128, budget=Budget(trials=4), settings=SearchSettings(seed=9, measure_batch=4, warm_start=True)
    ).checked()
    sink = ev.ListSink()
    outcome = tune(request, sink=sink, measurer=gemm_measurer, baseline_latency=1.0, warm=WarmStart(records[0]))
    (event,) = sink.of(ev.WarmStarted)
    assert event.records == len(records[0]) and event.kernels == 1
    assert outcome.summary()["warm_start"]["records"] == len(records[0])
    assert sink.events.index(event) < min(i for i, e in enumerate(sink.events) if isinstance(e, ev.NodeCreated))
