"""Write-side services. The CLI, the worker and the pages call these; they call the engine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .engine import events as ev
from .engine.llm import Fleet, FleetError
from .engine.request import RequestError, RunRequest, build_request
from .engine.tuning import TuneOutcome, tune
from .engine.warm import Record, WarmStart

if TYPE_CHECKING:
    from .models import Run

log = logging.getLogger(__name__)


class FleetUnavailable(RuntimeError):
    """The fleet's local servers cannot be started (models not fetched, a server failed)."""


class RunStateError(RuntimeError):
    """The run is not in a state that allows this (resume a finished run, ...)."""


class RunBusy(RunStateError):
    """Another worker is running this run right now (its last event is recent)."""


def load_fleet(name: str) -> Fleet:
    """``local`` (the four local models) or a JSON file: a list of model definitions."""
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


def configured_fleet() -> Fleet | None:
    """The fleet the web app offers: ``COLT_FLEET_FILE`` if set, else the local models."""
    from django.conf import settings

    try:
        return load_fleet(settings.COLT_FLEET_FILE or "local")
    except (FleetError, OSError) as exc:
        log.error("no fleet: %s", exc)
        return None


def available_targets() -> list[tuple[str, str]]:
    """Targets a run can use: the queues that a live worker consumes (with Redis), or this
    process's CPU (the embedded default)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return [("llvm", "llvm (this host's CPU, in-process worker)")]
    from colt_site.celery import app

    queues: set[str] = set()
    try:
        with app.connection_for_write(settings.REDIS_URL) as conn:
            replies = app.control.inspect(timeout=1.0, connection=conn).active_queues() or {}
        for worker_queues in replies.values():
            queues.update(q["name"] for q in worker_queues)
    except Exception as exc:  # noqa: BLE001 - no broker: offer nothing live
        log.warning("cannot reach the workers: %s", exc)
    if not queues:
        return [("llvm", "llvm (no live worker yet: the run waits in the queue)")]
    return [(q, f"{q} (live worker)") for q in sorted(queues)]


def fleet_is_local(fleet: Fleet) -> bool:
    from .localfleet import local_fleet

    local = {m.name: m.api_base for m in local_fleet().models}
    return all(local.get(m.name) == m.api_base for m in fleet.models)


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


# --- runs ---------------------------------------------------------------------------------------


def create_run(request: RunRequest, *, owner=None, team=None, enqueue: bool = True, remeasure_baseline=False):
    """Save a validated run request as a Run; enqueue its search once the row is committed."""
    from .models import Kernel, Run

    spec = request.kernel
    with transaction.atomic():
        kernel, _ = Kernel.objects.get_or_create(
            key=spec.key,
            defaults=dict(name=spec.name, op=spec.op, shape=dict(spec.shape), dtype=spec.dtype, module=spec.module),
        )
        run = Run.objects.create(
            kernel=kernel,
            owner=owner,
            team=team,
            remeasure_baseline=bool(remeasure_baseline),
            **Run.request_fields(request),
        )
        if enqueue:
            transaction.on_commit(lambda: enqueue_run(run.pk, run.target))
    return run


def launch(doc: dict, *, owner) -> Run:
    """A run from a JSON run request document and ``team`` (one of the owner's teams; optional
    when the owner is in exactly one), on a target a worker serves: what the JSON API does."""
    from accounts.access import teams_of

    doc = dict(doc)
    team_name = doc.pop("team", None)
    errors: dict[str, str] = {}
    try:
        request = build_request(doc, offered_fleet=configured_fleet())
    except RequestError as exc:
        request, errors = None, dict(exc.errors)
    teams = teams_of(owner)
    if team_name is None:
        team = teams.first() if teams.count() == 1 else None
        if team is None:
            errors["team"] = "name one of your teams"
    else:
        team = teams.filter(name=team_name).first() if isinstance(team_name, str) else None
        if team is None:
            errors["team"] = f"you are not in a team named {team_name!r}"
    served = dict(available_targets())
    if request is not None and request.target not in served:
        errors["target"] = f"no worker serves target {request.target!r}; available: {', '.join(served)}"
    if errors or request is None:
        raise RequestError(errors)
    return create_run(request, owner=owner, team=team)


def enqueue_run(run_id: int, target: str) -> None:
    """Send the run to the worker queue named for its target (or the in-process executor)."""
    from .tasks import dispatch

    dispatch(run_id, target)


def cancel_run(run_id: int) -> None:
    """Ask a running run to stop (it does within one iteration); a queued one stops at once."""
    from .models import Run

    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.is_final:
            return
        run.cancel_requested = True
        if run.status == Run.Status.QUEUED and not run.nodes.exists():
            run.status = Run.Status.CANCELLED
            run.phase = "cancelled"
            run.stop_reason = "cancelled before it started"
            run.finished_at = timezone.now()
        run.save(update_fields=["cancel_requested", "status", "phase", "stop_reason", "finished_at"])


def resume_run(run_id: int, *, enqueue: bool = True) -> None:
    """Put a stopped (cancelled, failed or orphaned) run back in its queue; it goes on from the
    tree in the database."""
    from .models import Run

    _check_tree_replays(Run.objects.select_related("kernel").get(pk=run_id))
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status == Run.Status.SUCCEEDED and run.trials_done >= run.budget.trials:
            raise RunStateError(f"run {run_id} already finished its trial budget")
        if run.status == Run.Status.QUEUED and not run.cancel_requested:
            raise RunStateError(f"run {run_id} is already queued")
        age = heartbeat_age(run.heartbeat_at)
        if run.status == Run.Status.RUNNING and age is not None and age < STALE_AFTER_S:
            # a worker is on it: a second task would run it twice
            what = "is stopping" if run.cancel_requested else "is running"
            raise RunStateError(f"run {run_id} {what} (last event {age:.0f} s ago); resume it once it has stopped")
        run.status = Run.Status.QUEUED
        run.phase = "queued: waiting for a worker"
        run.cancel_requested = False
        run.finished_at = None
        run.save(update_fields=["status", "phase", "cancel_requested", "finished_at"])
        if enqueue:
            transaction.on_commit(lambda: enqueue_run(run.pk, run.target))


def _check_tree_replays(run: Run) -> None:
    """A run goes on from its saved tree only where the tree's schedules replay on the kernel as
    this version builds it: the first saved node's trace is replayed (a few ms) before the run is
    queued, so a kernel the library rewrote after the run (attention, 2026-12-07) is refused here,
    with what to do, rather than failing in the worker with TVM's error."""
    from .engine.compiler import TraceMismatch, replay
    from .engine.workloads import build_module
    from .models import Node

    node = Node.objects.filter(run=run, node_id__gt=0).exclude(trace=None).order_by("node_id").first()
    if node is None or not node.trace:
        return
    try:
        replay(build_module(run.kernel.spec), node.trace)
    except TraceMismatch as exc:
        raise RunStateError(
            f"run {run.pk} cannot go on from its tree: its schedules do not replay on "
            f"{run.kernel.name or run.kernel.op} as this version builds it ({exc}); the kernel's definition "
            "changed after the run (attention's on 2026-12-07). Its results and downloads stay; "
            "launch a new run to tune the kernel again"
        ) from exc


def _release_after_database_error(run_id: int, exc: BaseException) -> None:
    """Put the run back in the queue state, if the database answers again; the caller
    retries (the Celery task, the in-process dispatcher) and goes on from the stored tree."""
    log.warning("run %s: database error, will retry: %s", run_id, exc)
    connection.close()
    try:
        from .models import Run

        Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
            status=Run.Status.QUEUED, stop_reason="database unavailable; retrying"
        )
    except DatabaseError:
        pass  # still down: the retry by this same worker takes the run over anyway
    finally:
        connection.close()


def mark_run_failed(run_id: int, error: str) -> None:
    from .models import Run

    Run.objects.filter(pk=run_id).exclude(status__in=Run.FINAL).update(
        status=Run.Status.FAILED, phase="failed", error=error[:2000], finished_at=timezone.now()
    )


def measurement_host(rpc=None) -> str:
    """Where candidates are timed: the RPC host, or this machine and its CPU. A kernel's shared
    baseline is per measurement host."""
    if rpc is not None:
        return f"rpc {rpc.label()}"
    from .engine.tvmenv import tvm as _tvm

    _tvm()
    from tvm.target import codegen

    return f"{socket.gethostname()} ({codegen.llvm_get_system_cpu()})"


def measurement_rpc():
    """This worker's measure-only host (``COLT_RPC=host:port`` or ``host:port/key`` for a
    tracker), or None to measure here."""
    from django.conf import settings

    from .engine.measure import RPCConfig

    return RPCConfig.parse(settings.COLT_RPC) if settings.COLT_RPC else None


#: A running run whose last event is older than this is orphaned (its worker died) and may be
#: taken over by a redelivered task; a fresher one is left to the worker that runs it.
STALE_AFTER_S = float(os.environ.get("COLT_STALE_AFTER_S", "180"))


def heartbeat_age(beat) -> float | None:
    """Seconds since a heartbeat; None when there has been none."""
    return None if beat is None else (timezone.now() - beat).total_seconds()


#: the most earlier measured schedules a warm-started run trains on (the newest runs' first)
WARM_RECORDS = 2000


def warm_start_for(run) -> WarmStart:
    """The measured schedules of earlier runs of the run's team on its target, any kernel (the
    engine keeps other kernels' for the cost model and this kernel's also as seeds)."""
    from .models import Node

    nodes = Node.objects.filter(run__target=run.target, status="ok", latency__gt=0, trace__isnull=False).exclude(
        run_id=run.pk
    )
    nodes = nodes.filter(run__team_id=run.team_id) if run.team_id else nodes.filter(run__team__isnull=True)
    nodes = nodes.select_related("run__kernel").order_by("-run_id", "node_id")[:WARM_RECORDS]
    return WarmStart([Record(n.run.kernel.spec, n.trace, n.latency) for n in nodes])


def execute_run(
    run_id: int,
    *,
    measurer=None,
    llm_client=None,
    worker: str = "",
    extra_sink: ev.EventSink | None = None,
    serve_local: bool = True,
    rpc=None,
) -> TuneOutcome | None:
    """Run (or go on with) a run's search here: what the worker task (and the CLI) calls."""
    from .models import KernelBaseline, Run
    from .persistence import DatabaseSink, saved_state

    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("kernel").get(pk=run_id)
        if run.is_final:
            log.info("run %s is %s; nothing to do", run_id, run.status)
            return None
        # a fresh heartbeat means another worker is on it; this worker's own earlier attempt
        # (cut short by a database outage) is taken over at once
        if run.status == Run.Status.RUNNING and run.worker != worker:
            age = heartbeat_age(run.heartbeat_at)
            if age is not None and age < STALE_AFTER_S:
                raise RunBusy(f"run {run_id} is being run by {run.worker} (last event {age:.0f} s ago)")
        if run.cancel_requested:
            run.status, run.stop_reason, run.finished_at = Run.Status.CANCELLED, "cancelled", timezone.now()
            run.save(update_fields=["status", "stop_reason", "finished_at"])
            return None
        run.status = Run.Status.RUNNING
        run.phase = "starting"
        run.stop_reason = ""  # e.g. "database unavailable; retrying" from an earlier attempt
        run.attempts += 1
        run.worker = worker
        run.started_at = run.started_at or timezone.now()
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["status", "phase", "stop_reason", "attempts", "worker", "started_at", "heartbeat_at"])
    rpc = rpc or measurement_rpc()
    host = measurement_host(rpc)
    shared = None
    if run.baseline_latency is None and not run.remeasure_baseline and not run.events.exists():
        shared = KernelBaseline.objects.filter(kernel_id=run.kernel_id, target=run.target, host=host).first()
        if shared is not None:  # the kernel's baseline on this host: every run's speedup is against it
            run.baseline_latency = shared.latency
            Run.objects.filter(pk=run_id).update(baseline_latency=shared.latency)
    sink = DatabaseSink(run, host=host)
    if extra_sink is not None:
        sink = ev.FanOutSink(sink, extra_sink)

    def should_stop() -> bool:
        return Run.objects.filter(pk=run_id, cancel_requested=True).exists()

    try:
        state = saved_state(run)
        request = run.run_request
        if run.attempts > 1:  # a resumed run draws new random numbers, reproducibly
            request = request.with_seed(request.settings.seed + 1000 * (run.attempts - 1))
        fleet = request.fleet
        serving = serve_local and fleet is not None and fleet_is_local(fleet)
        if serving:
            Run.objects.filter(pk=run_id).update(phase="starting the model servers")
        with local_servers(serving, log=log.info):
            outcome = tune(
                request,
                sink=sink,
                measurer=measurer,
                llm_client=llm_client,
                should_stop=should_stop,
                resume=state,
                baseline_latency=run.baseline_latency,
                rpc=rpc,
                warm=warm_start_for(run) if request.settings.warm_start and state is None else None,
                transient=(OperationalError, InterfaceError),  # retried below: not the run's end
            )
    except (OperationalError, InterfaceError) as exc:  # the database went away: retry, don't fail
        _release_after_database_error(run_id, exc)
        raise OperationalError(f"database unavailable during run {run_id}: {exc}") from exc
    except BaseException as exc:  # an interrupted CLI run too: it can be resumed
        mark_run_failed(run_id, f"{type(exc).__name__}: {exc}")
        raise
    final = {
        "succeeded": Run.Status.SUCCEEDED,
        "cancelled": Run.Status.CANCELLED,
    }.get(outcome.status, Run.Status.FAILED)
    Run.objects.filter(pk=run_id).update(
        status=final, phase=final, stop_reason=outcome.stop_reason[:200], finished_at=timezone.now()
    )
    return outcome


# --- the command line ------------------------------------------------------------------------


@dataclass
class CliRun:
    run_id: int
    outcome: TuneOutcome
    files: dict[str, Path]


def tune_and_write(
    request: RunRequest,
    *,
    out_dir: Path,
    sink: ev.EventSink,
    serve_local: bool = False,
    log=print,
    team: str | None = "default",
    rpc=None,
    remeasure_baseline: bool = False,
) -> CliRun:
    """A tuning from the command line: a Run like any other (one history for CLI and web,
    streamed live to open run pages), executed here, its best schedule written to ``out_dir``."""
    from accounts.access import ensure_team

    run = create_run(
        request, team=ensure_team(team) if team else None, enqueue=False, remeasure_baseline=remeasure_baseline
    )
    with local_servers(serve_local and request.fleet is not None, log=log):
        outcome = execute_run(run.pk, extra_sink=sink, serve_local=False, rpc=rpc)
    return CliRun(run.pk, outcome, outcome.write(out_dir))
