"""Read-side queries for pages, the events API and the websocket consumer."""

from __future__ import annotations

from .models import Event, Run

MAX_EVENTS_PER_PAGE = 5000


def events_after(run_id: int, after: int = 0, limit: int = MAX_EVENTS_PER_PAGE) -> list[dict]:
    """The run's events with ``seq > after``, in order, each with its ``seq``."""
    rows = Event.objects.filter(run_id=run_id, seq__gt=after).order_by("seq").values("seq", "data")[:limit]
    return [dict(r["data"], seq=r["seq"]) for r in rows]


def run_header(run: Run) -> dict:
    return {
        "id": run.pk,
        "kernel": run.kernel.spec.to_dict(),
        "target": run.target,
        "strategy": run.strategy,
        "status": run.status,
        "stop_reason": run.stop_reason,
        "trials_done": run.trials_done,
        "trials_budget": run.trials_budget,
        "llm_calls": run.llm_calls,
        "llm_calls_budget": run.llm_calls_budget,
        "usd": run.usd,
        "usd_budget": run.usd_budget,
        "baseline_latency": run.baseline_latency,
        "best_latency": run.best_latency,
        "best_node_id": run.best_node_id,
        "escalations": run.escalations,
        "last_seq": run.last_seq,
        "fleet": [{k: m.get(k) for k in ("name", "params", "usd_per_m_input", "usd_per_m_output")} for m in run.fleet],
    }
