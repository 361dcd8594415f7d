"""Read-side reports: per-model cost review, the cost rolled up the tree, run comparisons.

Every function takes runs the caller may already see (a queryset narrowed by
``search.selectors.visible_runs``); none of them decides visibility.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Avg, Count, F, Q, Sum

from .engine.policy import own_move
from .engine.workloads import flops
from .models import Escalation, Event, LLMCall, Node, Run

#: outcomes that are not errors
GOOD_OUTCOMES = ("ok", "escalation")


def model_costs(runs) -> dict:
    """Per model over ``runs``: calls, tokens, USD, mean latency, hit rate, USD per hit, the children
    its calls made and how many of them were measured, errors by kind,
    escalations (calls it made as the escalation target, regressions of its own that
    triggered one) and its share of the calls. Rows sorted by USD, largest first."""
    calls = LLMCall.objects.filter(run__in=runs)
    rows = {
        r["model"]: dict(
            model=r["model"],
            calls=r["calls"],
            prompt_tokens=r["prompt_tokens"] or 0,
            completion_tokens=r["completion_tokens"] or 0,
            usd=r["usd"] or 0.0,
            mean_latency_s=r["mean_latency_s"] or 0.0,
            escalation_calls=r["escalation_calls"],
            errors={},
            error_calls=0,
            escalations_triggered=0,
            scored=0,
            hits=0,
            own=0,
            proposed=0,
            measured=0,
        )
        for r in calls.values("model").annotate(
            calls=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            usd=Sum("usd"),
            mean_latency_s=Avg("latency_s"),
            escalation_calls=Count("id", filter=Q(escalation=True)),
        )
    }
    for r in calls.exclude(outcome__in=GOOD_OUTCOMES).values("model", "outcome").annotate(n=Count("id")):
        rows[r["model"]]["errors"][r["outcome"]] = r["n"]
        rows[r["model"]]["error_calls"] += r["n"]
    for r in Escalation.objects.filter(run__in=runs).values("small_model").annotate(n=Count("id")):
        if r["small_model"] in rows:
            rows[r["small_model"]]["escalations_triggered"] = r["n"]
    # of the children a model's calls made: hit rate, the share the cost model scored above their
    # parent; proposals measured, those compiled and timed (refine's mutants of the fastest
    # measured schedules compete with them for every measurement batch)
    scored = Q(parent_score__isnull=False)
    made = (
        Node.objects.filter(run__in=runs, call_id__isnull=False)
        .values("created_by")
        .annotate(
            scored=Count("id", filter=scored),
            hits=Count("id", filter=scored & Q(predicted__gt=F("parent_score"))),
            proposed=Count("id"),
            measured=Count("id", filter=Q(status__isnull=False)),
        )
    )
    for r in made:
        if r["created_by"] in rows:
            rows[r["created_by"]].update({k: r[k] for k in ("scored", "hits", "proposed", "measured")})
    # own share: of those children, the share that kept the model's own mutators rather than a
    # screened variant drawn from the target's prior (``prior_variants``)
    for node in Node.objects.filter(run__in=runs, call_id__isnull=False, parent_score__isnull=False).values(
        "created_by", "mutators"
    ):
        if node["created_by"] in rows:
            rows[node["created_by"]]["own"] += int(own_move(node["mutators"] or []))
    total_calls = sum(r["calls"] for r in rows.values())
    total_usd = sum(r["usd"] for r in rows.values())
    for r in rows.values():
        r["share"] = r["calls"] / total_calls if total_calls else 0.0
        r["usd_share"] = r["usd"] / total_usd if total_usd else 0.0
        r["hit_rate"] = r["hits"] / r["scored"] if r["scored"] else None
        r["own_share"] = r["own"] / r["scored"] if r["scored"] else None
        # what one hit cost: the price of a model's calls over the children it proposed that the
        # cost model scored above their parent (what cost_routing weighs, per call, to route)
        r["usd_per_hit"] = r["usd"] / r["hits"] if r["hits"] else None
        r["errors"] = dict(sorted(r["errors"].items()))
    ordered = sorted(rows.values(), key=lambda r: (-r["usd"], r["model"]))
    return {
        "models": ordered,
        "total": {
            "calls": total_calls,
            "usd": total_usd,
            "prompt_tokens": sum(r["prompt_tokens"] for r in ordered),
            "completion_tokens": sum(r["completion_tokens"] for r in ordered),
            "errors": sum(r["error_calls"] for r in ordered),
            "proposed": sum(r["proposed"] for r in ordered),
            "measured": sum(r["measured"] for r in ordered),
        },
    }


def subtree_costs(run: Run) -> dict[int, dict]:
    """Per node of ``run``: the LLM calls made expanding it and everything below it, and their
    USD (a call is charged to the node it was made to expand)."""
    rows = list(Node.objects.filter(run=run).values_list("node_id", "parent_id", "depth"))
    cost = {n: {"usd": 0.0, "calls": 0} for n, _, _ in rows}
    for r in LLMCall.objects.filter(run=run).values("node_id").annotate(usd=Sum("usd"), calls=Count("id")):
        c = cost.setdefault(r["node_id"], {"usd": 0.0, "calls": 0})
        c["usd"] += r["usd"] or 0.0
        c["calls"] += r["calls"]
    for n, parent, _ in sorted(rows, key=lambda row: -row[2]):  # deepest first
        if parent is not None:
            up = cost.setdefault(parent, {"usd": 0.0, "calls": 0})
            up["usd"] += cost[n]["usd"]
            up["calls"] += cost[n]["calls"]
    return cost


def costly_subtrees(run: Run, limit: int = 12) -> list[dict]:
    """The most expensive subtrees below the root, each with the best latency found in it."""
    costs = subtree_costs(run)
    nodes = {
        n["node_id"]: n
        for n in Node.objects.filter(run=run).values(
            "node_id", "parent_id", "depth", "created_by", "mutators", "latency", "status", "visits"
        )
    }
    children = defaultdict(list)
    for n in nodes.values():
        if n["parent_id"] is not None:
            children[n["parent_id"]].append(n["node_id"])

    def best_in(n: int) -> float | None:
        best, stack = None, [n]
        while stack:
            m = stack.pop()
            lat = nodes.get(m, {}).get("latency")
            if lat is not None and nodes[m]["status"] == "ok" and (best is None or lat < best):
                best = lat
            stack.extend(children.get(m, ()))
        return best

    ranked = sorted(
        (n for n in nodes if n != 0 and costs.get(n, {}).get("calls")), key=lambda n: (-costs[n]["usd"], n)
    )[:limit]
    total = costs.get(0, {"usd": 0.0})["usd"]
    return [
        dict(
            nodes[n],
            usd=costs[n]["usd"],
            calls=costs[n]["calls"],
            share=costs[n]["usd"] / total if total else 0.0,
            best_latency=best_in(n),
        )
        for n in ranked
    ]


# --- comparisons -------------------------------------------------------------------------------


class CompareError(ValueError):
    """The runs cannot be compared (fewer than two, different kernels)."""


def progress_series(run_ids) -> dict[int, list[dict]]:
    """Per run, its progress in order: trials, best latency, USD, LLM calls, elapsed seconds.
    A resumed run's clock goes on from where the previous attempt stopped."""
    series: dict[int, list[dict]] = {r: [] for r in run_ids}
    offsets: dict[int, float] = defaultdict(float)
    last: dict[int, float] = defaultdict(float)
    rows = Event.objects.filter(run_id__in=run_ids, kind__in=("progress", "run_resumed")).order_by("run_id", "seq")
    for run_id, kind, data in rows.values_list("run_id", "kind", "data"):
        if kind == "run_resumed":
            offsets[run_id] = last[run_id]
            continue
        elapsed = offsets[run_id] + float(data.get("elapsed_s") or 0.0)
        last[run_id] = elapsed
        series[run_id].append(
            {
                "trials": data["trials"],
                "best_latency_s": data.get("best_latency_s"),
                "usd": data.get("usd", 0.0),
                "llm_calls": data.get("llm_calls", 0),
                "elapsed_s": elapsed,
            }
        )
    return series


def compare(runs) -> dict:
    """Side by side: the runs' summary rows and their progress series (same kernel required)."""
    from .selectors import largest_shares

    runs = list(runs.select_related("kernel").order_by("pk"))
    if len(runs) < 2:
        raise CompareError("pick two or more runs to compare")
    kernels = {r.kernel_id for r in runs}
    if len(kernels) > 1:
        labels = sorted({str(r.kernel) for r in runs})
        raise CompareError("runs of different kernels cannot be compared: " + "; ".join(labels))
    series = progress_series([r.pk for r in runs])
    shares = largest_shares(runs)
    bests: dict[int, list] = {r.pk: [] for r in runs}
    for run_id, data in (
        Event.objects.filter(run_id__in=list(bests), kind="best_improved").order_by("seq").values_list("run_id", "data")
    ):
        bests[run_id].append([data["trial"], data["latency_s"]])
    work = flops(runs[0].kernel.spec)
    rows = []
    for r in runs:
        s = series[r.pk]
        rows.append(
            {
                "id": r.pk,
                "label": f"#{r.pk} {r.strategy}",
                "strategy": r.strategy,
                "target": r.target,
                "status": r.status,
                "trials": r.trials_done,
                "best_latency_s": r.best_latency,
                "gflops": work / r.best_latency / 1e9 if r.best_latency else None,
                "baseline_latency_s": r.baseline_latency,
                # the best latency steps at the trial that improved it, as on the run page
                "best_series": bests[r.pk] + ([[r.trials_done, r.best_latency]] if r.best_latency else []),
                "speedup": r.speedup,
                "usd": r.usd,
                "llm_calls": r.llm_calls,
                "largest_share": shares.get(r.pk),
                "wall_s": s[-1]["elapsed_s"] if s else None,
                "series": s,
            }
        )
    return {"kernel": str(runs[0].kernel), "runs": rows}
