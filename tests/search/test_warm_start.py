"""A warm start from the team's database: a run that asks for one trains on the measured
schedules its team's earlier runs on the same target left (never another team's), and a run
that does not ask reads none."""

import pytest

from accounts.access import ensure_team
from search import services
from search.engine.measure import MeasureConfig
from search.engine.request import Budget, SearchSettings
from search.engine.workloads import KernelSpec, get_kernel
from search.models import Event, Node
from tests.helpers import create_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db, pytest.mark.slow]

FAST = MeasureConfig(number=1, repeat=2, min_repeat_ms=0, timeout_s=60.0)
OTHER = KernelSpec("gemm", {"M": 64, "N": 96, "K": 64}, name="gemm-other")


def finished_run(spec, team, measurer=None, **settings):
    run = create_run(
        spec=spec,
        team=team,
        budget=Budget(trials=4),
        settings=SearchSettings.paper(measure_batch=4, expansions_per_round=4, seed=3, **settings),
        timing=FAST,
        enqueue=False,
    )
    services.execute_run(run.pk, measurer=measurer)
    run.refresh_from_db()
    return run


def test_a_warm_started_run_trains_on_its_teams_earlier_records_only(gemm_measurer):
    mine, theirs = ensure_team("mine"), ensure_team("theirs")
    earlier = finished_run(OTHER, mine)
    finished_run(OTHER, theirs)  # another team's records stay out
    ok = Node.objects.filter(run=earlier, status="ok").count()
    assert ok >= 3

    warm = create_run(
        spec=get_kernel("gemm-128"),
        team=mine,
        budget=Budget(trials=4),
        settings=SearchSettings.paper(measure_batch=4, expansions_per_round=4, warm_start=True),
        timing=FAST,
        enqueue=False,
    )
    assert len(services.warm_start_for(warm).records) == ok
    services.execute_run(warm.pk, measurer=gemm_measurer)
    (event,) = Event.objects.filter(run=warm, kind="warm_started")
    assert event.data["records"] == ok and event.data["kernels"] == 1 and event.data["seeded"] == 0

    cold = finished_run(get_kernel("gemm-128"), mine, measurer=gemm_measurer)
    assert not Event.objects.filter(run=cold, kind="warm_started").exists()
