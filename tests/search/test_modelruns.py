"""Model runs end to end against the real database: an ONNX model imported, its tasks searched
as runs sharing one budget, built with the database and compared with onnxruntime; cancel and
resume; bad files leave nothing behind; ``manage.py tune --onnx`` and ``--module`` as a user
runs them; the upload form and the model page."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from search import modelruns
from search.engine import onnxgraphs
from search.engine.onnxmodel import ModelError
from search.engine.request import RequestError
from search.models import Kernel, ModelRun, Run
from tests.helpers import FAST_CLI, LAUNCH_FORM

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
#: the paper's search, few candidates per round: a model run's tasks finish in seconds
DOC = {
    "target": "llvm",
    "strategy": "mcts-random",
    "budget": {"trials": 10},
    "settings": {"preset": "paper", "measure_batch": 2, "seed": 3},
    "timing": {"number": 1, "repeat": 2, "min_repeat_ms": 0},
}


@pytest.fixture(scope="module")
def cnn():
    return onnxgraphs.small_cnn(size=12, channels=8)


@pytest.fixture
def no_enqueue(monkeypatch):
    sent = []
    monkeypatch.setattr(modelruns, "enqueue_model_run", lambda pk, target: sent.append(pk))
    return sent


def test_a_model_run_tunes_its_tasks_within_the_budget_and_compares_end_to_end(cnn, team, no_enqueue, tmp_path):
    model_run = modelruns.create_model_run(cnn, DOC, name="cnn", team=team)
    assert no_enqueue == [model_run.pk]
    rows = model_run.summary["tasks"]
    assert rows and all(Kernel.objects.filter(key=r["kernel_key"]).exists() for r in rows)
    lines = []
    model_run = modelruns.execute_model_run(model_run.pk, progress=lines.append)
    assert model_run.status == "succeeded", model_run.error
    runs = list(Run.objects.filter(model_run=model_run))
    assert runs and sum(r.budget.trials for r in runs) == 10
    assert all(r.status == "succeeded" and r.baseline_latency and r.task_name for r in runs)
    assert sum(r.trials_done for r in runs) <= 10
    biggest = max(model_run.summary["tasks"], key=lambda r: r["share"])
    assert biggest.get("run") and biggest["trials"] == max(r["trials"] for r in model_run.summary["tasks"])
    results = model_run.results
    assert results["tasks_tuned"] == len(runs)
    assert results["max_abs_diff"] < 1e-4  # the tuned model computes what onnxruntime does
    assert results["tuned_s"][0] > 0 and results["untuned_s"][0] > 0 and results["onnxruntime_s"][0] > 0
    assert len(model_run.history) >= len(runs) and model_run.history[-1][1] > 0
    assert any("unscheduled" in line for line in lines) and any(line.startswith("task 1 of round 1") for line in lines)
    # the second half of the budget went by the latencies after the first: with the larger conv
    # tuned in round 1, the other conv's share of the model's latency grew
    assert model_run.summary["round"] == 2
    convs = sorted((r for r in model_run.summary["tasks"] if "conv2d" in r["name"]), key=lambda r: r["share_1"])
    assert len(convs) == 2 and convs[0]["share_2"] > convs[0]["share_1"]
    overview = modelruns.overview(model_run)
    assert overview["trials_done"] == sum(r.trials_done for r in runs)
    assert overview["estimate_s"] < overview["untuned_estimate_s"]  # tuning the tasks lowered the estimate
    # the artifacts: a database, a library that loads in a fresh process with the README's snippet
    paths = modelruns.write_artifacts(model_run, tmp_path / "out")
    assert (paths["database"] / "database_tuning_record.json").read_text().count("\n") == len(runs)
    readme = paths["readme"].read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "out" / "load.py").write_text(snippet)
    done = subprocess.run(
        [sys.executable, "load.py"], cwd=tmp_path / "out", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "[[" in done.stdout  # the (1, 10) class probabilities
    assert oct(os.stat(paths["library"]).st_mode & 0o777) == "0o644"
    archive = zipfile.ZipFile(io.BytesIO(modelruns.artifact_zip(model_run)))
    names = archive.namelist()
    assert "cnn/model.so" in names and "cnn/database/database_workload.json" in names
    assert any(n.startswith("cnn/schedules/") for n in names)


def test_bad_files_create_nothing(cnn, team, no_enqueue):
    before = (ModelRun.objects.count(), Kernel.objects.count(), Run.objects.count())
    with pytest.raises(ModelError, match="not an ONNX model"):
        modelruns.create_model_run(cnn[:200], DOC, team=team)
    with pytest.raises(RequestError):
        modelruns.create_model_run(cnn, dict(DOC, budget={"trials": 0}), team=team)
    with pytest.raises(RequestError):
        modelruns.create_model_run(cnn, dict(DOC, strategy="no-such"), team=team)
    assert (ModelRun.objects.count(), Kernel.objects.count(), Run.objects.count()) == before
    assert no_enqueue == []


def test_cancel_then_resume_goes_on_to_the_end(cnn, team, no_enqueue):
    model_run = modelruns.create_model_run(cnn, DOC, name="cnn", team=team)
    modelruns.cancel_model_run(model_run.pk)
    model_run.refresh_from_db()
    assert model_run.status == "cancelled" and model_run.phase == "cancelled before it started"
    assert modelruns.execute_model_run(model_run.pk).status == "cancelled"
    modelruns.resume_model_run(model_run.pk)
    model_run.refresh_from_db()
    assert model_run.status == "queued" and no_enqueue[-1] == model_run.pk
    with pytest.raises(modelruns.ModelRunStateError, match="is queued"):
        modelruns.resume_model_run(model_run.pk)

    # cancelled while its first task runs: that task stops, no other starts
    calls = []

    def cancel_during_first_task(line):
        calls.append(line)
        if line.startswith("task 1 of round 1"):
            modelruns.cancel_model_run(model_run.pk)

    model_run = modelruns.execute_model_run(model_run.pk, progress=cancel_during_first_task)
    assert model_run.status == "cancelled"
    runs = Run.objects.filter(model_run=model_run).order_by("pk")
    started = [r for r in runs if r.status != "queued"]
    assert len(started) == 1 and started[0].status == "cancelled"
    modelruns.resume_model_run(model_run.pk)
    model_run = modelruns.execute_model_run(model_run.pk)
    assert model_run.status == "succeeded", model_run.error
    assert all(r.status == "succeeded" for r in Run.objects.filter(model_run=model_run))
    with pytest.raises(modelruns.ModelRunStateError, match="already finished"):
        modelruns.resume_model_run(model_run.pk)


def test_a_running_model_run_is_left_to_its_worker_until_its_heartbeats_stop(cnn, team, no_enqueue):
    """A redelivered message does not run a model run twice; a model run whose worker died
    (no heartbeat from it nor its tasks for the stale period) can be resumed."""
    from datetime import timedelta

    from django.utils import timezone

    from search.services import STALE_AFTER_S

    model_run = modelruns.create_model_run(cnn, DOC, name="cnn", team=team)
    ModelRun.objects.filter(pk=model_run.pk).update(status="running", phase="searching", heartbeat_at=timezone.now())
    with pytest.raises(modelruns.ModelRunStateError, match="is running"):
        modelruns.resume_model_run(model_run.pk)
    assert modelruns.execute_model_run(model_run.pk).phase == "searching"  # untouched
    assert not Run.objects.filter(model_run=model_run).exists()

    old = timezone.now() - timedelta(seconds=STALE_AFTER_S + 5)
    ModelRun.objects.filter(pk=model_run.pk).update(heartbeat_at=old)
    modelruns.resume_model_run(model_run.pk)  # orphaned: its worker is gone
    model_run.refresh_from_db()
    assert model_run.status == "queued" and no_enqueue[-1] == model_run.pk


def test_a_tasks_budget_is_its_share_of_every_model_limit(cnn, team, no_enqueue):
    doc = dict(DOC, budget={"trials": 40, "llm_calls": 30, "usd": 2.0, "wall_s": 400})
    model_run = modelruns.create_model_run(cnn, doc, name="cnn", team=team)
    quarter = modelruns._task_budget(model_run, 10)
    assert quarter == {"trials": 10, "llm_calls": 8, "usd": 0.5, "wall_s": 100.0}
    small = modelruns._task_budget(model_run, 1)
    assert small["llm_calls"] == 1 and small["wall_s"] == 10.0  # within the request's lower limits
    plain = modelruns.create_model_run(cnn, DOC, name="cnn", team=team)
    assert {k: v for k, v in modelruns._task_budget(plain, 4).items() if v is not None} == {"trials": 4}


def test_the_watchdog_leaves_a_model_runs_tasks_to_their_model_run(cnn, team, no_enqueue, monkeypatch):
    from datetime import timedelta

    import redis
    from django.utils import timezone

    from search.engine.request import build_request
    from search.services import create_run
    from search.watchdog import recover
    from tests.search.test_tasks import REDIS_TEST_URL, redis_available

    if not redis_available():
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS_TEST_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_TEST_URL}")

    from search import services

    sent = []
    monkeypatch.setattr(services, "enqueue_run", lambda pk, target: sent.append(pk))
    model_run = modelruns.create_model_run(cnn, DOC, name="cnn", team=team)
    doc = dict(DOC, kernel={"op": "gemm", "shape": {"M": 16, "N": 16, "K": 16}})
    task = create_run(build_request(doc), team=team, enqueue=False)
    alone = create_run(build_request(doc), team=team, enqueue=False)
    Run.objects.filter(pk=task.pk).update(model_run=model_run)
    Run.objects.filter(pk=alone.pk).update(status="running", heartbeat_at=timezone.now())
    later = timezone.now() + timedelta(hours=1)
    Run.objects.filter(pk=task.pk).update(status="running", heartbeat_at=timezone.now())  # its worker died
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.delete(f"colt:watchdog:{alone.pk}", f"colt:watchdog:{task.pk}")
    assert recover(client, now=later) == [alone.pk] == sent  # the model run's task is not


def cli(*args, env, timeout=600):
    return subprocess.run(
        [sys.executable, "manage.py", "tune", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli_env(tmp_path):
    path = tmp_path / "cli.sqlite3"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{path}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return env


def test_tune_onnx_from_the_command_line(cnn, tmp_path, cli_env):
    model = tmp_path / "cnn.onnx"
    model.write_bytes(cnn)
    out = tmp_path / "out"
    done = cli(
        "--onnx",
        str(model),
        "--trials",
        "6",
        "--preset",
        "paper",
        "--measure-batch",
        "2",
        *FAST_CLI,
        "--out",
        str(out),
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    text = done.stdout
    assert "task " in text and "weight" in text and "share" in text  # the task table
    assert "end to end on 1 thread(s)" in text and "onnxruntime" in text and "speedup" in text
    assert "largest absolute difference from onnxruntime's outputs" in text
    assert (out / "model.so").exists() and (out / "database" / "database_workload.json").exists()
    # bad input: one line, exit 2
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    done = cli("--onnx", str(bad), "--trials", "6", env=cli_env)
    assert done.returncode == 2 and "bad.onnx: not an ONNX model" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("--onnx", str(model), "--trials", "6", "--input-shape", "x=1,three", env=cli_env)
    assert done.returncode == 2 and "--input-shape takes NAME=D0,D1" in done.stderr


def test_bring_your_own_kernel_from_the_command_line(tmp_path, cli_env):
    from tests.engine.test_onnxmodel import te_module

    module = tmp_path / "mm.json"
    module.write_text(te_module(n=32))
    done = cli("--module", str(module), "--trials", "3", *FAST_CLI, "--out", str(tmp_path / "o"), env=cli_env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "tir:" in done.stdout or "mm" in done.stdout
    assert (tmp_path / "o" / "best_schedule.py").exists()
    module.write_text('{"nodes": []}')
    done = cli("--module", str(module), "--trials", "3", env=cli_env)
    assert done.returncode == 2 and "TVM's JSON form" in done.stderr


# --- the web ------------------------------------------------------------------------------------


def test_upload_a_model_in_the_launch_form_and_see_its_page(client, cnn, team, outsider, no_enqueue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    form = dict(LAUNCH_FORM, team=team.pk, kernel="onnx", trials=8, preset="paper")
    form["onnx_file"] = SimpleUploadedFile("tiny.onnx", cnn)
    response = client.post("/runs/new", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    model_run = ModelRun.objects.get()
    assert response["Location"] == f"/models/{model_run.pk}" and model_run.name == "tiny"
    assert model_run.total_trials == 8 and no_enqueue == [model_run.pk]
    page = client.get(f"/models/{model_run.pk}").content.decode()
    assert "conv2d" in page and "softmax" in page and 'id="m-tasks"' in page
    data = client.get(f"/api/models/{model_run.pk}").json()
    assert data["status"] == "queued" and len(data["tasks"]) == len(model_run.summary["tasks"])
    assert client.get("/models").status_code == 200
    assert client.get(f"/models/{model_run.pk}/download/so").status_code == 400  # nothing tuned yet
    # bad uploads: the form says why, nothing is created
    form["onnx_file"] = SimpleUploadedFile("bad.onnx", b"\x00" * 100)
    response = client.post("/runs/new", form)
    assert response.status_code == 200 and "not an ONNX model" in response.content.decode()
    form.pop("onnx_file")
    response = client.post("/runs/new", form)
    assert "choose a file to upload" in response.content.decode()
    assert ModelRun.objects.count() == 1
    # other teams do not see it
    from django.http import HttpRequest
    from django.test import Client

    from tests.conftest import PASSWORD

    other = Client()
    other.login(request=HttpRequest(), username=outsider.username, password=PASSWORD)
    assert other.get(f"/models/{model_run.pk}").status_code == 404
    assert other.get(f"/api/models/{model_run.pk}").status_code == 404


def test_upload_a_module_as_a_kernel(client, team, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from search import services
    from tests.engine.test_onnxmodel import te_module

    monkeypatch.setattr(services, "enqueue_run", lambda run_id, target: None)
    form = dict(LAUNCH_FORM, team=team.pk, kernel="module")
    form["module_file"] = SimpleUploadedFile("my_mm.json", te_module(n=16).encode())
    response = client.post("/runs/new", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = Run.objects.get()
    assert run.kernel.op == "tir" and run.kernel.name == "my_mm" and run.kernel.module
    form["module_file"] = SimpleUploadedFile("bad.json", b'{"x": 1}')
    response = client.post("/runs/new", form)
    assert "TVM&#x27;s JSON form" in response.content.decode() or "TVM's JSON form" in response.content.decode()
