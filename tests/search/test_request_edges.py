"""One run request, three edges: the launch form, ``manage.py tune`` and the JSON API build it
from the same document with the same limits, so a bad value gets the same message from each,
and nothing is created."""

import html
import json
import math

import pytest

from search.engine.request import PRESETS, SearchSettings
from search.models import Run
from tests.helpers import LAUNCH_FORM
from tests.search.test_tune_command import cli_database, tune  # noqa: F401 - the CLI's own database

pytestmark = pytest.mark.db

#: (what is wrong, the form's fields, the CLI's options, the API's document, the message)
BAD = [
    (
        "branching 0",
        {"branching": "0"},
        ["--branching", "0"],
        {"settings": {"branching": 0}},
        "branching must be an integer between 1 and 16",
    ),
    (
        "branching 17",
        {"branching": "17"},
        ["--branching", "17"],
        {"settings": {"branching": 17}},
        "branching must be an integer between 1 and 16",
    ),
    (
        "lambda NaN",
        {"lam": "nan"},
        ["--lam", "nan"],
        {"settings": {"lam": math.nan}},
        "lam must be a number between 0 and 1",
    ),
    (
        "trials 0",
        {"trials": "0"},
        ["--trials", "0"],
        {"budget": {"trials": 0}},
        "trials must be an integer between 1 and 100000",
    ),
    (
        "trials 10^9",
        {"trials": "1000000000"},
        ["--trials", "1000000000"],
        {"budget": {"trials": 10**9}},
        "trials must be an integer between 1 and 100000",
    ),
    (
        "unknown strategy",
        {"strategy": "guess"},
        ["--strategy", "guess"],
        {"strategy": "guess"},
        "unknown strategy 'guess'; known: mcts-random, colt, single-llm, evolutionary",
    ),
    (
        "negative USD",
        {"usd": "-1"},
        ["--max-usd", "-1"],
        {"budget": {"usd": -1}},
        "usd must be a number greater than 0 and at most 1000000",
    ),
]
FORM = {k: str(v) for k, v in LAUNCH_FORM.items()}


@pytest.mark.parametrize("case, form, cli, doc, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_gets_one_message_from_the_form_the_cli_and_the_api(client, team, case, form, cli, doc, message):
    page = client.post("/runs/new", {**FORM, "team": team.pk, **form})
    assert page.status_code == 200
    assert message in html.unescape(page.content.decode())

    api = client.post(
        "/api/runs", json.dumps({"kernel": "gemm-128", "team": team.name, **doc}), content_type="application/json"
    )
    assert api.status_code == 400
    assert message in api.json()["errors"].values()

    proc = tune("--kernel", "gemm-128", *cli)
    assert proc.returncode == 2 and proc.stderr.strip() == f"CommandError: {message}"
    assert Run.objects.count() == 0


def test_the_api_launches_a_run_from_a_request_document(
    client, team, member, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("search.services.enqueue_run", lambda run_id, target: queued.append(run_id))
    doc = {
        "kernel": {"op": "gemm", "shape": {"M": 64, "N": 64, "K": 32}},
        "strategy": "mcts-random",
        "budget": {"trials": 6, "wall_s": 60},
        "settings": {"branching": 3, "seed": 4},
        "timing": {"number": 1, "repeat": 2},
        "team": team.name,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/runs", json.dumps(doc), content_type="application/json")
    assert response.status_code == 201, response.content
    run = Run.objects.get()
    assert queued == [run.pk] and response.json()["url"] == f"/runs/{run.pk}"
    request = run.run_request  # stored once, read back whole
    assert request.kernel.shape == {"M": 64, "N": 64, "K": 32} and request.budget.trials == 6
    assert request.budget.wall_s == 60 and request.settings.branching == 3 and request.settings.seed == 4
    assert request.timing.number == 1 and request.timing.repeat == 2 and request.timing.min_repeat_ms == 100
    assert run.owner == member and run.team == team
    # not a JSON object, an unknown field, a team the user is not in: 400, nothing created
    for body in (
        "[1, 2]",
        "{not json",
        json.dumps({"kernel": "gemm-128", "budget": {"trails": 5}}),
        json.dumps({"kernel": "gemm-128", "team": "elsewhere-team"}),
        json.dumps({"kernel": "gemm-128", "team": ["lab"]}),
        json.dumps({"kernel": "gemm-128", "target": "cuda-sm90"}),  # no worker serves it here
        json.dumps({"kernel": "gemm-128", "budget": {"trials": 10**400}}),
        json.dumps({"kernel": "gemm-128", "strategy": "single-llm", "fleet": [{"name": "x", "model": "openai/x"}]}),
        json.dumps({"kernel": {"op": "gemm", "shape": {"M": 8, "N": 8, "K": 8}, "name": "a\nb"}}),
        "[" * 100_000 + "]" * 100_000,
    ):
        assert client.post("/api/runs", body, content_type="application/json").status_code == 400
    assert Run.objects.count() == 1


def test_a_node_has_one_schema_in_the_engine_the_database_and_the_exports():
    from search.engine.events import NODE_FIELDS, NodeCreated
    from search.exports import NODES_HEADER
    from search.models import Node

    columns = {f.name for f in Node._meta.get_fields()} - {"id", "run", "seq"}
    assert columns == set(NODE_FIELDS)
    assert set(NODES_HEADER) <= set(NODE_FIELDS)
    created = NodeCreated(node_id=1, parent_id=0, depth=1).to_dict()
    assert set(created) == set(NODE_FIELDS) | {"kind"}
    assert created["status"] is None and created["created_by"] is None  # None, never ""


def test_the_form_sets_the_levers_beyond_the_papers(client, team, monkeypatch):
    monkeypatch.setattr("search.services.enqueue_run", lambda run_id, target: None)
    response = client.post(
        "/runs/new",
        {
            **FORM,
            "team": team.pk,
            "variants": "8",
            "prior_variants": "0.5",
            "measured_reward": "on",
            "compact_prompt": "on",
            "cost_routing": "on",
            "population": "8",
            "llm_in_flight": "3",
            "largest_share_floor": "0.2",
        },  # fmt: skip
    )
    assert response.status_code == 302
    settings = Run.objects.get().run_request.settings
    assert settings.variants == 8 and settings.measured_reward is True and settings.prior_variants == 0.5
    assert settings.compact_prompt is True and settings.llm_in_flight == 3 and settings.cost_routing is True
    assert settings.population == 8 and settings.largest_share_floor == 0.2
    client.post("/runs/new", {**FORM, "team": team.pk})
    defaults = Run.objects.order_by("-pk").first().run_request.settings
    assert (defaults.variants, defaults.refine) == (SearchSettings().variants, SearchSettings().refine)
    assert defaults.cost_routing is False and defaults.largest_share_floor == SearchSettings().largest_share_floor
    assert defaults.population == SearchSettings().population == 16
    client.post("/runs/new", {**FORM, "team": team.pk, "preset": "paper"})  # root samples left blank
    assert Run.objects.order_by("-pk").first().run_request.settings.population == PRESETS["paper"]["population"] == 3
    client.post(
        "/runs/new",
        {**FORM, "team": team.pk, "preset": "paper", "variants": "8", "refine": "64", "compact_prompt": "on",
         "llm_in_flight": "4", "population": "16", "largest_share_floor": "0.3"},
    )  # fmt: skip
    paper = Run.objects.order_by("-pk").first().run_request.settings
    levers = {k: v for k, v in PRESETS["paper"].items() if k != "population"}
    assert {k: getattr(paper, k) for k in levers} == levers  # the preset governs the levers
    assert paper.population == 16  # root samples sit above the preset, with seed: set, they are kept


def test_the_paper_preset_keeps_three_root_samples_and_an_explicit_number_in_the_api_and_the_cli():
    from search.engine.request import build_request
    from search.management.commands.tune import Command

    doc = {"kernel": "gemm-128", "target": "llvm", "strategy": "mcts-random"}
    assert build_request(doc).settings.population == SearchSettings().population == 16
    assert build_request({**doc, "settings": {"preset": "paper"}}).settings.population == 3
    assert build_request({**doc, "settings": {"population": 5, "preset": "paper"}}).settings.population == 5
    command = Command()
    parser = command.create_parser("manage.py", "tune")

    def cli(*args: str) -> int:
        opts = vars(parser.parse_args(["--kernel", "gemm-128", "--strategy", "mcts-random", *args]))
        return command._request(opts).settings.population

    assert (cli(), cli("--preset", "paper"), cli("--preset", "paper", "--population", "5")) == (16, 3, 5)
