"""One contract every strategy must meet (the Optuna-sampler habit): same inputs, same events,
same guarantees. LLM strategies talk to the fake OpenAI-compatible server through LiteLLM."""

import pytest

from search.engine import events as ev
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.strategies import STRATEGIES
from search.engine.tuning import tune
from tests.engine.test_policy import fleet_at
from tests.fakellm import FakeLLMServer, Script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake():
    server = FakeLLMServer()
    for name in ("small", "mid", "large"):
        server.scripts[name] = Script('{"mutators": ["MutateTileSize"], "next_model": "small"}')
    yield server
    server.close()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_contract(strategy, fake, gemm128, gemm_measurer, fast_config):
    sink = ev.ListSink()
    request = RunRequest(
        kernel=gemm128,
        strategy=strategy,
        budget=Budget(trials=8),
        settings=SearchSettings(measure_batch=4, seed=5),
        timing=fast_config,
        fleet=fleet_at(fake.api_base) if STRATEGIES[strategy].uses_llm else None,
    ).checked()
    outcome = tune(request, sink=sink, measurer=gemm_measurer)
    kinds = [e.kind for e in sink.events]
    assert kinds[0] == "run_started" and kinds[1] == "baseline_measured" and kinds[-1] == "run_finished"
    assert sink.events[-1].status == "succeeded"
    assert outcome.result.trials == 8
    measured = [e for e in sink.of(ev.NodeMeasured) if e.trial <= 8]
    assert len({e.node_id for e in measured}) >= 8
    known = {0} | {e.node_id for e in sink.of(ev.NodeCreated)}
    assert all(e.node_id in known for e in measured)
    best = outcome.result.best
    assert best is not None and best.status == "ok" and outcome.speedup > 1
    # the reported best is a correct schedule, re-measured from its stored trace
    again = gemm_measurer.measure([best.candidate.trace_json()])[0]
    assert again.ok and again.max_error < 1e-3
    assert (outcome.llm_summary is not None) == STRATEGIES[strategy].uses_llm
    assert outcome.request is request and outcome.strategy == strategy
