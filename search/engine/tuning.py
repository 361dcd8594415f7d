"""One tuning run, end to end: the entry point the CLI, the worker and the benchmarks share.

``tune(request, ...)`` takes the validated :class:`~search.engine.request.RunRequest` and the
parts that differ between a test, a CLI and a worker (event sink, measurer, LLM client,
cancel flag). It measures the unscheduled kernel, runs the strategy found by name in the
registry (strategies.py), emits ``run_finished`` and returns a :class:`TuneOutcome`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import events as ev
from .compiler import SearchSpace
from .llm import LLMClient
from .mcts import SavedState, SearchResult
from .measure import LocalMeasurer, MeasureConfig, Measurer, RPCConfig
from .request import CANCELLED, RunRequest, StopRule
from .strategies import get_strategy
from .warm import WarmReport, WarmStart
from .workloads import KernelSpec, flops

BASELINE_CONFIG = MeasureConfig(number=1, repeat=3, min_repeat_ms=0, timeout_s=60.0)


@dataclass
class TuneOutcome:
    request: RunRequest
    result: SearchResult
    baseline_latency: float | None
    elapsed_s: float
    space: SearchSpace
    llm_summary: dict | None = None
    status: str = "succeeded"  # succeeded | failed | cancelled
    warm: WarmReport | None = None

    @property
    def spec(self) -> KernelSpec:
        return self.request.kernel

    @property
    def target(self) -> str:
        return self.request.target

    @property
    def strategy(self) -> str:
        return self.request.strategy

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

    def llm_proposals(self) -> dict | None:
        """LLM strategies: how many of the tree's nodes an LLM proposed, how many of those were
        measured, and whose proposal the best schedule is (None: not an LLM's). Refine's mutants
        of the fastest measured schedules compete with them for every measurement batch and
        usually outscore them (docs/benchmarks.md), so this says whether the calls reached the
        hardware at all."""
        if self.llm_summary is None:
            return None
        proposed = [n for n in self.result.tree.nodes[1:] if n.created_by]
        best = self.result.best
        return {
            "nodes": len(proposed),
            "measured": sum(n.status is not None for n in proposed),
            "best_from": best.created_by if best is not None else None,
        }

    def origins(self) -> dict:
        """Per origin (events.ORIGINS: root sample, the tree's prior or LLM child, refine's mutant
        of the prior's or an LLM's move...): the nodes made and those measured, most measured
        first; and the best schedule's origin."""
        by: dict[str, dict[str, int]] = {}
        for n in self.result.tree.nodes[1:]:
            cell = by.setdefault(n.origin or "unknown", {"nodes": 0, "measured": 0})
            cell["nodes"] += 1
            cell["measured"] += n.status is not None
        ordered = dict(sorted(by.items(), key=lambda kv: (-kv[1]["measured"], -kv[1]["nodes"], kv[0])))
        best = self.result.best
        return {"by": ordered, "best": (best.origin or "unknown") if best is not None else None}

    def summary(self) -> dict:
        best = self.result.best
        return {
            "llm": self.llm_summary,
            "llm_proposals": self.llm_proposals(),
            "origins": self.origins(),
            "kernel": self.spec.to_dict(),
            "target": self.target,
            "strategy": self.strategy,
            "trials": self.result.trials,
            "expansions": self.result.expansions,
            "evaluations": self.result.evaluations,
            "evaluations_per_trial": self.result.evaluations / self.result.trials if self.result.trials else 0.0,
            # where the wall-clock went: in the measurer (building, checking, timing), of that building
            "measure_s": round(self.result.measure_s, 3),
            "build_s": round(self.result.build_s, 3),
            "coarse_trials": self.result.coarse,  # timed by two single runs (slower than the timing cutoff)
            # design-space sketches with a measured schedule, of the space's (0 of 0: evolutionary)
            "sketches": self.result.sketches,
            "sketches_total": self.result.sketches_total,
            "nodes": len(self.result.tree) - 1,
            "stop_reason": self.result.stop_reason,
            "baseline_latency_s": self.baseline_latency,
            "best_latency_s": self.result.best_latency,
            "best_node": best.id if best else None,
            "speedup": self.speedup,
            "gflops": self.gflops,
            "elapsed_s": self.elapsed_s,
            "history": self.result.history,
            "warm_start": self.warm.to_dict() if self.warm else None,
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


class _TrialCount:
    """The run's sink, counting measured trials (for the run_finished of a run that failed)."""

    def __init__(self, inner: ev.EventSink, trials: int):
        self.inner, self.trials = inner, trials

    def emit(self, event: ev.Event) -> None:
        self.inner.emit(event)
        if isinstance(event, ev.NodeMeasured):
            self.trials = max(self.trials, event.trial)


def tune(
    request: RunRequest,
    *,
    sink: ev.EventSink | None = None,
    measurer: Measurer | None = None,
    llm_client: LLMClient | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: SavedState | None = None,
    baseline_latency: float | None = None,
    rpc: RPCConfig | None = None,
    warm: WarmStart | None = None,
    transient: tuple[type[BaseException], ...] = (),
) -> TuneOutcome:
    """Run ``request``; with ``resume``, go on from a saved state (and its known baseline).
    The parts that differ between a test, a CLI and a worker are passed in: the event sink,
    the measurer (default: this host, or ``rpc``, a measure-only host over TVM RPC), the LLM
    client and the cancel flag. ``warm``: earlier runs' records, used by a new run whose
    settings ask for a warm start (``settings.warm_start``), ignored otherwise. ``transient``:
    errors the caller retries (a database that went away): they propagate without a
    ``run_finished``, since the run goes on; any other error ends it as failed."""
    stop = StopRule(request.budget, should_stop)
    strategy_cls = get_strategy(request.strategy)
    spec, target = request.kernel, request.target
    sink = _TrialCount(sink or ev.NullSink(), resume.trials if resume else 0)
    if resume is None:
        sink.emit(
            ev.RunStarted(
                spec.to_dict(),
                target,
                request.strategy,
                flops(spec),
                request.budget.to_dict(),
                request.settings.to_dict(),
            )
        )
    else:
        sink.emit(ev.RunResumed(len(resume.nodes), resume.trials, len(resume.calls)))
    own_measurer = measurer is None
    measurer = measurer or LocalMeasurer(spec, target, request.timing, rpc=rpc)
    baseline = baseline_latency
    strategy = None
    try:
        space = SearchSpace(spec, target, seed=request.settings.seed)
        if baseline is None:
            base = measurer.measure([None], BASELINE_CONFIG)[0]
            baseline = base.latency_s if base.ok else None
            sink.emit(ev.BaselineMeasured(base.status, baseline, base.error, tuple(base.repeats_s)))
        strategy = strategy_cls(
            request,
            space=space,
            measurer=measurer,
            sink=sink,
            stop=stop,
            baseline_latency=baseline,
            llm_client=llm_client,
        )
        report = None
        if resume is not None:
            strategy.restore(resume)
        elif warm is not None and request.settings.warm_start:
            report = strategy.warm(warm)
            sink.emit(ev.WarmStarted(**report.to_dict()))
        result = strategy.run()
    except transient:
        raise
    except BaseException as exc:
        sink.emit(
            ev.RunFinished(
                "failed", f"{type(exc).__name__}: {exc}"[:500], sink.trials, None, None, baseline, stop.elapsed()
            )
        )
        raise
    finally:
        if own_measurer:
            measurer.close()
    elapsed = stop.elapsed()
    status = "cancelled" if result.stop_reason == CANCELLED else "succeeded"
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
    return TuneOutcome(request, result, baseline, elapsed, space, strategy.llm_summary(), status, report)
