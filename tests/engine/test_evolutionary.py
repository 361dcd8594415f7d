"""The evolutionary strategy: MetaSchedule's own search with the same budget, reported through
the same events, and held to the same stop rule (cancel and wall-clock within one batch)."""

import pytest

from search.engine import events as ev
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.tuning import tune

pytestmark = pytest.mark.slow


def test_evolutionary_strategy_runs_metaschedule_with_the_same_budget(gemm128, fast_config):
    sink = ev.ListSink()
    request = RunRequest(
        kernel=gemm128,
        strategy="evolutionary",
        budget=Budget(trials=8),
        settings=SearchSettings(measure_batch=4, seed=1),
        timing=fast_config,
    ).checked()
    outcome = tune(request, sink=sink)
    assert outcome.result.trials == 8
    assert len(sink.of(ev.NodeMeasured)) >= 8
    assert outcome.result.best is not None and outcome.result.best.status == "ok"
    assert outcome.speedup and outcome.speedup > 1.0


@pytest.mark.parametrize("stop", ["cancelled", "wall-clock budget spent"])
def test_a_cancel_or_the_wall_clock_ends_it_after_the_current_batch(gemm128, fast_config, stop):
    sink = ev.ListSink()
    request = RunRequest(
        kernel=gemm128,
        strategy="evolutionary",
        budget=Budget(trials=400, wall_s=1.0 if stop != "cancelled" else None),
        settings=SearchSettings(measure_batch=4, seed=2),  # batches of 8
        timing=fast_config,
    ).checked()

    def cancel_after_first_batch():
        return stop == "cancelled" and len(sink.of(ev.NodeMeasured)) >= 8

    outcome = tune(request, sink=sink, should_stop=cancel_after_first_batch)
    assert outcome.result.stop_reason == stop
    assert outcome.result.trials == 8  # the batch under way is finished, no other starts
    assert outcome.result.best is not None and outcome.result.best.status == "ok"
    assert sink.of(ev.RunFinished)[-1].status == ("cancelled" if stop == "cancelled" else "succeeded")


def test_metaschedule_keeps_a_kernels_kept_stages_too(fast_config):
    """MetaSchedule's own search runs the kernel's extra post-processor (a Python one, called
    from its threads): every schedule it measures keeps the MLP's silu stage."""
    import re

    from search.engine.workloads import KernelSpec, validate

    sink = ev.ListSink()
    request = RunRequest(
        kernel=validate(KernelSpec("gated_mlp", {"M": 8, "H": 32, "I": 16})),
        strategy="evolutionary",
        budget=Budget(trials=8),
        settings=SearchSettings(measure_batch=4, seed=3),
        timing=fast_config,
    ).checked()
    outcome = tune(request, sink=sink)
    assert outcome.result.trials == 8
    measured = [n for n in outcome.result.tree.nodes[1:] if n.status == "ok"]
    assert measured
    for node in measured:
        blocks = re.findall(r'sblock\("(\w+)"\)', node.candidate.sch.mod.script())
        assert "silu" in blocks
