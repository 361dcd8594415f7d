"""Write-side services. The CLI, the worker and the pages call these; they call the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine import events as ev
from .engine.measure import MeasureConfig
from .engine.mcts import Budget, SearchSettings
from .engine.tuning import TuneOutcome, tune
from .engine.workloads import KernelSpec


@dataclass
class CliRun:
    outcome: TuneOutcome
    files: dict[str, Path]


def tune_and_write(
    *,
    spec: KernelSpec,
    target: str,
    strategy: str,
    budget: Budget,
    settings: SearchSettings,
    out_dir: Path,
    sink: ev.EventSink,
    measure_config: MeasureConfig | None = None,
) -> CliRun:
    """Run a tuning from the command line and write its best schedule to ``out_dir``."""
    outcome = tune(
        spec=spec,
        target=target,
        strategy=strategy,
        budget=budget,
        settings=settings,
        sink=sink,
        measure_config=measure_config,
    )
    return CliRun(outcome, outcome.write(out_dir))
