"""Write-side services. The CLI, the worker and the pages call these; they call the engine."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from .engine import events as ev
from .engine.measure import MeasureConfig
from .engine.mcts import Budget, SearchSettings
from .engine.tuning import TuneOutcome, tune
from .engine.llm import Fleet, FleetError
from .engine.workloads import KernelSpec


class FleetUnavailable(RuntimeError):
    """The fleet's local servers cannot be started (models not fetched, a server failed)."""


def load_fleet(name: str) -> Fleet:
    """``local`` (the three local models) or a JSON file: a list of model definitions."""
    if name == "local":
        from .localfleet import local_fleet

        return local_fleet()
    path = Path(name)
    if not path.exists():
        raise FleetError(f"--fleet must be 'local' or a JSON file; {name!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise FleetError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise FleetError(f"{name}: a fleet file is a JSON list of models")
    return Fleet.of(data)


@contextlib.contextmanager
def local_servers(enabled: bool, log=print):
    """Start the local fleet's servers for the duration, unless they already run."""
    if not enabled:
        yield []
        return
    from .localfleet import LocalFleetError, serve, stop

    try:
        started = serve(log=log)
    except LocalFleetError as exc:
        raise FleetUnavailable(str(exc)) from None
    try:
        yield started
    finally:
        stop(started)


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
    fleet: Fleet | None = None,
    model: str | None = None,
    serve_local: bool = False,
    log=print,
) -> CliRun:
    """Run a tuning from the command line and write its best schedule to ``out_dir``."""
    with local_servers(serve_local and fleet is not None, log=log):
        outcome = tune(
            spec=spec,
            target=target,
            strategy=strategy,
            budget=budget,
            settings=settings,
            sink=sink,
            measure_config=measure_config,
            fleet=fleet,
            model=model,
        )
    return CliRun(outcome, outcome.write(out_dir))
