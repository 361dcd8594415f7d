"""Real Celery worker processes on the real Redis broker, against the test database:
a run end to end, SIGKILL mid-run then resume, redelivery to a restarted worker, cancel,
and two workers on two queues each taking only their target's runs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import services
from search.engine.measure import MeasureConfig
from search.engine.request import Budget, SearchSettings
from search.models import Run
from tests.helpers import create_run, database_url
from tests.search.test_services import assert_consistent

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST_URL = os.environ.get("COLT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FAST = MeasureConfig(number=1, repeat=2, min_repeat_ms=0, timeout_s=60.0)
SETTINGS = SearchSettings.paper(measure_batch=4, expansions_per_round=6, seed=21)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db, pytest.mark.services, pytest.mark.slow]


def redis_available() -> bool:
    import redis

    try:
        return redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(autouse=True)
def broker(settings):
    if not redis_available():
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS_TEST_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_TEST_URL}")
    import redis

    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    settings.REDIS_URL = REDIS_TEST_URL  # dispatch() sends to the broker this names
    yield


class Worker:
    def __init__(self, name: str, queue: str, **env):
        self.name = name
        environ = dict(
            os.environ,
            DATABASE_URL=database_url(),
            REDIS_URL=REDIS_TEST_URL,
            COLT_STALE_AFTER_S="2",
            PYTHONPATH=str(ROOT),
            **env,
        )
        self.log = open(ROOT / f".pytest-worker-{name}.log", "w")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "colt_site.celery",
                "worker",
                "-Q",
                queue,
                "-c",
                "1",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self):
        """SIGKILL the worker and everything it started (its pool child, measurement workers)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def workers():
    started = []

    def start(name, queue="llvm", **env):
        w = Worker(name, queue, **env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def wait_for(predicate, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def refreshed(run):
    run.refresh_from_db()
    return run


def create(spec, trials, target="llvm", **kw):
    return create_run(spec=spec, target=target, budget=Budget(trials=trials), settings=SETTINGS, timing=FAST, **kw)


def test_a_real_worker_runs_a_run_end_to_end(workers, gemm128):
    workers("w1")
    run = create(gemm128, 8)
    wait_for(lambda: refreshed(run).is_final, what="the run to finish")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.trials_done == 8 and run.worker.startswith("w1@")
    assert_consistent(run)


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(workers, gemm128, fake_fleet, monkeypatch):
    monkeypatch.setattr(services, "STALE_AFTER_S", 2.0)  # as the workers' COLT_STALE_AFTER_S
    w = workers("w1")
    run = create(gemm128, 24, strategy="colt", fleet=fake_fleet)
    wait_for(lambda: refreshed(run).trials_done >= 4 and run.llm_calls > 0, what="measurements and LLM calls")
    w.kill()
    run = refreshed(run)
    assert run.status == Run.Status.RUNNING  # orphaned: nobody will finish it by itself
    nodes, trials, calls = run.nodes.count(), run.trials_done, run.llm_calls_made.count()
    assert calls > 0 and run.llm_calls == calls
    assert_consistent(run)
    time.sleep(2.5)  # older than COLT_STALE_AFTER_S: the run is orphaned
    services.resume_run(run.pk)
    workers("w2")
    wait_for(lambda: refreshed(run).is_final, what="the resumed run to finish")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.trials_done == 24 and run.measurements.count() == 24
    assert run.nodes.count() >= nodes and run.worker.startswith("w2@")
    assert run.llm_calls_made.count() >= calls and run.llm_calls == run.llm_calls_made.count()
    assert run.events.filter(kind="run_resumed").exists()
    assert trials < 24
    assert_consistent(run)


def test_a_restarted_worker_gets_the_unacknowledged_task_again(workers, gemm128):
    """acks_late + reject_on_worker_lost: the message outlives the killed worker and is
    redelivered (after the broker's visibility timeout) to the next worker on the queue."""
    w = workers("w1", COLT_VISIBILITY_TIMEOUT="4")
    run = create(gemm128, 12)
    wait_for(lambda: refreshed(run).trials_done >= 4, what="the first measurements")
    w.kill()
    workers("w2", COLT_VISIBILITY_TIMEOUT="4")
    wait_for(lambda: refreshed(run).is_final, timeout=240, what="redelivery and completion")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("w2@") and run.attempts >= 2
    assert run.trials_done == 12
    assert_consistent(run)


def test_cancel_stops_a_running_run(workers, gemm128):
    workers("w1")
    run = create(gemm128, 400)
    wait_for(lambda: refreshed(run).trials_done >= 4, what="a running run")
    services.cancel_run(run.pk)
    wait_for(lambda: refreshed(run).is_final, what="the cancel")
    assert run.status == Run.Status.CANCELLED and run.trials_done < 400
    assert_consistent(run)


def test_cancel_stops_an_evolutionary_run_within_one_batch(workers, gemm128):
    """MetaSchedule's own search obeys the same stop rule: its task scheduler is stopped from
    the measure callback after the batch in which the cancel arrives."""
    workers("w1")
    run = create(gemm128, 400, strategy="evolutionary")
    batch = 2 * SETTINGS.measure_batch  # evolutionary measures this many per batch
    wait_for(lambda: refreshed(run).trials_done >= batch, what="a first evolutionary batch")
    services.cancel_run(run.pk)
    at_cancel = refreshed(run).trials_done
    wait_for(lambda: refreshed(run).is_final, what="the cancel")
    assert run.status == Run.Status.CANCELLED and run.stop_reason == "cancelled", run.error
    assert at_cancel <= run.trials_done <= at_cancel + batch
    assert run.best_latency is not None  # what was measured is kept, re-checked against numpy
    assert_consistent(run)


def test_two_workers_on_two_queues_take_only_their_targets_runs(workers, gemm128):
    workers("cpu", queue="llvm")
    workers("gpu", queue="cuda-sm80")
    cpu_run = create(gemm128, 4, target="llvm")
    gpu_run = create(gemm128, 4, target="cuda-sm80")
    wait_for(lambda: refreshed(cpu_run).is_final and refreshed(gpu_run).is_final, timeout=240, what="both runs")
    assert cpu_run.worker.startswith("cpu@") and cpu_run.status == Run.Status.SUCCEEDED
    assert gpu_run.worker.startswith("gpu@")
    # no GPU here: the CUDA run fails at once with the reason, spending no trials (a GPU host
    # can resume it)
    assert gpu_run.status == Run.Status.FAILED and "no cuda device" in gpu_run.error
    assert gpu_run.trials_done == 0


def test_a_killed_worker_is_replaced_by_the_watchdog_without_a_resume(workers, gemm128):
    """SIGKILL the worker mid-run and start another: nobody types resume, the message the dead
    worker reserved stays away for Redis's hour-long visibility timeout, and the new worker's
    watchdog sees the stale heartbeat and dispatches the run again; it finishes, once."""
    w = workers("w1", COLT_WATCHDOG_S="1")
    run = create(gemm128, 16)
    wait_for(lambda: refreshed(run).trials_done >= 4, what="the first measurements")
    w.kill()
    workers("w2", COLT_WATCHDOG_S="1")
    wait_for(lambda: refreshed(run).is_final, timeout=120, what="the watchdog to bring the run back")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("w2@") and run.attempts >= 2 and run.trials_done == 16
    assert not run.events.filter(kind="run_finished", data__status="failed").exists()
    assert_consistent(run)


def test_a_queued_run_whose_message_was_lost_is_dispatched_again(workers, gemm128):
    """Redis restarted without persistence: the queue is empty, the run says queued. A worker's
    watchdog finds no message for it (queued nor reserved) and dispatches it again."""
    import redis

    run = create(gemm128, 4)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    wait_for(lambda: client.llen("llvm") == 1, timeout=10, what="the task message")
    client.flushdb()  # what a restart without persistence leaves
    workers("w1", COLT_WATCHDOG_S="1", COLT_QUEUE_LOST_AFTER_S="1")
    wait_for(lambda: refreshed(run).is_final, timeout=120, what="the watchdog to requeue the run")
    assert run.status == Run.Status.SUCCEEDED and run.trials_done == 4 and run.attempts == 1, run.error
    assert_consistent(run)


def test_the_watchdog_leaves_runs_with_a_message_or_a_live_worker_alone(gemm128):
    from datetime import timedelta

    import redis
    from django.utils import timezone

    from search.watchdog import recover, runs_with_a_message

    client = redis.Redis.from_url(REDIS_TEST_URL)
    waiting = create(gemm128, 4)  # its message is in the queue
    wait_for(lambda: client.llen("llvm") == 1, timeout=10, what="the task message")
    assert runs_with_a_message(client, ["llvm"]) == {waiting.pk}
    alive = create(gemm128, 4)
    Run.objects.filter(pk=alive.pk).update(status=Run.Status.RUNNING, heartbeat_at=timezone.now())
    later = timezone.now() + timedelta(seconds=120)  # long after both were created
    assert alive.pk not in recover(client, now=timezone.now())
    client.delete("llvm")  # both messages gone now
    Run.objects.filter(pk=alive.pk).update(heartbeat_at=later)  # still beating
    sent = recover(client, now=later)
    assert sent == [waiting.pk]  # the queued one, once
    assert recover(client, now=later) == []  # dispatched already in this stale period


def test_a_real_worker_runs_a_model_run_and_its_tasks(workers):
    """A model run goes through the broker like a run: the worker searches every task and
    builds the model; cancel and resume reach it the same way."""
    from search import modelruns
    from search.engine import onnxgraphs
    from search.models import ModelRun
    from tests.search.test_modelruns import DOC

    workers("w1")
    model_run = modelruns.create_model_run(onnxgraphs.small_cnn(size=12, channels=8), DOC, name="cnn")
    wait_for(lambda: ModelRun.objects.get(pk=model_run.pk).is_final, timeout=300, what="the model run to finish")
    model_run.refresh_from_db()
    assert model_run.status == "succeeded", model_run.error
    runs = Run.objects.filter(model_run=model_run)
    assert runs and all(r.worker.startswith("w1@") for r in runs)
    assert model_run.results["max_abs_diff"] < 1e-4
