"""The pages in a real browser: headless Chromium (Debian's) driven by Playwright, against
Daphne serving the app on 127.0.0.1 with the embedded defaults (in-process worker,
in-memory channel layer) and an LLM fleet at the fake OpenAI-compatible server."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.models import Run
from tests.conftest import PASSWORD
from tests.dashboard.test_review import colt_run, execute, quiet  # noqa: F401 - fixtures
from tests.engine.test_policy import fleet_at
from tests.helpers import FAST_CLI, database_url, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def require_chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail("Chromium is required (scripts/setup installs Debian's chromium as root)")
        pytest.skip("no Chromium (Debian's chromium package)")


def serve(fake_llm, tmp_path, **env_extra):
    """Daphne on a free port: the embedded defaults unless ``env_extra`` says otherwise."""
    require_chromium()
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps(fleet_at(fake_llm.api_base).to_list()))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=database_url(), COLT_FLEET_FILE=str(fleet_file), PYTHONPATH=str(ROOT), **env_extra)
    log = open(tmp_path / "daphne.log", "w")  # noqa: SIM115 - open for the process's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "colt_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, proc, tmp_path / "daphne.log")
    yield base
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def server(fake_llm, tmp_path):
    yield from serve(fake_llm, tmp_path)


@pytest.fixture
def page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM queries the
    # test makes between browser steps are ordinary synchronous ones
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        # the tests' own probes (wait_for_function) evaluate strings, which the app's CSP forbids;
        # test_the_pages_run_under_their_content_security_policy checks the pages with it on
        pg = browser.new_page(viewport={"width": 1400, "height": 950}, bypass_csp=True)
        pg.context.browser_for_csp = browser
        yield pg
        browser.close()


def log_in(page, server, username="ada"):
    """Through the login form, as a person would."""
    page.goto(server + "/runs/new")
    assert "/accounts/login/" in page.url  # every page needs a login
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/runs/new")


def shot(page, name, tmp_path):
    """Screenshots go to docs/ when COLT_UPDATE_SCREENSHOTS=1, else to the test's tmp dir."""
    folder = ROOT / "docs" if os.environ.get("COLT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(folder / name), full_page=True)


def test_launch_a_run_and_watch_it_grow_live(server, member, page, tmp_path):
    log_in(page, server)
    page.select_option("#id_kernel", "gemm-128")
    page.select_option("#id_strategy", "colt")
    # K=1 escalates on every small-model regression; 48 trials leave room for ~20 small-model
    # expansions, so at least one regression (and its escalation) is all but certain
    page.fill("#id_trials", "48")
    page.fill("#id_course_alteration_k", "1")
    page.select_option("#id_preset", "paper")  # course alteration as the papers run it (no screening)
    page.click("#launch")
    page.wait_for_url("**/runs/*")
    run_id = int(page.url.rstrip("/").split("/")[-1])
    # nodes appear and the plot grows without a reload
    page.wait_for_function("window.coltState.nodes.size > 5", timeout=60_000)
    first = page.evaluate("window.coltState.nodes.size")
    page.wait_for_function("document.querySelector('#plot').getAttribute('data-points') >= 1", timeout=120_000)
    page.wait_for_function(f"window.coltState.nodes.size > {first}", timeout=120_000)
    assert page.evaluate("window.coltState.drawn") > 1
    page.wait_for_function("document.querySelector('#share').textContent.endsWith('%')", timeout=120_000)
    assert "(large)" in page.text_content("#largest")
    page.wait_for_function("window.coltState.escalations.length > 0", timeout=180_000)
    page.wait_for_selector("#escalations li")
    assert "regressed" in page.text_content("#escalations li")
    page.wait_for_timeout(300)  # the next batched redraw
    shot(page, "run-page-midrun.png", tmp_path)
    # click an escalation: the details of its node load
    page.click("#escalations li")
    page.wait_for_selector("#details:not([hidden])")
    assert '"node_id"' in page.text_content("#d-body")
    trials = page.text_content("[data-budget='trials']")
    assert "/ 48" in trials
    page.wait_for_function("['succeeded','failed','cancelled'].includes(window.coltState.status)", timeout=240_000)
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.escalations > 0
    assert page.evaluate("window.coltState.lastSeq") == run.last_seq  # every event reached the page
    page.wait_for_function("document.querySelector('#status').textContent === 'succeeded'")
    # where the time went: candidates, LLM calls, the rest (shares of the elapsed seconds)
    split = page.text_content("#time-split")
    assert "building and timing candidates" in split and "LLM calls" in split, split
    shares = [int(x) for x in re.findall(r"(\d+)%", split)]
    assert len(shares) == 3 and 97 <= sum(shares) <= 103 and shares[0] > 0, split
    assert "(no limit)" in page.text_content("[data-budget='wall-clock s']")
    # the design space's sketches the run measured a schedule of (gemm: 3)
    measured, total = (int(x) for x in re.fullmatch(r"(\d+) of (\d+)", page.text_content("#sketches")).groups())
    assert total == 3 and 1 <= measured <= total
    shot(page, "run-page.png", tmp_path)


def test_the_pages_run_under_their_content_security_policy(server, member, team, page, gemm128):
    """The app's scripts and styles load and run with the CSP enforced: no violation on the
    pages, and run.js has drawn the run page (its text is set by the script)."""
    from tests.helpers import create_run

    run = create_run(spec=gemm128, team=team, enqueue=False)
    strict = page.context.browser_for_csp.new_page(viewport={"width": 1400, "height": 950})
    violations = []
    strict.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(strict, server)
    for path in ("/runs/new", "/", f"/runs/{run.pk}", "/costs"):
        strict.goto(server + path)
        strict.wait_for_load_state("networkidle")
    strict.goto(server + f"/runs/{run.pk}")
    strict.wait_for_timeout(1500)  # run.js: fetch the header, open the websocket, draw
    assert "nodes" in (strict.text_content("#node-count") or "")
    assert not violations, violations
    strict.close()


def test_a_form_with_bad_input_shows_errors_and_creates_nothing(server, member, page):
    log_in(page, server)
    page.select_option("#id_kernel", "custom")
    page.select_option("#id_op", "gemm")
    page.fill("#id_shape", "M=0,N=8,K=8")
    page.fill("#id_trials", "-3")
    page.select_option("#id_strategy", "colt")
    page.uncheck("#id_models_0")
    page.uncheck("#id_models_1")
    page.click("#launch")
    assert "dimension M must be positive" in page.text_content("#field-shape")
    assert page.text_content("#field-trials .error")
    assert "at least two models" in page.text_content("#field-models")
    assert Run.objects.count() == 0
    page.fill("#id_shape", "M=8,N=8,K=999999")
    page.click("#launch")
    assert "larger than 65536" in page.text_content("#field-shape")
    assert Run.objects.count() == 0


def test_log_in_review_costs_sort_by_usd_and_compare_two_runs(
    server, member, team, page, tmp_path, gemm128, gemm_measurer, colt_run
):
    colt = colt_run
    random_run = execute(gemm128, team, gemm_measurer, strategy="mcts-random", trials=6)
    log_in(page, server)
    # the team's cost review: one row per model; sort by USD (descending, then ascending)
    page.click("header nav >> text=Cost review")
    page.wait_for_selector("#model-costs")
    usd_header = page.locator("#model-costs th", has_text="USD").first
    usd_header.click()
    values = lambda: page.eval_on_selector_all(  # noqa: E731
        "#model-costs tbody tr:not(.total) td.usd", "cells => cells.map(c => Number(c.dataset.value))"
    )
    assert usd_header.get_attribute("aria-sort") == "descending"
    first = values()
    assert len(first) >= 2 and first == sorted(first, reverse=True)
    usd_header.click()
    assert values() == sorted(first) and usd_header.get_attribute("aria-sort") == "ascending"
    assert page.locator("#model-costs tbody tr").last.get_attribute("class") == "total"
    shot(page, "cost-review.png", tmp_path)
    # the run's own review has the cost rolled up the tree
    page.goto(f"{server}/runs/{colt.pk}")
    page.click("#costs-link")
    page.wait_for_selector("#subtree-costs")
    assert f"run {colt.pk}" in page.text_content("h1")
    shot(page, "run-costs.png", tmp_path)
    # compare the two runs from the run list
    page.goto(server + "/")
    page.check(f"input[name=runs][value='{colt.pk}']")
    page.check(f"input[name=runs][value='{random_run.pk}']")
    page.click("#compare-button")
    page.wait_for_url("**/compare?*")
    page.wait_for_selector("#chart-latency path[data-run]", state="attached")
    assert page.locator("#compare-table tbody tr").count() == 2
    assert page.locator("#chart-latency path[data-run]").count() == 2
    assert page.locator("#chart-usd path[data-run]").count() == 2
    table = page.text_content("#compare-table")
    assert "colt" in table and "mcts-random" in table
    assert re.search(r"\d (ms|µs)", table)  # latencies in a kernel engineer's units, as on the run page
    shot(page, "compare.png", tmp_path)


def test_a_run_started_from_the_command_line_streams_to_an_open_run_page(fake_llm, member, team, page, tmp_path):
    """One live channel for every edge: ``manage.py tune`` in its own process publishes its
    events to the run's group (Redis here, as in production), and an open run page grows."""
    from tests.search.test_tasks import REDIS_TEST_URL, redis_available

    if not redis_available():
        if os.environ.get("COLT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS_TEST_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_TEST_URL}")
    web = serve(fake_llm, tmp_path, REDIS_URL=REDIS_TEST_URL)
    base = next(web)
    env = dict(os.environ, DATABASE_URL=database_url(), REDIS_URL=REDIS_TEST_URL, PYTHONPATH=str(ROOT))
    with open(tmp_path / "tune.log", "w") as log:
        cli = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "tune",
                "--kernel",
                "gemm-128",
                "--trials",
                "40",
                "--measure-batch",
                "4",
                "--expansions-per-round",
                "8",
                *FAST_CLI,
                "--team",
                team.name,
                "--out",
                str(tmp_path / "out"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            log_in(page, base)
            deadline = time.monotonic() + 120
            while not Run.objects.filter(last_seq__gt=0).exists():
                assert cli.poll() is None and time.monotonic() < deadline, (tmp_path / "tune.log").read_text()
                time.sleep(0.1)
            run = Run.objects.get()
            page.goto(f"{base}/runs/{run.pk}")
            page.wait_for_function("window.coltState.live > 0", timeout=120_000)
            first = page.evaluate("window.coltState.nodes.size")
            page.wait_for_function(f"window.coltState.nodes.size > {first}", timeout=120_000)
            assert cli.wait(timeout=300) == 0, (tmp_path / "tune.log").read_text()
            page.wait_for_function("window.coltState.status === 'succeeded'", timeout=60_000)
            run.refresh_from_db()
            assert page.evaluate("window.coltState.lastSeq") == run.last_seq  # every event reached the page
        finally:
            if cli.poll() is None:
                cli.kill()
            next(web, None)  # stop Daphne


def test_upload_a_model_watch_its_page_open_a_task_and_download_the_library(server, member, page, tmp_path):
    from search.engine import onnxgraphs
    from search.models import ModelRun

    model = tmp_path / "tiny_cnn.onnx"
    model.write_bytes(onnxgraphs.small_cnn(size=12, channels=8))
    log_in(page, server)
    page.select_option("#id_kernel", "onnx")
    page.set_input_files("#id_onnx_file", str(model))
    page.select_option("#id_strategy", "mcts-random")
    page.fill("#id_trials", "8")
    page.select_option("#id_preset", "paper")
    page.click("#launch")
    page.wait_for_url("**/models/*")
    model_run = ModelRun.objects.get()
    # the tasks are listed at once, before any is searched
    assert "conv2d" in page.text_content("#m-tasks")
    assert page.locator("#m-tasks tbody tr").count() == len(model_run.summary["tasks"])
    # the page follows the run without a reload: phases, then the end-to-end figures
    page.wait_for_function("document.querySelector('#m-phase').textContent.length > 0")
    page.wait_for_function("document.querySelector('#m-status').textContent === 'succeeded'", timeout=300_000)
    page.wait_for_function("document.querySelector('#r-ort').textContent !== '-'")
    assert "x" in page.text_content("#r-speedup")
    assert page.locator("#m-plot path").count() >= 1
    assert page.is_hidden("#m-cancel-form") and page.is_hidden("#m-resume-form")
    shot(page, "model-page.png", tmp_path)
    # one task's tree: a run page like any other, linking back
    page.click("#m-tasks .c-run a >> nth=0")
    page.wait_for_url("**/runs/*")
    page.wait_for_function("window.coltState.nodes.size > 0", timeout=60_000)
    assert "model run" in page.text_content("#model-run-link")
    page.click("#model-run-link")
    page.wait_for_url("**/models/*")
    with page.expect_download(timeout=120_000) as download:
        page.click("#dl-so")
    path = download.value.path()
    assert Path(path).read_bytes()[:4] == b"\x7fELF"  # a shared library


SIZES = {"phone": (390, 844), "laptop": (1400, 900), "wide": (1920, 1080)}

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
#: every tick label of the plot inside the plot's box (no clipped "00m")
TICKS_INSIDE = """(id) => {
  const svg = document.querySelector(id).getBoundingClientRect();
  return Array.from(document.querySelectorAll(id + ' text')).every((t) => {
    const b = t.getBoundingClientRect();
    return b.width > 0 && b.left >= svg.left - 1 && b.right <= svg.right + 1
      && b.top >= svg.top - 1 && b.bottom <= svg.bottom + 1;
  });
}"""


def finished_runs(spec, team, n=2):
    """``n`` finished runs of one kernel (the second reuses the first's baseline)."""
    from search import services
    from search.engine.measure import MeasureConfig
    from search.engine.request import Budget, SearchSettings
    from tests.helpers import create_run

    runs = []
    for seed in range(n):
        run = create_run(
            spec=spec,
            budget=Budget(trials=6),
            settings=SearchSettings.paper(measure_batch=2, seed=seed),
            timing=MeasureConfig(number=1, repeat=2, min_repeat_ms=0),
            team=team,
            enqueue=False,
        )
        services.execute_run(run.pk)
        run.refresh_from_db()
        runs.append(run)
    return runs


def test_the_pages_fit_phones_laptops_and_wide_screens(server, member, team, page, tmp_path, gemm128):
    runs = finished_runs(gemm128, team)
    assert runs[0].baseline_latency == runs[1].baseline_latency  # one shared baseline: comparable speedups
    log_in(page, server)
    compare = f"/compare?runs={runs[0].pk}&runs={runs[1].pk}"
    urls = ["/", f"/runs/{runs[0].pk}", "/runs/new", "/models", "/costs", compare]
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        for url in urls:
            page.goto(server + url)
            page.wait_for_load_state("networkidle")
            assert page.evaluate(NO_SIDEWAYS_SCROLL) <= 1, (name, url)
        page.goto(f"{server}/runs/{runs[0].pk}")
        page.wait_for_selector("#plot path")
        page.wait_for_function("document.querySelector('#status').textContent === 'succeeded'")
        assert page.evaluate(TICKS_INSIDE, "#plot"), name
        assert " ms" in page.text_content("#plot") or " µs" in page.text_content("#plot")  # units on the axis
        header = page.evaluate("document.querySelector('header').getBoundingClientRect().height")
        assert header < 100  # the nav wraps to two lines at most
        # a finished run offers no Cancel and no Resume
        assert page.is_hidden("#resume-form") and page.is_hidden("#cancel-form")
        assert "shared by this kernel's runs" in page.text_content("#baseline")
        shot(page, f"run-page-{name}.png", tmp_path)
        page.goto(server + compare)
        page.wait_for_selector("#chart-latency path")
        assert page.evaluate(TICKS_INSIDE, "#chart-latency"), name
    # the node panel opens beside the tree, in view without scrolling (1400 x 900)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{server}/runs/{runs[0].pk}")
    page.wait_for_function("window.coltState.layout && window.coltState.nodes.size > 2")
    point = page.evaluate(
        """() => {
        const S = window.coltState, c = document.querySelector('#tree'), r = c.getBoundingClientRect();
        const d = S.layout.descendants().find((n) => n.data.node_id !== 0);
        const [x, y] = S.transform.apply([d.x, d.y]);
        return [r.left + x * r.width / c.width, r.top + y * r.height / c.height];
    }"""
    )
    page.mouse.click(point[0], point[1])
    page.wait_for_selector("#details:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#d-path li').length > 0")
    box = page.locator("#details").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1401 and box["y"] < 900 and box["height"] > 300
    assert page.evaluate("window.scrollY") == 0
    assert page.locator("#d-summary tr").count() >= 5
    page.click("#d-script")
    page.wait_for_selector("#d-script-body .tok-keyword")
    shot(page, "run-page-node-panel.png", tmp_path)


def test_the_launch_form_has_one_k_and_the_phase_shows_at_once(server, member, page):
    log_in(page, server)
    assert page.locator("[name=course_alteration_k]").count() == 1 and page.locator("[name=k]").count() == 0
    page.select_option("#id_kernel", "gemm-128")
    page.select_option("#id_strategy", "mcts-random")
    page.fill("#id_trials", "4")
    page.select_option("#id_preset", "paper")
    page.click("#launch")
    page.wait_for_url("**/runs/*")
    start = time.monotonic()
    shown = (
        "document.querySelector('#phase').textContent.trim().length > 0"
        " || ['succeeded', 'failed'].includes(document.querySelector('#status').textContent)"
    )
    page.wait_for_function(shown, timeout=1000)
    assert time.monotonic() - start < 1.0
    phase = page.text_content("#phase") or page.text_content("#status")
    assert any(word in phase for word in ("queued", "starting", "measuring", "searching", "succeeded"))
    page.wait_for_function("document.querySelector('#status').textContent === 'succeeded'", timeout=120_000)
    assert page.is_hidden("#resume-form")


def test_replay_a_finished_run_and_see_which_model_made_each_improvement(server, member, team, page, tmp_path, gemm128):
    (run,) = finished_runs(gemm128, team, n=1)
    log_in(page, server)
    page.goto(f"{server}/runs/{run.pk}")
    page.wait_for_function("document.querySelector('#status').textContent === 'succeeded'")
    improvements = run.events.filter(kind="best_improved").count()
    page.wait_for_function(f"document.querySelectorAll('#improvements li').length === {improvements}")
    # mcts-random: no LLM proposed it; a root sample or a tree child of a mutator drawn from the prior
    assert re.search(r"by (root sample|tree, prior's mutator) \(node", page.text_content("#improvements li"))
    # where the measured schedules came from: the nodes' recorded origins, counted as the database holds them
    from django.db.models import Count, Q

    from search.engine.events import ORIGINS

    want = {
        ORIGINS[o["origin"]]: f"{o['measured']} measured of {o['made']} made"
        for o in run.nodes.values("origin").annotate(
            made=Count("id"), measured=Count("id", filter=Q(status__isnull=False))
        )
    }
    assert set(want) == {"root sample", "tree, prior's mutator"}
    shown = {
        tr.get_attribute("data-origin"): tr.query_selector("td").text_content()
        for tr in page.query_selector_all("#origins tbody tr")
    }
    assert set(shown) == set(want) and all(shown[k].startswith(want[k]) for k in want), (shown, want)
    assert sum(int(m) for m in re.findall(r"(\d+) new best", " ".join(shown.values()))) == improvements
    full = page.evaluate("window.coltState.nodes.size")
    assert page.is_visible("#replay-bar")
    # back to the first events: the tree shrinks; forward to the end: all of it again
    slide = "(v) => { const r = document.querySelector('#replay'); r.value = v; r.dispatchEvent(new Event('input')); }"
    page.evaluate(slide, 6)
    assert page.evaluate("window.coltState.nodes.size") < full
    page.wait_for_function("document.querySelector('#replay-label').textContent.startsWith('event 6 of')")
    page.click("#replay-live")
    assert page.evaluate("window.coltState.nodes.size") == full
    assert page.evaluate("window.coltState.improvements.length") == improvements
