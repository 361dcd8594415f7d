"""The event sink that writes a run's events to the database, and the loader for resume.

Each engine event becomes, in one transaction: an ``Event`` row with the next per-run
sequence number, the row it describes (a Node, a Measurement, an LLMCall, an Escalation, or
updates to them), and the Run's counters. After the commit, the event (without the trace)
goes out on the live channel (search.live), whichever process runs the search.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .engine import events as ev
from .engine.mcts import SavedState
from .live import Publisher
from .models import Escalation, Event, KernelBaseline, LLMCall, Measurement, Node, Run


class DatabaseSink:
    def __init__(self, run: Run, host: str = ""):
        self.run_id = run.pk
        self.seq = run.last_seq
        self.live = Publisher(run.pk)
        #: where the run measures: its baseline is shared with the kernel's other runs there
        self.kernel_id, self.target, self.host = run.kernel_id, run.target, host

    def emit(self, event: ev.Event) -> None:
        data = event.to_dict()
        trace = data.pop("trace", None)
        seq = self.seq + 1  # taken only once committed: a failed write leaves no gap
        with transaction.atomic():
            Event.objects.create(run_id=self.run_id, seq=seq, kind=event.kind, data=data)
            run_updates = {"last_seq": seq, "heartbeat_at": timezone.now()}
            handler = getattr(self, f"_on_{event.kind}", None)
            if handler is not None:
                run_updates.update(handler(event, seq, trace) or {})
            Run.objects.filter(pk=self.run_id).update(**run_updates)
        self.seq = seq
        self.live.on_commit(seq, data)

    # -- one handler per event kind that changes a row ------------------------------------------
    def _on_run_started(self, e: ev.RunStarted, seq, _):
        known = Run.objects.filter(pk=self.run_id, baseline_latency__isnull=False).exists()
        return {"phase": "searching" if known else "measuring the unscheduled kernel"}

    def _on_run_resumed(self, e: ev.RunResumed, seq, _):
        return {"phase": "searching"}

    def _on_baseline_measured(self, e: ev.BaselineMeasured, seq, _):
        if e.status == "ok" and e.latency_s and self.host:
            repeats = sorted(e.repeats_s) or [e.latency_s]
            KernelBaseline.objects.update_or_create(
                kernel_id=self.kernel_id,
                target=self.target,
                host=self.host,
                defaults=dict(
                    latency=e.latency_s,  # the measurer's figure (the mean), as the run's own
                    low=repeats[0],
                    high=repeats[-1],
                    repeats=len(repeats),
                    run_id_measured=self.run_id,
                ),
            )
        return {"baseline_latency": e.latency_s, "phase": "searching"}

    def _on_run_finished(self, e: ev.RunFinished, seq, _):
        return {"phase": e.status}

    def _on_node_created(self, e: ev.NodeCreated, seq, trace):
        Node.objects.create(run_id=self.run_id, seq=seq, **{f: getattr(e, f) for f in ev.NODE_FIELDS})
        # a successful expansion resets the parent's failure streak (as the engine does)
        Node.objects.filter(run_id=self.run_id, node_id=e.parent_id, fail_streak__gt=0).update(fail_streak=0)

    def _on_expansion_failed(self, e: ev.ExpansionFailed, seq, _):
        Node.objects.filter(run_id=self.run_id, node_id=e.node_id).update(fail_streak=e.fail_streak, dead=e.dead)

    def _on_backpropagated(self, e: ev.Backpropagated, seq, _):
        Node.objects.filter(run_id=self.run_id, node_id__in=[i for i in e.path if i != 0]).update(
            visits=F("visits") + 1, value=F("value") + e.reward
        )

    def _on_node_measured(self, e: ev.NodeMeasured, seq, _):
        Measurement.objects.update_or_create(
            run_id=self.run_id,
            trial=e.trial,
            defaults=dict(
                node_id=e.node_id,
                status=e.status,
                latency=e.latency_s,
                build_s=e.build_s,
                error=e.error,
                coarse=e.coarse,
                seq=seq,
            ),
        )
        Node.objects.filter(run_id=self.run_id, node_id=e.node_id).update(status=e.status, latency=e.latency_s)
        return {"trials_done": e.trial}

    def _on_best_improved(self, e: ev.BestImproved, seq, _):
        return {"best_latency": e.latency_s, "best_node_id": e.node_id}

    def _on_llm_call(self, e: ev.LLMCallRecorded, seq, _):
        LLMCall.objects.create(run_id=self.run_id, seq=seq, **{f: getattr(e, f) for f in ev.CALL_FIELDS})
        return {"llm_calls": F("llm_calls") + 1, "usd": F("usd") + e.usd}

    def _on_escalation(self, e: ev.Escalation, seq, _):
        Escalation.objects.create(
            run_id=self.run_id,
            node_id=e.node_id,
            child_id=e.child_id,
            small_model=e.small_model,
            large_model=e.large_model,
            streak=e.streak,
            small_score=e.small_score,
            large_score=e.large_score,
            accepted=e.accepted,
            call_id=e.call_id,
            seq=seq,
        )
        return {"escalations": F("escalations") + 1}


def saved_state(run: Run) -> SavedState | None:
    """The engine state a run left in the database; None when it has no node yet."""
    nodes = list(run.nodes.order_by("node_id"))
    if not nodes:
        return None
    saved = [n.record() for n in nodes]
    history, best = [], None
    for m in run.measurements.order_by("trial"):
        if m.status == "ok" and m.latency and (best is None or m.latency < best):
            best = m.latency
        if best is not None:
            history.append((m.trial, best))
    calls = list(run.llm_calls_made.order_by("call_id").values(*ev.CALL_FIELDS))
    return SavedState(
        nodes=saved,
        trials=run.measurements.count(),
        coarse=run.measurements.filter(coarse=True).count(),
        history=history,
        calls=calls,
        escalations=run.escalation_events.count(),
    )
