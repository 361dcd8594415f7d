"""Runs that persist: the database sink, resume after a lost worker, cancel, the in-process
executor. Runs against whichever database DATABASE_URL names (scripts/test runs SQLite, then
PostgreSQL)."""

import time

import pytest

from search import services
from search.engine.measure import MeasureConfig
from search.engine.request import Budget, RequestError, SearchSettings
from search.models import Event, LLMCall, Measurement, Node, Run
from tests.helpers import LAUNCH_FORM, create_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db]

FAST = MeasureConfig(number=1, repeat=2, min_repeat_ms=0, timeout_s=60.0)
SETTINGS = SearchSettings.paper(measure_batch=4, expansions_per_round=6, seed=11)


@pytest.fixture
def queued(monkeypatch):
    """Record what would be enqueued instead of starting it (tests call execute_run)."""
    sent = []
    monkeypatch.setattr(services, "enqueue_run", lambda run_id, target: sent.append((run_id, target)))
    return sent


class DyingMeasurer:
    """A real measurer whose worker 'dies' (raises) on the n-th candidate, like a killed process."""

    def __init__(self, inner, die_on):
        self.inner, self.candidates, self.die_on = inner, 0, die_on

    def measure(self, traces, config=None, *, cutoff_s=None):
        if traces != [None]:
            self.candidates += len(traces)
            if self.candidates >= self.die_on:
                raise RuntimeError("worker lost")
        return self.inner.measure(traces, config)

    def close(self):
        pass


def assert_consistent(run):
    nodes = list(run.nodes.order_by("node_id").values_list("node_id", "parent_id"))
    assert [n for n, _ in nodes] == list(range(1, len(nodes) + 1))  # dense, no duplicate
    ids = {0} | {n for n, _ in nodes}
    assert all(p in ids for _, p in nodes)
    seqs = list(run.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and run.last_seq == len(seqs)
    assert run.events.filter(kind="node_created").count() == len(nodes)
    trials = list(run.measurements.order_by("trial").values_list("trial", flat=True))
    assert trials == list(range(1, len(trials) + 1))
    calls = list(run.llm_calls_made.order_by("call_id").values_list("call_id", flat=True))
    assert calls == list(range(1, len(calls) + 1))
    assert run.events.filter(kind="llm_call").count() == len(calls)


def test_create_run_validates_and_enqueues_after_commit(queued, gemm128, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = create_run(spec=gemm128, budget=Budget(trials=4), settings=SETTINGS, timing=FAST)
    assert queued == [(run.pk, "llvm")]
    assert run.status == Run.Status.QUEUED and run.kernel.spec.shape == gemm128.shape
    with pytest.raises(RequestError, match="trials must be an integer between 1 and 100000"):
        create_run(spec=gemm128, budget=Budget(trials=0))
    with pytest.raises(RequestError, match="needs a fleet"):
        create_run(spec=gemm128, strategy="colt")
    assert Run.objects.count() == 1


def test_a_run_persists_every_event_in_order(queued, gemm128, gemm_measurer, fake_fleet):
    run = create_run(
        spec=gemm128, strategy="colt", budget=Budget(trials=8), settings=SETTINGS, fleet=fake_fleet, timing=FAST
    )
    services.execute_run(run.pk, measurer=gemm_measurer)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.stop_reason == "trial budget spent"
    assert run.trials_done == 8 == run.measurements.count()
    assert run.baseline_latency > 0 and run.best_latency < run.baseline_latency
    best = run.nodes.get(node_id=run.best_node_id)
    assert best.status == "ok" and best.latency == run.best_latency and best.trace
    assert run.llm_calls == run.llm_calls_made.count() > 0
    assert run.usd == pytest.approx(sum(c.usd for c in run.llm_calls_made.all()))
    assert_consistent(run)
    kinds = list(run.events.order_by("seq").values_list("kind", flat=True))
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    # visits persisted through back-propagation match the tree: each child's visits <= parent's
    by_id = {n.node_id: n for n in run.nodes.all()}
    for n in by_id.values():
        if n.parent_id:
            assert n.visits <= by_id[n.parent_id].visits
    # the event log carries no traces (they live on the node rows)
    assert all("trace" not in e.data for e in run.events.filter(kind="node_created"))


def test_resume_after_the_worker_dies_loses_and_duplicates_nothing(queued, gemm128, gemm_measurer, fake_fleet):
    run = create_run(
        spec=gemm128, strategy="colt", budget=Budget(trials=12), settings=SETTINGS, fleet=fake_fleet, timing=FAST
    )
    with pytest.raises(RuntimeError, match="worker lost"):
        services.execute_run(run.pk, measurer=DyingMeasurer(gemm_measurer, die_on=5))
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.trials_done == 4
    before_nodes, before_calls = run.nodes.count(), run.llm_calls_made.count()
    assert_consistent(run)
    services.resume_run(run.pk)
    assert queued[-1] == (run.pk, "llvm")
    services.execute_run(run.pk, measurer=gemm_measurer)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.attempts == 2
    assert run.trials_done == 12 == run.measurements.count()
    assert run.nodes.count() > before_nodes and run.llm_calls_made.count() > before_calls
    assert_consistent(run)
    assert run.events.filter(kind="run_resumed").count() == 1
    assert run.events.filter(kind="baseline_measured").count() == 1  # not measured again


def test_cancel_a_queued_run_at_once_and_a_running_one_between_candidates(queued, gemm128, gemm_measurer):
    run = create_run(spec=gemm128, budget=Budget(trials=4), settings=SETTINGS, timing=FAST)
    services.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    services.execute_run(run.pk, measurer=gemm_measurer)  # a late delivery does nothing
    assert run.nodes.count() == 0

    run = create_run(spec=gemm128, budget=Budget(trials=400), settings=SETTINGS, timing=FAST)

    class CancelOnFirstCandidate:
        def measure(self, traces, config=None, *, cutoff_s=None):
            if traces != [None]:
                services.cancel_run(run.pk)
            return gemm_measurer.measure(traces, config)

        def close(self):
            pass

    services.execute_run(run.pk, measurer=CancelOnFirstCandidate())
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.stop_reason == "cancelled"
    assert run.trials_done == 1  # the candidate in flight finished; the rest of its batch was not timed
    assert_consistent(run)


def test_embedded_default_runs_in_process_without_redis(settings, gemm128):
    settings.REDIS_URL = ""
    run = create_run(spec=gemm128, budget=Budget(trials=4), settings=SETTINGS, timing=FAST)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_final:
            break
        time.sleep(0.5)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.trials_done == 4
    assert Node.objects.filter(run=run).count() >= 4 and Event.objects.filter(run=run).exists()
    assert Measurement.objects.filter(run=run).count() == 4 and not LLMCall.objects.filter(run=run).exists()


def test_resume_and_cancel_commands(gemm128, gemm_measurer, queued):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    run = create_run(spec=gemm128, budget=Budget(trials=8), settings=SETTINGS, timing=FAST)
    call_command("cancel", str(run.pk))
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    call_command("resume", str(run.pk), "--here")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.trials_done == 8
    with pytest.raises(CommandError, match="already finished"):
        call_command("resume", str(run.pk))
    with pytest.raises(CommandError, match="no run"):
        call_command("cancel", "999999")


def test_a_timing_cutoff_run_keeps_which_latencies_were_timed_by_two_runs(client, team, queued, gemm128, gemm_measurer):
    from dataclasses import replace

    from search.persistence import saved_state

    settings = replace(SETTINGS, timing_cutoff=1.5)
    run = create_run(spec=gemm128, budget=Budget(trials=8), settings=settings, timing=FAST, team=team)
    services.execute_run(run.pk, measurer=gemm_measurer)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.request["settings"]["timing_cutoff"] == 1.5
    coarse = list(Measurement.objects.filter(run=run, coarse=True))
    assert coarse, "random gemm schedules: some are 1.5x slower than the best"
    assert all(m.latency > 1.5 * run.best_latency for m in coarse)
    assert client.get(f"/api/runs/{run.pk}/nodes/{coarse[0].node_id}").json()["coarse"] is True
    assert client.get(f"/api/runs/{run.pk}/nodes/{run.best_node_id}").json()["coarse"] is False
    assert saved_state(run).coarse == len(coarse)  # a resumed run counts on from there
    events = [e.data for e in Event.objects.filter(run=run, kind="node_measured")]
    assert sum(bool(e.get("coarse")) for e in events) == len(coarse)  # the page's replay shows them


def test_run_list_launch_page_and_node_api(client, team, queued, gemm128, gemm_measurer):
    run = create_run(spec=gemm128, budget=Budget(trials=4), settings=SETTINGS, timing=FAST, team=team)
    services.execute_run(run.pk, measurer=gemm_measurer)
    listing = client.get("/").content.decode()
    assert f'href="/runs/{run.pk}"' in listing and "gemm-128" in listing and "4 / 4" in listing
    assert client.get("/runs/new").status_code == 200
    run.refresh_from_db()
    node = client.get(f"/api/runs/{run.pk}/nodes/{run.best_node_id}").json()
    assert node["status"] == "ok" and node["latency"] == run.best_latency and "script" not in node
    script = client.get(f"/api/runs/{run.pk}/nodes/{run.best_node_id}?script=1").json()["script"]
    assert "T.prim_func" in script
    assert client.get(f"/api/runs/{run.pk}/nodes/99999").status_code == 404
    # a valid form post creates the run and opens its page; cancel and resume are POST-only
    response = client.post(
        "/runs/new",
        {
            **LAUNCH_FORM,
            "team": team.pk,
        },
    )
    new = Run.objects.order_by("-pk").first()
    assert response.status_code == 302 and response["Location"] == f"/runs/{new.pk}" and new.budget.trials == 3
    assert new.team == team and new.owner.username == "ada"
    assert client.get(f"/runs/{new.pk}/cancel").status_code == 405
    assert client.post(f"/runs/{new.pk}/cancel").status_code == 302


def test_resume_is_refused_while_a_worker_is_on_the_run(queued, client, team, gemm128):
    from datetime import timedelta

    from django.utils import timezone

    run = create_run(spec=gemm128, team=team, budget=Budget(trials=4), settings=SETTINGS, timing=FAST)
    with pytest.raises(services.RunStateError, match="already queued"):
        services.resume_run(run.pk)  # a second task for a queued run would run it twice
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, heartbeat_at=timezone.now(), worker="w:1")
    with pytest.raises(services.RunStateError, match="is running"):
        services.resume_run(run.pk)
    response = client.post(f"/runs/{run.pk}/resume")
    assert response.status_code == 400 and b"is running" in response.content
    services.cancel_run(run.pk)
    assert client.get(f"/api/runs/{run.pk}").json()["run"]["cancelling"] is True
    with pytest.raises(services.RunStateError, match="is stopping"):
        services.resume_run(run.pk)
    sent = len(queued)
    stale = timezone.now() - timedelta(seconds=services.STALE_AFTER_S + 5)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)  # its worker died
    services.resume_run(run.pk)
    assert len(queued) == sent + 1 and Run.objects.get(pk=run.pk).status == Run.Status.QUEUED


def test_runs_of_one_kernel_share_its_baseline_and_a_remeasure_replaces_it(
    queued, gemm128, gemm_measurer, client, team
):
    from search.models import KernelBaseline

    first = create_run(spec=gemm128, budget=Budget(trials=2), settings=SETTINGS, timing=FAST, team=team)
    services.execute_run(first.pk, measurer=gemm_measurer)
    first.refresh_from_db()
    shared = KernelBaseline.objects.get(kernel=first.kernel, target="llvm")
    assert shared.latency == first.baseline_latency and shared.run_id_measured == first.pk
    assert shared.low <= shared.latency * 1.0001 and shared.high >= shared.low and shared.repeats == 3
    assert first.events.filter(kind="baseline_measured").count() == 1
    second = create_run(spec=gemm128, budget=Budget(trials=2), settings=SETTINGS, timing=FAST, team=team)
    services.execute_run(second.pk, measurer=gemm_measurer)
    second.refresh_from_db()
    # not measured again: the same figure, so the two speedups are against one baseline
    assert second.baseline_latency == first.baseline_latency
    assert second.events.filter(kind="baseline_measured").count() == 0
    header = client.get(f"/api/runs/{second.pk}").json()["run"]
    assert header["baseline"]["latency_s"] == first.baseline_latency and header["baseline"]["run"] == first.pk
    assert header["phase"] == "succeeded"
    # on demand: measured again, and the new figure is the one shared from now on
    third = services.create_run(second.run_request, team=team, enqueue=False, remeasure_baseline=True)
    services.execute_run(third.pk, measurer=gemm_measurer)
    third.refresh_from_db()
    assert third.events.filter(kind="baseline_measured").count() == 1
    assert KernelBaseline.objects.get(kernel=first.kernel).run_id_measured == third.pk
    assert KernelBaseline.objects.count() == 1


def test_the_run_phase_follows_the_run(queued, gemm128, gemm_measurer):
    run = create_run(spec=gemm128, budget=Budget(trials=2), settings=SETTINGS, timing=FAST)
    assert run.phase.startswith("queued")
    phases = []

    class Watch:
        def emit(self, event):
            phases.append((event.kind, Run.objects.get(pk=run.pk).phase))

    services.execute_run(run.pk, measurer=gemm_measurer, extra_sink=Watch())
    seen = dict(phases)
    assert seen["run_started"] == "measuring the unscheduled kernel"
    assert seen["baseline_measured"] == "searching"
    assert seen["run_finished"] == "succeeded"


def test_a_run_whose_kernel_changed_since_is_not_resumed_and_says_why(queued, client, team, gemm128, gemm_measurer):
    """A kernel rewritten after a run (the library's attention, 2026-12-07) no longer replays the
    run's saved schedules: resume is refused with what to do (before: queued, then failed in the
    worker with TVM's error), and a worker handed such a run anyway fails with the same reason."""
    from search.engine.compiler import TraceMismatch

    run = create_run(spec=gemm128, team=team, budget=Budget(trials=8), settings=SETTINGS, timing=FAST)
    with pytest.raises(RuntimeError, match="worker lost"):
        services.execute_run(run.pk, measurer=DyingMeasurer(gemm_measurer, die_on=5))
    renamed = 0
    for node in run.nodes.exclude(trace=None):  # as if the kernel's output block had been renamed since
        insts, decisions = node.trace
        before = [[i[0], i[1], ["C_before", *i[2][1:]], i[3]] if i[0] == "GetSBlock" else i for i in insts]
        node.trace = [before, decisions]
        renamed += node.trace[0] != insts
        node.save(update_fields=["trace"])
    assert renamed, "no GetSBlock instruction in the traces: the test is moot"
    sent = len(queued)
    with pytest.raises(services.RunStateError, match="cannot go on from its tree") as refused:
        services.resume_run(run.pk)
    assert "launch a new run" in str(refused.value)
    response = client.post(f"/runs/{run.pk}/resume")
    assert response.status_code == 400 and b"cannot go on from its tree" in response.content
    assert len(queued) == sent and Run.objects.get(pk=run.pk).status == Run.Status.FAILED
    Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED)  # a task queued before the upgrade
    with pytest.raises(TraceMismatch, match="saved node 1's schedule does not replay"):
        services.execute_run(run.pk, measurer=gemm_measurer)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and "a new run tunes the kernel again" in run.error
    assert run.trials_done == 4 and run.measurements.count() == 4  # nothing lost
