"""Model runs: an ONNX file tuned task by task, then compiled and compared end to end.

The edges (the launch form, ``manage.py tune --onnx``, the Celery task) call these functions
with ids and plain values. A model run's tasks are ordinary :class:`~search.models.Run` rows
(their trees, run pages and downloads are the same as any run's); what is the model's own
lives on the :class:`~search.models.ModelRun` row: the task table, the allocation of the trial
budget, the estimate over time and the end-to-end figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from .engine import onnxmodel as om
from .engine.request import RequestError, build_request
from .engine.workloads import KernelSpec

log = logging.getLogger(__name__)

MODEL_NAME_CHARS = 48


class ModelRunStateError(RuntimeError):
    pass


def _task_budget(model_run, trials: int) -> dict:
    """A task's budget: its trials, and the model's other limits (LLM calls, USD, wall-clock) in
    proportion to its trials, so that the tasks together stay within the model's."""
    budget = dict(model_run.request.get("budget") or {}, trials=trials)
    part = trials / max(1, model_run.total_trials)
    # each within the request's lower limits: one call, a positive amount, one second
    if budget.get("llm_calls"):
        budget["llm_calls"] = max(1, math.ceil(budget["llm_calls"] * part))
    if budget.get("usd"):
        budget["usd"] = max(budget["usd"] * part, 1e-9)
    if budget.get("wall_s"):
        budget["wall_s"] = max(budget["wall_s"] * part, 1.0)
    return budget


def _request_doc(model_run, spec: KernelSpec, trials: int) -> dict:
    doc = dict(model_run.request)
    doc["budget"] = _task_budget(model_run, trials)
    return dict(doc, kernel=spec.to_dict(), target=model_run.target, strategy=model_run.strategy)


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:MODEL_NAME_CHARS].strip("._-")
    return cleaned or "model"


def create_model_run(
    data: bytes,
    doc: dict,
    *,
    name: str = "model",
    input_shapes: dict | None = None,
    owner=None,
    team=None,
    offered_fleet=None,
    enqueue: bool = True,
):
    """Check and import the ONNX file, validate the run request every task will share (``doc``
    without a kernel; ``budget.trials`` is the total across tasks) and save the model run with
    its task table. Raises :class:`~.engine.onnxmodel.ModelError` or
    :class:`~.engine.request.RequestError`; nothing is saved then."""
    from .engine.compiler import make_target
    from .models import Kernel, ModelRun

    name = safe_name(name)
    target_name = str(doc.get("target", "llvm"))
    try:
        target = make_target(target_name, num_cores=1)
    except (ValueError, KeyError, AttributeError) as exc:
        raise RequestError({"target": str(exc)}) from None
    imported = om.import_onnx(data, target, name=name, input_shapes=input_shapes)
    first = imported.tasks[0].spec
    request = build_request(dict(doc, kernel=first.to_dict()), offered_fleet=offered_fleet)
    if request.budget.trials < 1:
        raise RequestError({"budget": "give the model run a trial budget"})
    stored = request.to_dict()
    stored.pop("kernel")
    summary = imported.summary()
    for task, row in zip(imported.tasks, summary["tasks"], strict=True):
        row["kernel_key"] = task.spec.key
    with transaction.atomic():
        for task in imported.tasks:
            spec = task.spec
            Kernel.objects.get_or_create(
                key=spec.key,
                defaults=dict(name=spec.name, op=spec.op, shape={}, dtype=spec.dtype, module=spec.module),
            )
        model_run = ModelRun.objects.create(
            name=name,
            onnx=data,
            onnx_sha256=hashlib.sha256(data).hexdigest(),
            target=stored.pop("target"),
            strategy=stored.pop("strategy"),
            request=stored,
            input_shapes={k: list(v) for k, v in (input_shapes or {}).items()},
            summary=summary,
            owner=owner,
            team=team,
            phase="queued",
        )
        if enqueue:
            transaction.on_commit(lambda: enqueue_model_run(model_run.pk, model_run.target))
    return model_run


def enqueue_model_run(model_run_id: int, target: str) -> None:
    from .tasks import dispatch_model

    dispatch_model(model_run_id, target)


def cancel_model_run(model_run_id: int) -> None:
    """Stop the model run: the task being searched stops within one iteration, no other starts."""
    from .models import ModelRun
    from .services import cancel_run

    with transaction.atomic():
        model_run = ModelRun.objects.select_for_update().get(pk=model_run_id)
        if model_run.is_final:
            return
        model_run.cancel_requested = True
        fields = ["cancel_requested"]
        if model_run.status == ModelRun.Status.QUEUED and not model_run.started_at:
            model_run.status, model_run.phase = ModelRun.Status.CANCELLED, "cancelled before it started"
            model_run.finished_at = timezone.now()
            fields += ["status", "phase", "finished_at"]
        model_run.save(update_fields=fields)
    for run_id in model_run.task_runs.exclude(status__in=ModelRun.FINAL).values_list("pk", flat=True):
        cancel_run(run_id)


def last_sign_of_life(model_run):
    """The newest heartbeat of the model run or of any of its task runs (a task's search beats
    while the model run itself is quiet)."""
    from django.db.models import Max

    from .models import Run

    tasks = Run.objects.filter(model_run=model_run).aggregate(beat=Max("heartbeat_at"))["beat"]
    return max((b for b in (model_run.heartbeat_at, tasks) if b is not None), default=None)


def _is_live(model_run) -> bool:
    from .services import STALE_AFTER_S, heartbeat_age

    age = heartbeat_age(last_sign_of_life(model_run))
    return age is not None and age < STALE_AFTER_S


def resume_model_run(model_run_id: int, *, enqueue: bool = True) -> None:
    """Put a cancelled or failed model run back in the queue: finished tasks are kept, the
    interrupted one goes on from its tree, the rest start."""
    from .models import ModelRun

    with transaction.atomic():
        model_run = ModelRun.objects.select_for_update().get(pk=model_run_id)
        if model_run.status == ModelRun.Status.SUCCEEDED:
            raise ModelRunStateError(f"model run {model_run_id} already finished")
        orphaned = model_run.status == ModelRun.Status.RUNNING and not _is_live(model_run)
        if not model_run.is_final and not orphaned:  # a worker is on it (or it waits for one)
            raise ModelRunStateError(f"model run {model_run_id} is {model_run.status}; resume it once it has stopped")
        model_run.status, model_run.phase = ModelRun.Status.QUEUED, "queued"
        model_run.cancel_requested = False
        model_run.finished_at = None
        model_run.error = ""
        model_run.save(update_fields=["status", "phase", "cancel_requested", "finished_at", "error"])
        if enqueue:
            transaction.on_commit(lambda: enqueue_model_run(model_run.pk, model_run.target))


def _save(model_run, **fields) -> None:
    for key, value in fields.items():
        setattr(model_run, key, value)
    model_run.heartbeat_at = timezone.now()
    model_run.save(update_fields=[*fields, "heartbeat_at"])


def _cancelled(model_run_id: int) -> bool:
    from .models import ModelRun

    return ModelRun.objects.filter(pk=model_run_id, cancel_requested=True).exists()


def execute_model_run(
    model_run_id: int,
    *,
    progress: Callable[[str], None] = log.info,
    measurer_factory=None,
    llm_client=None,
    serve_local: bool = True,
    task_sink=None,
    worker: str = "",
):
    """Run (or go on with) a model run here: baselines, allocation, each task's search, then
    the end-to-end build and comparison. What the worker task and the CLI call."""
    from .engine.compiler import make_target
    from .models import ModelRun, Run
    from .services import execute_run, fleet_is_local, local_servers, resume_run

    with transaction.atomic():
        model_run = ModelRun.objects.select_for_update().get(pk=model_run_id)
        if model_run.is_final:
            return model_run
        if model_run.cancel_requested:
            _save(model_run, status=ModelRun.Status.CANCELLED, phase="cancelled", finished_at=timezone.now())
            return model_run
        if model_run.status == ModelRun.Status.RUNNING and _is_live(model_run):
            # another worker is on it (a redelivered message): leave it alone, fail nothing
            log.warning("model run %s is being run elsewhere; this delivery does nothing", model_run_id)
            return model_run
        _save(
            model_run,
            status=ModelRun.Status.RUNNING,
            phase="importing the model",
            started_at=model_run.started_at or timezone.now(),
        )
    start = time.monotonic() - (model_run.history[-1][0] if model_run.history else 0.0)
    try:
        target = make_target(model_run.target, num_cores=1)
        imported = om.import_onnx(
            bytes(model_run.onnx), target, name=model_run.name, input_shapes=model_run.input_shapes or None
        )
        summary = model_run.summary
        rows = summary["tasks"]
        if [t.spec.key for t in imported.tasks] != [r["kernel_key"] for r in rows]:
            raise om.ModelError("the model's tasks differ from those found at launch (another TVM version?)")
        request = build_request(_request_doc(model_run, imported.tasks[0].spec, 1), stored=True)
        _measure_baselines(model_run, imported, rows, request, progress, measurer_factory)
        if _cancelled(model_run_id):
            return _stop(model_run, ModelRun.Status.CANCELLED, "cancelled")
        fleet = request.fleet
        with local_servers(serve_local and fleet is not None and fleet_is_local(fleet), log=progress):
            # rounds: each allocates its part of the budget by the tasks' share of the model's
            # latency as it is then (unscheduled at first, the best found later), and searches
            while True:
                round_no = summary.get("round", 0)
                for k, (i, row) in enumerate(_pending(rows, round_no), 1):
                    if _cancelled(model_run_id):
                        return _stop(model_run, ModelRun.Status.CANCELLED, "cancelled")
                    run = Run.objects.get(pk=row["run"])
                    if run.is_final:  # cancelled, failed, or given more trials by this round
                        resume_run(run.pk, enqueue=False)
                    _save(model_run, phase=f"round {round_no}/{ROUNDS}: searching task {k}: {row['name']}")
                    progress(f"task {k} of round {round_no}: {row['name']}, {row['trials']} trials (run #{run.pk})")
                    measurer = measurer_factory(imported.tasks[i].spec) if measurer_factory else None
                    execute_run(
                        run.pk,
                        measurer=measurer,
                        llm_client=llm_client,
                        serve_local=False,
                        extra_sink=task_sink,
                        worker=worker,
                    )
                    run.refresh_from_db()
                    if run.status == Run.Status.SUCCEEDED:  # a cancelled task is searched again on resume
                        row["ran_round"] = round_no
                    estimate = _estimate(model_run)
                    model_run.history = [*model_run.history, [round(time.monotonic() - start, 2), estimate]]
                    _save(model_run, history=model_run.history, summary=summary)
                    progress(
                        f"  best {_ms(run.best_latency)} (unscheduled {_ms(run.baseline_latency)}); "
                        f"model estimate {_ms(estimate)}"
                    )
                if _cancelled(model_run_id):
                    return _stop(model_run, ModelRun.Status.CANCELLED, "cancelled")
                if round_no >= ROUNDS or _allocated(rows) >= model_run.total_trials:
                    break
                _allocate(model_run, imported, rows, round_no + 1)
                _print_tasks(rows, progress)
        if _cancelled(model_run_id):
            return _stop(model_run, ModelRun.Status.CANCELLED, "cancelled")
        _save(model_run, phase="compiling and timing the model")
        progress("compiling the model untuned and tuned, timing both and onnxruntime ...")
        model_run.results = end_to_end(model_run, imported, target)
        _save(model_run, results=model_run.results)
        return _stop(model_run, ModelRun.Status.SUCCEEDED, "finished")
    except (OperationalError, InterfaceError):
        raise  # the database went away: the task retries and goes on from what is stored
    except BaseException as exc:
        _stop(model_run, ModelRun.Status.FAILED, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise


def _stop(model_run, status, phase: str, error: str = ""):
    _save(model_run, status=status, phase=phase, finished_at=timezone.now(), error=error)
    return model_run


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds else "-"


def _measure_baselines(model_run, imported, rows, request, progress, measurer_factory) -> None:
    from .engine.measure import LocalMeasurer
    from .engine.tuning import BASELINE_CONFIG
    from .services import measurement_rpc

    todo = [i for i, r in enumerate(rows) if r.get("baseline_s") is None]
    for n, i in enumerate(todo, 1):
        if _cancelled(model_run.pk):
            return
        task = imported.tasks[i]
        _save(model_run, phase=f"measuring unscheduled tasks {n}/{len(todo)}")
        measurer = (
            measurer_factory(task.spec)
            if measurer_factory
            else LocalMeasurer(task.spec, model_run.target, request.timing, rpc=measurement_rpc())
        )
        try:
            result = measurer.measure([None], BASELINE_CONFIG)[0]
        finally:
            measurer.close()
        rows[i]["baseline_s"] = result.latency_s if result.ok else None
        rows[i]["baseline_error"] = "" if result.ok else (result.error or result.status)[:200]
        _save(model_run, summary=model_run.summary)
        progress(f"unscheduled {n}/{len(todo)} {task.name}: {_ms(rows[i]['baseline_s'])} x {task.weight}")


#: the trial budget is allocated in this many rounds; each round's allocation sees the tasks'
#: latencies as the earlier rounds left them
ROUNDS = 2


def _allocated(rows) -> int:
    return sum(r.get("trials", 0) for r in rows)


def _pending(rows, round_no: int) -> list[tuple[int, dict]]:
    """The tasks this round still has to search (a resumed model run skips the done ones)."""
    from .models import Run

    out = []
    for i, row in enumerate(rows):
        if not row.get("run") or row.get("ran_round", 0) >= round_no:
            continue
        run = Run.objects.get(pk=row["run"])
        if run.trials_done < run.budget.trials or not run.is_final:
            out.append((i, row))
    return out


def _allocate(model_run, imported, rows, round_no: int) -> None:
    """Round ``round_no``'s trials (onnxmodel.allocate over the tasks' current latencies: the
    best found, else unscheduled), added to the tasks' runs or to new runs."""
    from .models import Run
    from .services import create_run

    tasks = imported.tasks
    runs = {r.pk: r for r in Run.objects.filter(model_run=model_run)}
    for task, row in zip(tasks, rows, strict=True):
        run = runs.get(row.get("run"))
        task.baseline_s = (run.best_latency if run and run.best_latency else None) or row.get("baseline_s")
        if run is not None and run.is_final and run.trials_done < row.get("trials", 0):
            row["trials"] = run.trials_done  # stopped early (its space exhausted): the rest goes to others
            row["exhausted"] = True
    left = model_run.total_trials - _allocated(rows)
    budget = left if round_no >= ROUNDS else min(left, max(1, model_run.total_trials // ROUNDS))
    measured = [
        t for t, r in zip(tasks, rows, strict=True) if r.get("baseline_s") is not None and not r.get("exhausted")
    ]
    share = dict(zip((t.name for t in measured), om.shares(measured), strict=True))
    trials = dict(zip((t.name for t in measured), om.allocate(measured, budget), strict=True))
    with transaction.atomic():
        for task, row in zip(tasks, rows, strict=True):
            n = trials.get(task.name, 0)
            row.setdefault("trials", 0)
            row[f"share_{round_no}"] = share.get(task.name, 0.0)
            if round_no == 1:
                row["share"] = share.get(task.name, 0.0)  # of the untuned model's latency
            if n <= 0:
                continue
            row["trials"] += n
            if row.get("run"):
                run = runs[row["run"]]
                doc = dict(run.request)
                doc["budget"] = _task_budget(model_run, row["trials"])
                Run.objects.filter(pk=run.pk).update(request=doc)
                continue
            request = build_request(_request_doc(model_run, task.spec, n), stored=True)
            run = create_run(request, owner=model_run.owner, team=model_run.team, enqueue=False)
            Run.objects.filter(pk=run.pk).update(
                model_run=model_run, task_name=task.name, task_weight=task.weight, baseline_latency=row["baseline_s"]
            )
            row["run"] = run.pk
        summary = model_run.summary
        summary["round"] = round_no
        _save(model_run, summary=summary)


def _print_tasks(rows, progress) -> None:
    progress(f"{'task':<40} {'weight':>6} {'GFLOP':>8} {'unscheduled':>12} {'share':>6} {'trials':>6}  shapes")
    for r in rows:
        progress(
            f"{r['name'][:40]:<40} {r['weight']:>6} {r['flops'] / 1e9:>8.3f} {_ms(r.get('baseline_s')):>12} "
            f"{100 * r.get('share', 0):>5.1f}% {r.get('trials', '-'):>6}  {r.get('shapes', '')}"
        )


def task_table(model_run) -> list[dict]:
    """The task rows with their runs' current figures (best latency, trials, LLM cost)."""
    from .models import Run

    rows = [dict(r) for r in model_run.summary.get("tasks", [])]
    runs = {r.pk: r for r in Run.objects.filter(model_run=model_run)}
    for row in rows:
        run = runs.get(row.get("run"))
        row["best_s"] = run.best_latency if run else None
        row["trials_done"] = run.trials_done if run else 0
        row["status"] = run.status if run else ("untuned" if "trials" in row else "pending")
        row["llm_calls"] = run.llm_calls if run else 0
        row["usd"] = run.usd if run else 0.0
        base, best = row.get("baseline_s"), row["best_s"]
        row["speedup"] = base / best if base and best else None
    return rows


def _estimate(model_run) -> float | None:
    rows = task_table(model_run)
    total = 0.0
    for r in rows:
        value = r["best_s"] or r.get("baseline_s")
        if value is None:
            return None
        total += r["weight"] * value
    return total


def overview(model_run) -> dict:
    """What the model page shows and polls: status, phase, tasks, budgets, cost, estimate."""
    rows = task_table(model_run)
    calls = sum(r["llm_calls"] for r in rows)
    largest = _largest_calls(model_run)
    untuned = sum(r["weight"] * r["baseline_s"] for r in rows if r.get("baseline_s")) or None
    estimate = _estimate(model_run)
    return {
        "id": model_run.pk,
        "name": model_run.name,
        "status": model_run.status,
        "phase": model_run.phase,
        "cancel_requested": model_run.cancel_requested,
        "target": model_run.target,
        "strategy": model_run.strategy,
        "trials_budget": model_run.total_trials,
        "trials_done": sum(r["trials_done"] for r in rows),
        "llm_calls": calls,
        "usd": sum(r["usd"] for r in rows),
        "largest_share": largest / calls if calls else None,
        "untuned_estimate_s": untuned,
        "estimate_s": estimate,
        "history": model_run.history,
        "tasks": rows,
        "results": model_run.results,
        "error": model_run.error,
        "inputs": model_run.summary.get("inputs", []),
    }


def _largest_calls(model_run) -> int:
    """Calls made by each task run's largest model, summed over the tasks."""
    from .models import LLMCall, Run

    runs = [r for r in Run.objects.filter(model_run=model_run) if r.fleet]
    largest = {r.pk: max(r.fleet, key=lambda m: m["params"])["name"] for r in runs}
    return sum(LLMCall.objects.filter(run_id=run_id, model=model).count() for run_id, model in largest.items())


# --- end to end ------------------------------------------------------------------------------


def _best_records(model_run) -> list[tuple[KernelSpec, list, float]]:
    from .models import Node, Run

    records = []
    for run in Run.objects.filter(model_run=model_run).select_related("kernel"):
        if run.best_node_id is None or not run.best_latency:
            continue
        if run.baseline_latency and run.best_latency >= run.baseline_latency:
            continue  # no schedule beat the unscheduled kernel: the build keeps the default
        node = Node.objects.filter(run=run, node_id=run.best_node_id).first()
        if node is not None and node.trace is not None:
            records.append((run.kernel.spec, node.trace, run.best_latency))
    return records


def end_to_end(model_run, imported, target, *, threads: int = 1, repeat: int = 5) -> dict:
    """Untuned TVM, tuned TVM and onnxruntime on the same inputs and threads."""
    arrays = om.make_model_inputs(imported.inputs)
    untuned = om.compile_model(imported.mod, target)
    u_med, u_min, u_max, u_out = om.measure_model(untuned, arrays, repeat=max(1, repeat // 2), threads=threads)
    records = _best_records(model_run)
    tuned = om.compile_model(imported.mod, target, om.build_database(target, records))
    t_med, t_min, t_max, t_out = om.measure_model(tuned, arrays, repeat=repeat, threads=threads)
    o_med, o_min, o_max, o_out = om.run_onnxruntime(
        bytes(model_run.onnx), imported.inputs, arrays, repeat=repeat, threads=threads
    )
    return {
        "threads": threads,
        "host": socket.gethostname(),
        "cpu": _cpu(),
        "untuned_s": [u_med, u_min, u_max],
        "tuned_s": [t_med, t_min, t_max],
        "onnxruntime_s": [o_med, o_min, o_max],
        "speedup": u_med / t_med if t_med else None,
        "vs_onnxruntime": o_med / t_med if t_med else None,
        "max_abs_diff": om.max_abs_difference(t_out, o_out),
        "max_abs_diff_untuned": om.max_abs_difference(u_out, o_out),
        "tasks_tuned": len(records),
    }


def _cpu() -> str:
    from tvm.target import codegen

    return codegen.llvm_get_system_cpu()


def write_artifacts(model_run, out_dir: str | Path) -> dict[str, Path]:
    """The model's MetaSchedule database (JSON), the compiled library (``model.so``), the
    per-task best schedules and a README with the loader snippet, written to ``out_dir``."""
    from .engine.compiler import make_target
    from .exports import NothingToExport, schedule_script

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = make_target(model_run.target, num_cores=1)
    imported = om.import_onnx(
        bytes(model_run.onnx), target, name=model_run.name, input_shapes=model_run.input_shapes or None
    )
    records = _best_records(model_run)
    db_dir = out / "database"
    if db_dir.exists():
        shutil.rmtree(db_dir)
    db = om.build_database(target, records, db_dir)
    executable = om.compile_model(imported.mod, target, db)
    paths = {"database": db_dir, "library": out / "model.so", "readme": out / "README.md"}
    executable.export_library(str(paths["library"]))
    schedules = out / "schedules"
    schedules.mkdir(exist_ok=True)
    from .models import Run

    for run in Run.objects.filter(model_run=model_run).select_related("kernel"):
        with contextlib.suppress(NothingToExport):  # a task whose search measured nothing valid
            (schedules / f"{safe_name(run.task_name)}.py").write_text(schedule_script(run))
    paths["schedules"] = schedules
    snippet = om.loader_snippet(imported.inputs)
    paths["readme"].write_text(
        f"# {model_run.name}: tuned by COLT (model run {model_run.pk})\n\n"
        f"Target `{model_run.target}`, {len(records)} tuned tasks. Load and run the compiled model:\n\n"
        f"```python\n{snippet}```\n\n"
        "`database/` is MetaSchedule's JSON database: "
        "`ms.relax_integration.compile_relax(ms.database.JSONDatabase(work_dir='database'), mod, target)` "
        "rebuilds the model from it.\n"
    )
    for path in out.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)
    return paths


def artifact_zip(model_run) -> bytes:
    """Everything :func:`write_artifacts` writes, as one zip (what the page downloads)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_artifacts(model_run, tmp)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(f"{model_run.name}/{path.relative_to(tmp)}")
                    info.external_attr = 0o644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
        return buffer.getvalue()


def has_tuned_tasks(model_run) -> bool:
    from .models import Run

    return Run.objects.filter(model_run=model_run, best_node_id__isnull=False).exists()


def library_bytes(model_run) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_artifacts(model_run, tmp)["library"].read_bytes()
