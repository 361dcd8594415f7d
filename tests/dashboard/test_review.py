"""Team review and downloads: team scoping (404 for outsiders), the per-model cost review and the
cost rolled up the tree, the CSV ledger, run comparisons, and the downloads (a MetaSchedule
database that TVM loads unchanged). Real runs: the engine on TVM with a fake OpenAI-compatible
fleet over HTTP; runs on SQLite and again on PostgreSQL (scripts/test)."""

import csv
import io
import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from django.test import Client

from accounts.models import Team
from search import reports, services
from search.engine.measure import MeasureConfig
from search.engine.request import Budget, SearchSettings
from search.engine.workloads import KernelSpec
from search.models import LLMCall, Node, Run
from tests.conftest import PASSWORD
from tests.fakellm import Script
from tests.helpers import LAUNCH_FORM, create_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db]

FAST = MeasureConfig(number=1, repeat=2, min_repeat_ms=0, timeout_s=60.0)


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(services, "enqueue_run", lambda *a: None)


def garbage_every_other(body):
    garbage_every_other.n = getattr(garbage_every_other, "n", 0) + 1
    if garbage_every_other.n % 2:
        return "Sure! The answer is 42."  # names no mutator: a parse error
    return '{"next_model": "large", "mutators": ["MutateUnroll"]}'


def execute(spec, team, measurer, *, strategy="colt", fleet=None, trials=10, seed=5):
    run = create_run(
        spec=spec,
        strategy=strategy,
        fleet=fleet,
        budget=Budget(trials=trials),
        settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4, seed=seed, course_alteration_k=1),
        timing=FAST,
        team=team,
    )
    services.execute_run(run.pk, measurer=measurer, serve_local=False)
    run.refresh_from_db()
    return run


@pytest.fixture
def colt_run(quiet, team, gemm128, gemm_measurer, fake_llm, fake_fleet):
    fake_llm.scripts["small"] = Script('{"next_model": "mid", "mutators": ["MutateTileSize"]}', completion_tokens=20)
    fake_llm.scripts["mid"] = Script(garbage_every_other, prompt_tokens=150)
    fake_llm.scripts["large"] = Script('{"next_model": "mid", "mutators": ["MutateTileSize", "MutateParallel"]}')
    run = execute(gemm128, team, gemm_measurer, fleet=fake_fleet)
    assert run.status == Run.Status.SUCCEEDED and run.llm_calls > 0 and run.usd > 0
    return run


# --- access ------------------------------------------------------------------------------------


def urls_of(run_id):
    return [
        f"/runs/{run_id}",
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}?after=0",
        f"/runs/{run_id}/costs",
        f"/runs/{run_id}/ledger.csv",
    ] + [
        f"/runs/{run_id}/download/{what}"
        for what in ("schedule.py", "trace.json", "database.zip", "top.json", "nodes.csv")
    ]


def test_outsiders_get_404_as_for_a_missing_run_and_anonymous_users_must_log_in(quiet, team, member, outsider, gemm128):
    run = create_run(spec=gemm128, budget=Budget(trials=4), team=team)
    inside, outside, anonymous = Client(), Client(), Client()
    inside.force_login(member)
    outside.force_login(outsider)
    for url in urls_of(run.pk):
        assert inside.get(url).status_code in (200, 409), url  # 409: nothing measured to download yet
        assert outside.get(url).status_code == 404, url
        missing = url.replace(str(run.pk), "999999")
        assert inside.get(missing).status_code == 404, missing
        response = anonymous.get(url)
        if url.startswith("/api/"):
            assert response.status_code == 401 and response.json() == {"error": "login required"}
        else:
            assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    for action in ("cancel", "resume"):
        assert outside.post(f"/runs/{run.pk}/{action}").status_code == 404
    run.refresh_from_db()
    assert not run.cancel_requested
    # the outsider's lists and reviews do not mention the run; the member's do
    assert f'href="/runs/{run.pk}"' not in outside.get("/").content.decode()
    assert f'href="/runs/{run.pk}"' in inside.get("/").content.decode()
    assert f'name="runs" value="{run.pk}"' not in outside.get("/costs").content.decode()
    assert f'name="runs" value="{run.pk}"' in inside.get("/costs").content.decode()
    second = create_run(spec=gemm128, budget=Budget(trials=4), team=team)
    assert inside.get(f"/compare?runs={run.pk}&runs={second.pk}").status_code == 200
    assert outside.get(f"/compare?runs={run.pk}&runs={second.pk}").status_code == 404
    # and the launch form offers only the user's own teams
    form = outside.get("/runs/new").content.decode()
    assert "elsewhere" in form and ">lab<" not in form
    response = outside.post(
        "/runs/new",
        {**LAUNCH_FORM, "team": team.pk},
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert Run.objects.count() == 2


def test_login_page_and_forms_carry_csrf_tokens_and_posts_without_them_fail(quiet, team, member):
    browser = Client(enforce_csrf_checks=True)
    login = browser.get("/accounts/login/")
    assert login.status_code == 200 and "csrfmiddlewaretoken" in login.content.decode()
    assert browser.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 403
    token = login.cookies["csrftoken"].value
    done = browser.post("/accounts/login/", {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"] == "/"
    page = browser.get("/runs/new").content.decode()
    assert page.count("csrfmiddlewaretoken") >= 2  # the launch form and the log-out form
    assert browser.post("/runs/new", {"kernel": "gemm-128"}).status_code == 403
    assert browser.post("/accounts/logout/").status_code == 403
    assert Run.objects.count() == 0


def test_superusers_see_every_team_and_cli_runs_go_to_a_team(quiet, team, outsider, gemm128):
    admin = Client()
    from tests.conftest import make_user

    admin.force_login(make_user("root", is_superuser=True, is_staff=True))
    run = create_run(spec=gemm128, budget=Budget(trials=4), team=Team.objects.get(name="elsewhere"))
    assert admin.get(f"/runs/{run.pk}").status_code == 200
    orphan = create_run(spec=gemm128, budget=Budget(trials=4))  # no team: superusers only
    assert admin.get(f"/runs/{orphan.pk}").status_code == 200
    theirs = Client()
    theirs.force_login(outsider)
    assert theirs.get(f"/runs/{orphan.pk}").status_code == 404


def test_createadmin_and_team_commands(db, monkeypatch, capsys):
    monkeypatch.setenv("COLT_ADMIN_PASSWORD", "short")
    with pytest.raises(CommandError, match="password rejected"):
        call_command("createadmin", "boss")
    monkeypatch.setenv("COLT_ADMIN_PASSWORD", PASSWORD)
    for bad in ("<svg onload=alert(1)>", "a b", "x" * 151):
        with pytest.raises(CommandError, match="username rejected"):
            call_command("createadmin", bad)
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.exists()  # nothing half-created
    call_command("createadmin", "boss", "--email", "boss@example.com", "--team", "compilers")
    boss = get_user_model().objects.get(username="boss")
    assert boss.is_superuser and boss.check_password(PASSWORD)
    assert list(boss.teams.values_list("name", flat=True)) == ["compilers"]
    with pytest.raises(CommandError, match="already exists"):
        call_command("createadmin", "boss")
    assert PASSWORD not in capsys.readouterr().out
    call_command("team", "create", "kernels")
    with pytest.raises(CommandError, match="no such user"):
        call_command("team", "add", "kernels", "boss", "nobody")
    call_command("team", "add", "kernels", "boss")
    call_command("team", "list")
    assert "kernels: boss" in capsys.readouterr().out
    c = Client()
    assert c.login(request=HttpRequest(), username="boss", password=PASSWORD)  # axes needs the request
    assert c.get("/").status_code == 200


# --- the cost review -----------------------------------------------------------------------------


def test_per_model_review_and_subtree_costs_add_up(client, colt_run):
    run = colt_run
    review = reports.model_costs(Run.objects.filter(pk=run.pk))
    calls = list(LLMCall.objects.filter(run=run))
    assert review["total"]["calls"] == run.llm_calls == len(calls)
    assert review["total"]["usd"] == pytest.approx(run.usd, rel=1e-9)
    by_model = {m["model"]: m for m in review["models"]}
    for name, row in by_model.items():
        mine = [c for c in calls if c.model == name]
        assert row["calls"] == len(mine)
        assert row["usd"] == pytest.approx(sum(c.usd for c in mine))
        assert row["prompt_tokens"] == sum(c.prompt_tokens for c in mine)
        assert row["share"] == pytest.approx(len(mine) / len(calls))
        errors = {}
        for c in mine:
            if c.outcome not in ("ok", "escalation"):
                errors[c.outcome] = errors.get(c.outcome, 0) + 1
        assert row["errors"] == errors
        assert row["escalation_calls"] == sum(c.escalation for c in mine)
        made = Node.objects.filter(run=run, created_by=name, call_id__isnull=False, parent_score__isnull=False)
        hits = sum(n.predicted > n.parent_score for n in made)
        assert row["hit_rate"] == (hits / len(made) if made else None)
        assert row["usd_per_hit"] == (pytest.approx(row["usd"] / hits) if hits else None)
        own = sum(not any(m.startswith("Prior ") for m in n.mutators) for n in made)
        assert row["own_share"] == (own / len(made) if made else None)
        proposed = Node.objects.filter(run=run, created_by=name, call_id__isnull=False)
        assert row["proposed"] == len(proposed) and row["measured"] == sum(n.status is not None for n in proposed)
    assert by_model["mid"]["errors"].get("parse_error", 0) >= 1  # the garbage replies are counted
    assert review["total"]["measured"] == sum(m["measured"] for m in review["models"]) > 0
    # the cost rolled up the tree: every subtree is its own calls plus its children's subtrees
    costs = reports.subtree_costs(run)
    nodes = list(Node.objects.filter(run=run).values_list("node_id", "parent_id"))
    for node_id, _ in nodes + [(0, None)]:
        own = sum(c.usd for c in calls if c.node_id == node_id)
        below = sum(costs[n]["usd"] for n, p in nodes if p == node_id)
        assert costs[node_id]["usd"] == pytest.approx(own + below, abs=1e-15)
    assert costs[0]["usd"] == pytest.approx(run.usd) and costs[0]["calls"] == run.llm_calls
    page = client.get(f"/runs/{run.pk}/costs").content.decode()
    assert all(f'data-model="{m}"' in page for m in by_model) and "Cost rolled up the tree" in page
    assert "USD per hit" in page
    total = review["total"]
    assert "proposals measured" in page and f'class="measured">{total["measured"]} of {total["proposed"]}<' in page
    node = client.get(f"/api/runs/{run.pk}/nodes/{reports.costly_subtrees(run)[0]['node_id']}").json()
    assert node["subtree"]["usd"] > 0


def test_ledger_csv_sums_to_the_runs_usd_total_and_team_filters_apply(client, colt_run, quiet, gemm128):
    run = colt_run
    response = client.get(f"/runs/{run.pk}/ledger.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == run.llm_calls
    assert [int(r["call_id"]) for r in rows] == list(range(1, run.llm_calls + 1))
    assert sum(float(r["usd"]) for r in rows) == pytest.approx(run.usd, rel=1e-12)
    assert {r["model"] for r in rows} <= {"small", "mid", "large"}

    # across the team, filtered: the colt run is in its strategy's ledger and not in another's
    def team_rows(query):
        body = b"".join(client.get(f"/costs/ledger.csv?{query}").streaming_content).decode()
        return list(csv.DictReader(io.StringIO(body)))

    assert len(team_rows(f"team={run.team_id}&strategy=colt&kernel={run.kernel_id}")) == run.llm_calls
    assert team_rows("strategy=single-llm") == []
    assert team_rows("since=2000-01-01&until=2000-12-31") == []
    assert client.get("/costs/ledger.csv?since=2020-02-02&until=2020-01-01").status_code == 400
    review = client.get(f"/costs?strategy=colt&team={run.team_id}").content.decode()
    assert f'href="/runs/{run.pk}/costs"' in review and "1 run" in review


# --- comparisons ---------------------------------------------------------------------------------


def test_compare_two_runs_of_a_kernel_side_by_side(client, colt_run, team, gemm128, gemm_measurer, quiet):
    random_run = execute(gemm128, team, gemm_measurer, strategy="mcts-random", trials=6)
    data = reports.compare(Run.objects.filter(pk__in=[colt_run.pk, random_run.pk]))
    by_id = {r["id"]: r for r in data["runs"]}
    for run in (colt_run, random_run):
        row = by_id[run.pk]
        assert row["trials"] == run.trials_done and row["usd"] == run.usd and row["wall_s"] > 0
        assert row["series"][-1]["trials"] == run.trials_done
        best = [p["best_latency_s"] for p in row["series"] if p["best_latency_s"] is not None]
        assert best == sorted(best, reverse=True) and best[-1] == pytest.approx(run.best_latency)
        usd = [p["usd"] for p in row["series"]]
        assert usd == sorted(usd) and usd[-1] == pytest.approx(run.usd)
    assert by_id[random_run.pk]["largest_share"] is None and by_id[colt_run.pk]["largest_share"] is not None
    page = client.get(f"/compare?runs={colt_run.pk}&runs={random_run.pk}")
    assert page.status_code == 200 and 'id="chart-latency"' in page.content.decode()
    other = create_run(spec=KernelSpec("gemm", {"M": 64, "N": 64, "K": 64}), team=team)
    bad = client.get(f"/compare?runs={colt_run.pk}&runs={other.pk}")
    assert bad.status_code == 400 and "different kernels" in bad.content.decode()
    assert client.get(f"/compare?runs={colt_run.pk}").status_code == 400
    assert client.get("/compare?runs=x").status_code == 400


# --- downloads -----------------------------------------------------------------------------------


def test_downloaded_database_loads_in_tvm_and_reproduces_the_best_schedule(client, colt_run, tmp_path, gemm128):
    from tvm.s_tir import meta_schedule as ms

    from search.engine.compiler import make_target, structural_hash
    from search.engine.tvmenv import tvm as _tvm
    from search.engine.workloads import (
        build_module,
        check_output,
        make_inputs,
        output_shape,
        reference,
    )

    run = colt_run
    best = Node.objects.get(run=run, node_id=run.best_node_id)
    valid = Node.objects.filter(run=run, status="ok").count()
    response = client.get(f"/runs/{run.pk}/download/database.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path)
    folder = next(tmp_path.iterdir())
    assert {p.name for p in folder.iterdir()} >= {"database_workload.json", "database_tuning_record.json", "top_k.json"}
    # TVM's own loader, unchanged
    db = ms.database.JSONDatabase(work_dir=str(folder))
    mod, target = build_module(gemm128), make_target(run.target)
    records = db.get_top_k(db.commit_workload(mod), 10_000)
    assert len(records) == valid and db.has_workload(mod)
    assert float(records[0].run_secs[0]) == pytest.approx(run.best_latency)
    sch = db.query_schedule(mod, target, workload_name="main")
    assert structural_hash(sch.mod) == best.shash
    tvm = _tvm()
    fn = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu(0)
    inputs = make_inputs(gemm128)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    args.append(tvm.runtime.tensor(np.zeros(output_shape(gemm128), gemm128.dtype), dev))
    fn["main"](*args)
    ok, err = check_output(gemm128, args[-1].numpy(), reference(gemm128, inputs))
    assert ok, err
    # top=k keeps the k fastest
    small = client.get(f"/runs/{run.pk}/download/database.zip?top=2")
    names = zipfile.ZipFile(io.BytesIO(small.content)).namelist()
    records = [n for n in names if n.endswith("database_tuning_record.json")][0]
    assert len(zipfile.ZipFile(io.BytesIO(small.content)).read(records).decode().strip().splitlines()) == min(2, valid)
    assert client.get(f"/runs/{run.pk}/download/database.zip?top=0").status_code == 400


def test_schedule_trace_top_k_and_node_history_downloads(client, colt_run, gemm128, tmp_path):
    from search.engine.compiler import apply_trace_json, structural_hash
    from search.engine.workloads import build_module

    run = colt_run
    best = Node.objects.get(run=run, node_id=run.best_node_id)
    script = client.get(f"/runs/{run.pk}/download/schedule.py")
    assert script.status_code == 200 and "attachment" in script["Content-Disposition"]
    text = script.content.decode()
    assert "T.prim_func" in text and best.shash in text
    # the download runs with plain python: it builds the schedule here and prints its latency
    path = tmp_path / "schedule.py"
    path.write_bytes(script.content)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d+\.\d{4} ms \(median of 5\) on this machine \(llvm .*\)\n", done.stdout), done.stdout
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/runs/{run.pk}/download/database.zip").content))
    assert all((info.external_attr >> 16) & 0o777 == 0o644 for info in archive.infolist())
    trace = json.loads(client.get(f"/runs/{run.pk}/download/trace.json").content)
    assert trace["node_id"] == best.node_id and trace["latency_s"] == run.best_latency
    assert structural_hash(apply_trace_json(build_module(gemm128), trace["trace"]).mod) == best.shash
    top = json.loads(client.get(f"/runs/{run.pk}/download/top.json?k=3").content)
    assert [t["rank"] for t in top] == list(range(1, len(top) + 1)) and top[0]["node_id"] == best.node_id
    assert [t["latency_s"] for t in top] == sorted(t["latency_s"] for t in top)
    assert client.get(f"/runs/{run.pk}/download/top.json?k=-1").status_code == 400
    body = b"".join(client.get(f"/runs/{run.pk}/download/nodes.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == Node.objects.filter(run=run).count()
    assert {r["status"] for r in rows} <= {"ok", "wrong", "build_error", "run_error", "timeout", ""}
    assert client.get(f"/runs/{run.pk}/download/other.txt").status_code == 404


def test_a_fresh_machine_gets_a_first_admin_whose_password_is_only_in_a_file(db, tmp_path, capsys):
    secret = tmp_path / "pw"
    call_command("createadmin", "admin", "--if-none", "--password-file", str(secret))
    password = secret.read_text().strip()
    assert oct(secret.stat().st_mode & 0o777) == "0o600" and len(password) >= 20
    assert password not in capsys.readouterr().out
    call_command("createadmin", "admin", "--if-none", "--password-file", str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()  # an administrator exists: nothing done
    c = Client()
    assert c.login(request=HttpRequest(), username="admin", password=password)


def test_a_schedule_whose_trace_no_longer_applies_is_refused_with_the_reason(client, colt_run):
    """A kernel the library rewrote after a run (attention, 2026-12-07) no longer takes the run's
    traces: schedule.py answers 409 with why, the node panel says so, and the trace itself stays
    downloadable."""
    run = colt_run
    best = Node.objects.get(run=run, node_id=run.best_node_id)
    insts, decisions = best.trace
    renamed = [[i[0], i[1], ["P_softmax", *i[2][1:]], i[3]] if i[0] == "GetSBlock" else i for i in insts]
    assert renamed != insts, "no GetSBlock instruction in the trace: the test is moot"
    best.trace = [renamed, decisions]
    best.save(update_fields=["trace"])
    script = client.get(f"/runs/{run.pk}/download/schedule.py")
    assert script.status_code == 409 and "does not apply" in script.content.decode()
    panel = client.get(f"/api/runs/{run.pk}/nodes/{best.node_id}?script=1")
    assert panel.status_code == 200 and "does not apply" in panel.json()["script"]
    trace = client.get(f"/runs/{run.pk}/download/trace.json")
    assert trace.status_code == 200 and json.loads(trace.content)["trace"][0] == renamed
