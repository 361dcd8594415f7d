"""Read-side queries for pages, the events API and the websocket consumer.

Every page, API endpoint and websocket finds runs through :func:`visible_runs` or
:func:`run_for`: a run that the user may not see does not exist for them (404), whether or
not its id does."""

from __future__ import annotations

from django.http import Http404

from .engine.events import CALL_FIELDS, NODE_FIELDS
from .live import wire
from .models import Event, ModelRun, Run

MAX_EVENTS_PER_PAGE = 5000


def visible_runs(user, queryset=None):
    """``queryset`` (default: every run) narrowed to the runs ``user`` may see: their teams'
    runs, every run for a superuser, none for an anonymous user."""
    qs = Run.objects.all() if queryset is None else queryset
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(team__members=user)


def run_for(user, run_id: int, queryset=None) -> Run:
    """The run, if ``user`` may see it; else Http404 (the same answer as a missing id)."""
    run = visible_runs(user, queryset).filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run")
    return run


def visible_model_runs(user):
    """Model runs ``user`` may see: the same rule as for runs."""
    qs = ModelRun.objects.defer("onnx")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs
    return qs.filter(team__members=user)


def model_run_for(user, model_run_id: int) -> ModelRun:
    model_run = visible_model_runs(user).filter(pk=model_run_id).first()
    if model_run is None:
        raise Http404("no such model run")
    return model_run


def events_after(run_id: int, after: int = 0, limit: int = MAX_EVENTS_PER_PAGE) -> list[dict]:
    """The run's events with ``seq > after``, in order, in their wire format."""
    rows = Event.objects.filter(run_id=run_id, seq__gt=after).order_by("seq").values("seq", "data")[:limit]
    return [wire(r["seq"], r["data"]) for r in rows]


def run_header(run: Run) -> dict:
    return {
        "id": run.pk,
        "kernel": run.kernel.spec.to_dict(),
        "target": run.target,
        "strategy": run.strategy,
        "status": run.status,
        "phase": run.phase,
        "cancelling": run.cancel_requested and not run.is_final,
        "stop_reason": run.stop_reason,
        "trials_done": run.trials_done,
        "budget": run.budget.to_dict(),
        "llm_calls": run.llm_calls,
        "usd": run.usd,
        "baseline_latency": run.baseline_latency,
        "baseline": shared_baseline(run),
        "best_latency": run.best_latency,
        "best_node_id": run.best_node_id,
        "escalations": run.escalations,
        "last_seq": run.last_seq,
        "fleet": [{k: m.get(k) for k in ("name", "params", "usd_per_m_input", "usd_per_m_output")} for m in run.fleet],
    }


def shared_baseline(run: Run) -> dict | None:
    """The kernel's shared baseline the run's speedup is against (its spread, where and when it
    was measured), when the run's baseline is that one."""
    from .models import KernelBaseline

    if run.baseline_latency is None:
        return None
    row = KernelBaseline.objects.filter(
        kernel_id=run.kernel_id, target=run.target, latency=run.baseline_latency
    ).first()
    return row.to_dict() if row else None


def largest_shares(runs) -> dict[int, float | None]:
    """Per run, the share of LLM calls made by the fleet's largest model (None without LLMs)."""
    from django.db.models import Count

    from .models import LLMCall

    largest = {r.pk: max(r.fleet, key=lambda m: m["params"])["name"] for r in runs if r.fleet}
    counts: dict[int, dict[str, int]] = {}
    for row in LLMCall.objects.filter(run_id__in=list(largest)).values("run_id", "model").annotate(n=Count("id")):
        counts.setdefault(row["run_id"], {})[row["model"]] = row["n"]
    out = {}
    for r in runs:
        c = counts.get(r.pk, {})
        total = sum(c.values())
        out[r.pk] = (c.get(largest[r.pk], 0) / total) if r.pk in largest and total else None
    return out


def node_detail(run: Run, node_id: int, *, script: bool = False) -> dict | None:
    from .models import LLMCall, Node

    node = Node.objects.filter(run=run, node_id=node_id).first()
    if node is None:
        return None
    data = {f: getattr(node, f) for f in NODE_FIELDS if f != "trace"}
    # timed by two single runs only (slower than the run's timing cutoff), not in full
    data["coarse"] = run.measurements.filter(node_id=node_id, coarse=True).exists()
    data["call"] = None
    if node.call_id is not None:
        call = LLMCall.objects.filter(run=run, call_id=node.call_id).values(*CALL_FIELDS).first()
        data["call"] = call
    # the path from the root: each step's node, who made it, its mutators and latency
    parents = dict(Node.objects.filter(run=run).values_list("node_id", "parent_id")) if node.depth > 1 else {}
    ids, at = [], node.node_id
    while at and len(ids) < 1000:  # node 0 is the root (the unscheduled kernel)
        ids.append(at)
        at = node.parent_id if at == node.node_id else parents.get(at)
    rows = {
        n["node_id"]: n
        for n in Node.objects.filter(run=run, node_id__in=ids).values(
            "node_id", "created_by", "origin", "mutators", "latency", "status", "predicted"
        )
    }
    data["path"] = [rows[i] for i in reversed(ids) if i in rows]
    if script and node.trace:
        from .engine.compiler import TraceMismatch, replay
        from .engine.workloads import build_module

        try:
            data["script"] = replay(build_module(run.kernel.spec), node.trace).mod.script()
        except TraceMismatch:  # the kernel's definition changed after the run
            data["script"] = "# this schedule's trace does not apply to the kernel as this version builds it"
    return data
