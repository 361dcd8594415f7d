"""Faults, each a test against real parts: a build that fails and a result that is wrong
(invalid, never the best); model servers that are slow, answer garbage, or are SIGKILLed
mid-call (the run goes on, every outcome recorded); the database dropping the worker's
connections mid-run (the task retries and goes on); Redis restarted during a run (the page
resyncs, no event lost). A worker SIGKILLed mid-run is in tests/search/test_tasks.py."""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import services
from search.engine import measure as M
from search.engine.llm import Fleet, ModelSpec
from search.engine.policy import LLMPolicy
from search.engine.request import Budget, SearchSettings
from search.models import Event, LLMCall, Node, Run
from tests.conftest import FAST
from tests.dashboard.test_pages import page  # noqa: F401 - the Chromium fixture
from tests.fakellm import Script
from tests.helpers import create_run, database_url, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db]


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(services, "enqueue_run", lambda *a: None)


# --- invalid candidates ------------------------------------------------------------------------


def test_a_wrong_result_is_detected_by_the_numpy_check(monkeypatch, gemm128, gemm_space):
    """The real worker function, in this process, against a reference that disagrees with
    what the compiled kernel computes: the candidate is 'wrong', with its error."""
    import numpy as np

    from search.engine import workloads

    true_references = workloads.references
    monkeypatch.setattr(workloads, "references", lambda spec, inputs: [r + 0.5 for r in true_references(spec, inputs)])
    M._CACHE.clear()
    try:
        cand = gemm_space.sample(np.random.default_rng(1))
        res = M.MeasureResult(
            **M.measure_in_worker(
                gemm128.to_dict(),
                "llvm",
                cand.trace_json(),
                {"number": 1, "repeat": 1, "min_repeat_ms": 0, "check": True},
            )
        )
    finally:
        M._CACHE.clear()
    assert res.status == M.WRONG and res.latency_s is None and res.max_error > 1e-3


class FaultyMeasurer:
    """The real measurer with faults injected through the Measurer interface: every third
    candidate's trace is corrupted before it is built (TVM really fails to build it), and every
    fourth correct candidate comes back 'wrong', as a miscompile would (the search measures one
    candidate per call, so a cancel stops between candidates)."""

    def __init__(self, inner):
        self.inner, self.count, self.ok_seen, self.injected = inner, 0, 0, {"build": 0, "wrong": 0}

    def measure(self, traces, config=None, *, cutoff_s=None):
        sent = []
        for trace in traces:
            if trace is not None:
                self.count += 1
                if self.count % 3 == 0:
                    trace = corrupt(trace)
                    self.injected["build"] += 1
            sent.append(trace)
        results = self.inner.measure(sent, config)
        for trace, res in zip(traces, results, strict=True):
            if trace is not None and res.ok:
                self.ok_seen += 1
                if self.ok_seen % 4 == 0:
                    res.status, res.latency_s, res.error = M.WRONG, None, "injected miscompile"
                    self.injected["wrong"] += 1
        return results

    def close(self):
        pass


def corrupt(trace):
    """A tile decision with one factor too few for its split: TVM refuses to apply it."""
    bad = copy.deepcopy(trace)
    insts, decisions = bad[0], bad[1]
    for i, inst in enumerate(insts):
        if inst[0] == "SamplePerfectTile":
            for d in decisions:
                if d[0] == i:
                    d[1] = d[1][:-1]
                    return bad
    raise AssertionError("no tile decision to corrupt")


def test_failed_builds_and_wrong_results_are_marked_invalid_and_never_chosen_as_best(
    quiet, team, gemm128, gemm_measurer
):
    measurer = FaultyMeasurer(gemm_measurer)
    run = create_run(
        spec=gemm128,
        budget=Budget(trials=12),
        timing=FAST,
        team=team,
        settings=SearchSettings.paper(measure_batch=4, expansions_per_round=6, seed=4),
    )
    services.execute_run(run.pk, measurer=measurer)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.trials_done == 12
    assert measurer.injected["build"] >= 3 and measurer.injected["wrong"] >= 1
    statuses = dict(Node.objects.filter(run=run).exclude(status=None).values_list("node_id", "status"))
    invalid = {n for n, s in statuses.items() if s != "ok"}
    assert {"build_error", "wrong"} <= set(statuses.values())
    assert not Node.objects.filter(run=run, node_id__in=invalid, latency__isnull=False).exists()
    assert run.best_node_id not in invalid and statuses[run.best_node_id] == "ok"
    improved = [e.data["node_id"] for e in Event.objects.filter(run=run, kind="best_improved")]
    assert improved and not set(improved) & invalid
    errors = set(run.measurements.exclude(status="ok").values_list("error", flat=True))
    assert "injected miscompile" in errors and any("Error" in e for e in errors if e != "injected miscompile")


# --- model servers that fail -------------------------------------------------------------------


@pytest.fixture
def doomed_server(tmp_path):
    """A fake model server in its own process (answers after 2 s), to SIGKILL mid-call."""
    port_file, log = tmp_path / "port", tmp_path / "doomed.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakellm", str(port_file), "2"],
        cwd=ROOT,
        stdout=open(log, "w"),  # noqa: SIM115 - open for the process's lifetime
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.1)
    yield proc, f"http://127.0.0.1:{port_file.read_text()}/v1", log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_slow_garbage_and_killed_model_servers_cost_outcomes_not_the_run(
    quiet, team, gemm128, gemm_measurer, fake_llm, doomed_server
):
    import threading

    proc, doomed_base, log = doomed_server
    fake_llm.scripts["small"] = Script('{"next_model": "large", "mutators": ["MutateTileSize"]}', delay_s=3.0)
    fake_llm.scripts["mid"] = Script("no idea, sorry")
    fleet = Fleet(
        (
            ModelSpec("small", "openai/small", 135e6, 0.03, 0.08, fake_llm.api_base, None, 1.0),  # times out
            ModelSpec("mid", "openai/mid", 270e6, 0.05, 0.16, fake_llm.api_base, None, 10.0),  # garbage
            ModelSpec("large", "openai/large", 494e6, 0.10, 0.30, doomed_base, None, 10.0),  # killed mid-call
        )
    )

    def kill_on_first_request():
        deadline = time.monotonic() + 120
        while "request" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the call is in flight: the server sleeps 2 s before answering
        os.killpg(proc.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_on_first_request, daemon=True)
    killer.start()
    run = create_run(
        spec=gemm128,
        strategy="colt",
        fleet=fleet,
        budget=Budget(trials=8),
        timing=FAST,
        team=team,
        settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4, seed=9),
    )
    outcome = services.execute_run(run.pk, measurer=gemm_measurer, serve_local=False)
    killer.join(timeout=5)
    run.refresh_from_db()
    assert proc.poll() is not None  # the large model's server is gone
    assert run.status == Run.Status.SUCCEEDED and run.trials_done == 8
    calls = list(LLMCall.objects.filter(run=run).order_by("call_id"))
    assert len(calls) == run.llm_calls and sum(c.usd for c in calls) == pytest.approx(run.usd)
    by_model = {}
    for c in calls:
        by_model.setdefault(c.model, []).append(c)
    first_large = by_model["large"][0]
    assert first_large.outcome == "server_error" and first_large.latency_s > 0.2  # cut off mid-call
    assert {c.outcome for c in by_model["large"]} == {"server_error"}
    assert "timeout" in {c.outcome for c in by_model.get("small", [])} or "small" not in by_model
    assert {"server_error"} < {c.outcome for c in calls}  # more than one kind of failure recorded
    assert {c.outcome for c in calls} <= {"ok", "parse_error", "timeout", "server_error", "escalation", "invalid_model"}
    # each failed call is counted once (no second 'no_child' for the same call)
    large = outcome.llm_summary["models"]["large"]
    assert large["errors"] == len(by_model["large"]) and large["errors_by_kind"] == {"server_error": large["errors"]}
    # a dead server is routed around: no more calls (escalations included) once it failed in a row
    assert len(by_model["large"]) <= LLMPolicy.UNHEALTHY_AFTER
    # a child made by the random fallback after a failed call is a random move, not the model's
    failed = [c.call_id for c in calls if c.outcome in ("server_error", "timeout", "parse_error")]
    assert failed and not Node.objects.filter(run=run, call_id__in=failed).exclude(created_by=None).exists()


# --- the database drops the worker's connections ------------------------------------------------


@pytest.mark.services
@pytest.mark.slow
def test_the_task_retries_when_the_database_drops_its_connections(gemm128, team, settings):
    from django.db import connection

    from tests.search.test_services import assert_consistent
    from tests.search.test_tasks import REDIS_TEST_URL, Worker, redis_available

    if connection.vendor != "postgresql":
        pytest.skip("SQLite is a file in this process: there is no server connection to lose")
    if not redis_available():
        pytest.fail(f"Redis is required at {REDIS_TEST_URL}")
    import redis

    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    settings.REDIS_URL = REDIS_TEST_URL
    worker = Worker("dbfault", "llvm")
    try:
        run = create_run(
            spec=gemm128,
            budget=Budget(trials=16),
            timing=FAST,
            team=team,
            settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4, seed=6),
        )
        deadline = time.monotonic() + 180
        while Run.objects.get(pk=run.pk).trials_done < 4:
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        with connection.cursor() as cursor:  # what a database restart or failover does to clients
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        while not Run.objects.get(pk=run.pk).is_final:
            assert time.monotonic() < deadline + 120, (ROOT / ".pytest-worker-dbfault.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        worker.stop()
    run.refresh_from_db()
    log = (ROOT / ".pytest-worker-dbfault.log").read_text()
    assert "database unavailable" in log or "retry" in log.lower()
    assert run.status == Run.Status.SUCCEEDED and run.trials_done == 16 and run.attempts >= 2, run.error
    assert_consistent(run)
    # a transient failure is not a finish: one run_finished, the last event, and no stale reason
    finished = list(Event.objects.filter(run=run, kind="run_finished").values_list("seq", "data"))
    assert len(finished) == 1 and finished[0][0] == run.last_seq and finished[0][1]["status"] == "succeeded"
    assert run.stop_reason == "trial budget spent"


# --- Redis restarted during a run ---------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own on a free port, to kill and restart."""

    def __init__(self, tmp_path):
        self.port, self.tmp = free_port(), tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except Exception:  # noqa: BLE001
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def spawn(args, env, log):
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.mark.browser
@pytest.mark.services
@pytest.mark.slow
def test_redis_restarted_mid_run_the_page_resyncs_and_loses_no_event(tmp_path, member, team, gemm128, settings, page):
    import shutil

    from tests.dashboard.test_pages import CHROMIUM, log_in

    if shutil.which("redis-server") is None or not Path(CHROMIUM).exists():
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server and Chromium are required")
        pytest.skip("needs redis-server and Chromium")
    redis_server = PrivateRedis(tmp_path)
    env = dict(os.environ, DATABASE_URL=database_url(), REDIS_URL=redis_server.url, PYTHONPATH=str(ROOT))
    env.pop("COLT_FLEET_FILE", None)
    port = free_port()
    procs = [
        spawn(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "colt_site.asgi:application"],
            env,
            tmp_path / "web.log",
        ),
        spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "colt_site.celery",
                "worker",
                "-Q",
                "llvm",
                "-c",
                "1",
                "-n",
                "redisfault@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
            env,
            tmp_path / "worker.log",
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, procs[0], tmp_path / "web.log")
        settings.REDIS_URL = redis_server.url
        run = create_run(
            spec=gemm128,
            budget=Budget(trials=48),
            timing=FAST,
            team=team,
            settings=SearchSettings.paper(measure_batch=4, expansions_per_round=6, seed=8),
        )
        log_in(page, base)
        page.goto(f"{base}/runs/{run.pk}")
        page.wait_for_function("window.coltState && window.coltState.nodes.size > 5", timeout=120_000)
        seen_before = page.evaluate("window.coltState.lastSeq")
        redis_server.kill()  # broker and channel layer gone, mid-run
        time.sleep(3)
        redis_server.start()  # back, empty: no groups, no queued messages
        deadline = time.monotonic() + 300
        while not Run.objects.get(pk=run.pk).is_final:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        run.refresh_from_db()
        assert run.status == Run.Status.SUCCEEDED and run.trials_done == 48
        worker_log = (tmp_path / "worker.log").read_text()
        assert "live updates unavailable" in worker_log, worker_log[-3000:]  # the outage hit the run
        # the page catches up with every stored event, in order (it applies them strictly by seq)
        page.wait_for_function(f"window.coltState.lastSeq === {run.last_seq}", timeout=30_000)
        assert run.last_seq > seen_before
        assert page.evaluate("window.coltState.status") == "succeeded"
        assert page.evaluate("window.coltState.nodes.size") == Node.objects.filter(run=run).count() + 1  # + root
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        redis_server.kill()
