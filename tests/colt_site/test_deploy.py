"""The production shape without Docker: docker-compose.yml is valid (checked by docker-compose
when the client is installed), and the very commands it gives the web process and the worker
run here with the production settings (DEBUG off, allowed hosts, secure cookies, collected
static files served by WhiteNoise), against the real Redis and the test database."""

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from search.engine.measure import MeasureConfig
from search.engine.request import Budget, SearchSettings
from search.models import Run
from tests.helpers import create_run, database_url, free_port, wait_until_serving
from tests.search.test_tasks import REDIS_TEST_URL, broker  # noqa: F401 - the Redis fixture

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db, pytest.mark.services, pytest.mark.slow]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_declares_the_production_services_and_validates():
    spec = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker-llvm", "worker-cuda"} <= set(spec)
    assert spec["worker-cuda"]["profiles"] == ["gpu"]  # only on GPU hosts
    for name in ("worker-llvm", "worker-cuda"):
        cmd = spec[name]["command"]
        assert cmd[:4] == ["celery", "-A", "colt_site.celery", "worker"] and cmd[cmd.index("-c") + 1] == "1"
    assert spec["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = spec["web"]["environment"]
    assert env["COLT_DEBUG"] == "0" and "COLT_SECRET_KEY:?" in env["COLT_SECRET_KEY"]
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("no docker-compose client here to validate the file with")
    ok = subprocess.run(
        [tool, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, COLT_SECRET_KEY="k" * 50, POSTGRES_PASSWORD="pw"),
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [tool, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("COLT_SECRET_KEY", "POSTGRES_PASSWORD")},
    )
    assert missing.returncode != 0 and "set " in missing.stderr  # refuses to start without secrets


def local(command: list[str], port: int) -> list[str]:
    """A compose command as it runs here: this interpreter, 127.0.0.1 and a free port."""
    first = {
        "python": [sys.executable],
        "daphne": [sys.executable, "-m", "daphne"],
        "celery": [sys.executable, "-m", "celery"],
    }[command[0]]
    rest = ["127.0.0.1" if a == "0.0.0.0" else str(port) if a == "8000" else a for a in command[1:]]
    return first + rest


def fetch(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def test_the_compose_commands_serve_the_app_in_production_settings(tmp_path, settings, gemm128):
    spec = compose()["services"]
    port = free_port()
    env = dict(
        os.environ,
        COLT_DEBUG="0",
        COLT_SECRET_KEY="production-test-" + "x" * 40,
        COLT_ALLOWED_HOSTS="127.0.0.1,localhost",
        COLT_SECURE_COOKIES="1",
        DATABASE_URL=database_url(),
        REDIS_URL=REDIS_TEST_URL,
        COLT_STATIC_ROOT=str(tmp_path / "static"),
        PYTHONPATH=str(ROOT),
    )
    env.pop("COLT_FLEET_FILE", None)
    # the image's build step, then the one-shot migrate service
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    subprocess.run(local(spec["migrate"]["command"], port), cwd=ROOT, env=env, check=True, capture_output=True)
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("web", "worker")}  # noqa: SIM115 - open for the process's lifetime
    procs = [
        subprocess.Popen(
            local(spec["web"]["command"], port),
            cwd=ROOT,
            env=env,
            stdout=logs["web"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            local(spec["worker-llvm"]["command"], port),
            cwd=ROOT,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, procs[0], tmp_path / "web.log")
        # security headers, secure cookies, no debug pages, hosts checked
        status, headers, body = fetch(base + "/accounts/login/")
        assert status == 200
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        _, proxied, _ = fetch(base + "/accounts/login/", {"X-Forwarded-Proto": "https"})  # behind the TLS proxy
        assert proxied["Strict-Transport-Security"] == "max-age=31536000"
        cookie = headers["Set-Cookie"]
        assert "csrftoken=" in cookie and "Secure" in cookie
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(base + "/runs/new", timeout=10)
        assert redirect.value.code == 302 and redirect.value.headers["Location"].startswith("/accounts/login/")
        status, _, body404 = fetch(base + "/no-such-page")
        assert status == 404 and "URLconf" not in body404 and "Traceback" not in body404
        assert fetch(base + "/healthz", {"Host": "evil.example"})[0] == 400
        # static files: collected, hashed names, served by WhiteNoise with long caching
        css = next(part.split('"')[0] for part in body.split('href="')[1:] if part.startswith("/static/"))
        assert css != "/static/dashboard/colt.css" and css.endswith(".css")  # a hashed, immutable name
        status, headers, _ = fetch(base + css)
        assert status == 200 and "max-age=315360000" in headers["Cache-Control"]
        # the worker consumes the llvm queue and runs a run end to end
        settings.REDIS_URL = REDIS_TEST_URL
        run = create_run(
            spec=gemm128,
            budget=Budget(trials=4),
            timing=MeasureConfig(number=1, repeat=2, min_repeat_ms=0),
            settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4),
        )
        deadline = time.monotonic() + 180
        while Run.objects.get(pk=run.pk).status not in Run.FINAL:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        run.refresh_from_db()
        assert run.status == Run.Status.SUCCEEDED and run.trials_done == 4 and run.worker.startswith("llvm@")
        assert env["COLT_SECRET_KEY"] not in (tmp_path / "worker.log").read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        for f in logs.values():
            f.close()


def test_the_default_is_production_and_serving_without_a_secret_key_refuses_to_start():
    plain = {k: v for k, v in os.environ.items() if k not in ("COLT_DEBUG", "COLT_SECRET_KEY")}
    plain["DJANGO_SETTINGS_MODULE"] = "colt_site.settings"

    def python(code):
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=plain, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    debug = python("import django; django.setup(); from django.conf import settings; print(settings.DEBUG)")
    assert debug.returncode == 0 and debug.stdout.strip() == "False", debug.stderr
    serve = python("import colt_site.asgi")
    assert serve.returncode != 0 and "COLT_SECRET_KEY is not set" in serve.stderr
    cli = subprocess.run(
        [sys.executable, "manage.py", "tune", "--list-kernels"], cwd=ROOT, env=plain, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0 and "gemm-128" in cli.stdout  # commands that serve no page still work
