"""The security review's checks (docs/security.md), as tests: no code path can execute text an
LLM or a user wrote, hostile replies and specs are reduced to known names or refused, and API
keys never reach the database or the logs."""

import ast
import json
import logging
from pathlib import Path

import pytest

from search.engine.prompting import parse_reply
from search.engine.workloads import KernelSpec, SpecError, parse_shape, validate
from tests.helpers import create_run

ROOT = Path(__file__).resolve().parents[2]
APP_DIRS = ("search", "dashboard", "accounts", "colt_site")

#: calls that would run text as code or unpickle it
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
FORBIDDEN_ATTRS = {
    ("pickle", "loads"),
    ("pickle", "load"),
    ("marshal", "loads"),
    ("cloudpickle", "loads"),
    ("yaml", "load"),
    ("script", "from_source"),
    ("os", "system"),
    ("os", "popen"),
}


def app_sources():
    for folder in APP_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def test_no_code_path_can_execute_text():
    """Static: no eval/exec/compile, no unpickling or yaml.load, no shell=True, no
    TVMScript parsing, no import by a computed name anywhere in the application."""
    problems = []
    for path in app_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in FORBIDDEN_CALLS:
                problems.append(f"{where} calls {fn.id}()")
            if isinstance(fn, ast.Attribute) and isinstance(fn.value, (ast.Name, ast.Attribute)):
                owner = fn.value.id if isinstance(fn.value, ast.Name) else fn.value.attr
                if (owner, fn.attr) in FORBIDDEN_ATTRS:
                    problems.append(f"{where} calls {owner}.{fn.attr}()")
                if fn.attr == "import_module" and not isinstance(node.args[0], ast.Constant):
                    problems.append(f"{where} imports a computed module name")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where} passes shell=...")
    assert problems == []
    assert len(list(app_sources())) > 30  # the scan saw the application


HOSTILE_REPLIES = [
    "__import__('os').system('touch /tmp/colt-pwned')",
    '{"mutators": ["MutateTileSize; import os"], "next_model": "large\'); drop table"}',
    '```python\nimport subprocess; subprocess.run(["rm", "-rf", "/"])\n```',
    '{"mutators": "eval(\\"1+1\\")", "next_model": {"$gt": ""}}',
    "A" * 100_000,
]


@pytest.mark.parametrize("reply", HOSTILE_REPLIES)
def test_hostile_llm_replies_become_known_names_or_nothing(reply, tmp_path):
    known_mutators = ["MutateTileSize", "MutateUnroll", "MutateParallel"]
    parsed = parse_reply(reply, known_mutators, ["small", "large"])
    assert set(parsed.mutators) <= set(known_mutators) and len(parsed.mutators) <= 4
    assert parsed.next_model in (None, "small", "large")
    assert not Path("/tmp/colt-pwned").exists()


@pytest.mark.parametrize(
    "shape",
    [
        "M=__import__('os').getpid(),N=1,K=1",
        "M=1e400,N=8,K=8",
        "M=8;N=8",
        "M=8,N=8,K=8,Z=8",
        "M=-8,N=8,K=8",
        "M=99999999,N=8,K=8",
    ],
)
def test_hostile_kernel_specs_are_refused(shape):
    with pytest.raises(SpecError):
        validate(KernelSpec("gemm", parse_shape(shape)))


def test_an_unknown_operator_is_refused():
    with pytest.raises(SpecError):
        validate(KernelSpec("os.system", {"M": 8}))


@pytest.mark.django_db(transaction=True)
@pytest.mark.db
def test_api_keys_reach_neither_the_database_nor_the_logs(fake_llm, monkeypatch, caplog, gemm128, gemm_measurer, team):
    """A provider that rejects the key and echoes it back: the run goes on, the call is
    recorded as a server error, and the key is in no row, event or log line."""
    from django.db import connection

    from search import services
    from search.engine.request import Budget, SearchSettings
    from tests.engine.test_policy import fleet_at
    from tests.fakellm import Script

    secret = "sk-live-" + "s3cr3t" * 6
    monkeypatch.setenv("COLT_SECRET_TEST_KEY", secret)
    monkeypatch.setattr(services, "enqueue_run", lambda *a: None)
    for name in ("small", "mid", "large"):
        fake_llm.scripts[name] = Script(status=401)
    caplog.set_level(logging.DEBUG)
    fleet = fleet_at(fake_llm.api_base, key_env="COLT_SECRET_TEST_KEY")
    run = create_run(
        spec=gemm128,
        strategy="colt",
        fleet=fleet,
        budget=Budget(trials=4),
        team=team,
        settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4, seed=2),
    )
    services.execute_run(run.pk, measurer=gemm_measurer, serve_local=False)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.llm_calls > 0
    assert fake_llm.requests and all(r["_authorization"] == f"Bearer {secret}" for r in fake_llm.requests)
    assert set(run.llm_calls_made.values_list("outcome", flat=True)) == {"server_error"}
    with connection.cursor() as cursor:  # every text column of every table
        dump = []
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            dump.extend(json.dumps(row, default=str) for row in cursor.fetchall())
    assert secret not in "\n".join(dump)
    assert secret not in caplog.text


def test_pages_build_text_from_data_with_text_content_only():
    """Model names and event fields reach the page as text: no script of the app assigns
    innerHTML/outerHTML or calls insertAdjacentHTML/document.write."""
    problems = []
    for path in sorted((ROOT / "static").rglob("*.js")):
        if "vendor" in path.parts or path.name.endswith(".min.js"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(s in line for s in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write")):
                problems.append(f"{path.relative_to(ROOT)}:{n}")
    assert not problems, problems
