"""One tuning run, end to end: the entry point the CLI, the worker and the benchmarks share.

``tune(...)`` is keyword-only over plain inputs: a kernel spec, a target name, a strategy
name, budgets and settings, an event sink, and optionally a measurer and a policy (the parts
that differ between a test, a CLI and a worker). It measures the unscheduled kernel, runs
the strategy, emits ``run_finished`` and returns a :class:`TuneOutcome`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import events as ev
from .compiler import SearchSpace, target_kind
from .measure import LocalMeasurer, MeasureConfig, Measurer, RPCConfig
from .mcts import Budget, MCTSSearch, SavedState, SearchResult, SearchSettings
from .llm import Fleet, LLMClient, LiteLLMClient
from .policy import ExpansionPolicy, LLMPolicy, RandomPolicy
from .workloads import KernelSpec, flops, validate

#: strategy name -> (description, needs LLMs)
STRATEGIES = {
    "mcts-random": "the shared MCTS with random mutator choices, no LLM",
    "evolutionary": "MetaSchedule's own evolutionary search with the same trial budget",
    "colt": "the shared MCTS expanded by a fleet of LLMs (LLM-aware UCT, course alteration)",
    "single-llm": "the shared MCTS expanded by one LLM with plain UCT (the Reasoning Compiler)",
}
LLM_STRATEGIES = ("colt", "single-llm")

BASELINE_CONFIG = MeasureConfig(number=1, repeat=3, min_repeat_ms=0, timeout_s=60.0)


@dataclass
class TuneOutcome:
    spec: KernelSpec
    target: str
    strategy: str
    result: SearchResult
    baseline_latency: float | None
    elapsed_s: float
    space: SearchSpace
    llm_summary: dict | None = None
    status: str = "succeeded"  # succeeded | failed | cancelled

    @property
    def stop_reason(self) -> str:
        return self.result.stop_reason if self.result.best else "no valid schedule was found"

    @property
    def flops(self) -> float:
        return flops(self.spec)

    @property
    def speedup(self) -> float | None:
        if self.baseline_latency and self.result.best_latency:
            return self.baseline_latency / self.result.best_latency
        return None

    @property
    def gflops(self) -> float | None:
        lat = self.result.best_latency
        return self.flops / lat / 1e9 if lat else None

    def summary(self) -> dict:
        best = self.result.best
        return {
            "llm": self.llm_summary,
            "kernel": self.spec.to_dict(),
            "target": self.target,
            "strategy": self.strategy,
            "trials": self.result.trials,
            "expansions": self.result.expansions,
            "nodes": len(self.result.tree) - 1,
            "stop_reason": self.result.stop_reason,
            "baseline_latency_s": self.baseline_latency,
            "best_latency_s": self.result.best_latency,
            "best_node": best.id if best else None,
            "speedup": self.speedup,
            "gflops": self.gflops,
            "elapsed_s": self.elapsed_s,
            "history": self.result.history,
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the best schedule (TVMScript, trace JSON) and the summary; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"summary": out / "summary.json"}
        paths["summary"].write_text(json.dumps(self.summary(), indent=2))
        cand = self.result.best_candidate
        if cand is not None:
            paths["script"] = out / "best_schedule.py"
            paths["script"].write_text(cand.script())
            paths["trace"] = out / "best_trace.json"
            paths["trace"].write_text(json.dumps(cand.trace_json()))
        return paths


def make_policy(
    strategy: str,
    *,
    spec: KernelSpec,
    target: str,
    settings: SearchSettings,
    budget: Budget,
    fleet: Fleet | None = None,
    client: LLMClient | None = None,
    model: str | None = None,
) -> ExpansionPolicy:
    """The expansion policy of a tree strategy. ``single-llm`` uses ``model`` or the largest."""
    if strategy == "mcts-random":
        return RandomPolicy()
    if strategy not in LLM_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if fleet is None:
        raise ValueError(f"strategy {strategy} needs a fleet of LLMs")
    if strategy == "single-llm":
        fleet = fleet.only(model or fleet.largest.name)
    return LLMPolicy(
        fleet,
        client or LiteLLMClient(),
        kernel=spec.label,
        target=target,
        course_alteration_k=settings.course_alteration_k,
        max_llm_calls=budget.llm_calls,
        max_usd=budget.usd,
    )


def check_request(spec: KernelSpec, target: str, strategy: str, budget: Budget, fleet: Fleet | None = None,
                  policy: ExpansionPolicy | None = None) -> KernelSpec:
    """Refuse what cannot run, with a clear message; returns the normalized spec."""
    spec = validate(spec)
    target_kind(target)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if budget.trials <= 0:
        raise ValueError("the trial budget must be positive")
    if strategy in LLM_STRATEGIES and fleet is None and policy is None:
        raise ValueError(f"strategy {strategy} needs a fleet of LLMs")
    return spec


def tune(
    *,
    spec: KernelSpec,
    target: str = "llvm",
    strategy: str = "mcts-random",
    budget: Budget = Budget(),
    settings: SearchSettings = SearchSettings(),
    sink: ev.EventSink | None = None,
    measurer: Measurer | None = None,
    measure_config: MeasureConfig | None = None,
    policy: ExpansionPolicy | None = None,
    fleet: Fleet | None = None,
    llm_client: LLMClient | None = None,
    model: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: SavedState | None = None,
    baseline_latency: float | None = None,
    rpc: RPCConfig | None = None,
) -> TuneOutcome:
    """Tune ``spec``; with ``resume``, go on from a saved state (and its known baseline).
    ``rpc``: time candidates on a measure-only host over TVM RPC (built here)."""
    spec = check_request(spec, target, strategy, budget, fleet, policy)
    if policy is None and strategy != "evolutionary":
        policy = make_policy(strategy, spec=spec, target=target, settings=settings, budget=budget,
                             fleet=fleet, client=llm_client, model=model)
    sink = sink or ev.NullSink()
    measure_config = measure_config or MeasureConfig()
    start = time.perf_counter()
    if resume is None:
        sink.emit(ev.RunStarted(spec.to_dict(), target, strategy, flops(spec), budget.to_dict(), settings.to_dict()))
    else:
        sink.emit(ev.RunResumed(len(resume.nodes), resume.trials, len(resume.calls)))
    own_measurer = measurer is None
    measurer = measurer or LocalMeasurer(spec, target, measure_config, rpc=rpc)
    baseline = baseline_latency
    try:
        space = SearchSpace(spec, target, seed=settings.seed)
        if baseline is None:
            base = measurer.measure([None], BASELINE_CONFIG)[0]
            baseline = base.latency_s if base.ok else None
            sink.emit(ev.BaselineMeasured(base.status, baseline, base.error))
        common = dict(
            space=space,
            measurer=measurer,
            sink=sink,
            settings=settings,
            budget=budget,
            baseline_latency=baseline,
            should_stop=should_stop,
        )
        if strategy == "evolutionary":
            from .evolutionary import EvolutionarySearch

            search = EvolutionarySearch(measure_config=measure_config, **common)
        else:
            search = MCTSSearch(policy=policy, **common)
        if resume is not None:
            search.restore(resume)
        result = search.run()
    except BaseException as exc:
        sink.emit(
            ev.RunFinished("failed", f"{type(exc).__name__}: {exc}"[:500], 0, None, None, baseline, time.perf_counter() - start)
        )
        raise
    finally:
        if own_measurer:
            measurer.close()
    elapsed = time.perf_counter() - start
    status = "cancelled" if result.stop_reason == "cancelled" else "succeeded"
    if result.best is None and status == "succeeded":
        status = "failed"
    sink.emit(
        ev.RunFinished(
            status,
            result.stop_reason if result.best else "no valid schedule was found",
            result.trials,
            result.best.id if result.best else None,
            result.best_latency,
            baseline,
            elapsed,
        )
    )
    llm = policy.summary() if policy is not None and policy.uses_llm else None
    return TuneOutcome(spec, target, strategy, result, baseline, elapsed, space, llm, status)
