"""``manage.py tune`` as a user runs it: a subprocess, its exit code, its output files."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST_CLI

ROOT = Path(__file__).resolve().parents[2]
ENV = {}


@pytest.fixture(scope="module", autouse=True)
def cli_database(tmp_path_factory):
    """The CLI records runs in a database: give it its own, migrated, SQLite file."""
    path = tmp_path_factory.mktemp("cli") / "cli.sqlite3"
    ENV.update(os.environ, DATABASE_URL=f"sqlite:///{path}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)
    yield path


def tune(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "manage.py", "tune", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kernel", "no-such-kernel"], "unknown kernel 'no-such-kernel'"),
        (["--op", "gemm", "--shape", "M=0,N=8,K=8"], "dimension M must be positive"),
        (["--op", "gemm", "--shape", "M=100000,N=8,K=8"], "larger than 65536"),
        (["--op", "gemm", "--shape", "M=8,N=8"], "needs dimension K"),
        (["--op", "gemm", "--shape", "M8"], "NAME=INT"),
        (["--op", "fft", "--shape", "N=8"], "unknown operator 'fft'"),
        (["--kernel", "gemm-128", "--trials", "0"], "trials must be an integer between 1 and 100000"),
        (["--kernel", "gemm-128", "--trials", "-5"], "trials must be an integer between 1 and 100000"),
        (["--kernel", "gemm-128", "--seed", "-1"], "seed must be an integer between 0 and 2147483647"),
        (["--kernel", "gemm-128", "--seed", "9" * 20], "seed must be an integer between 0 and 2147483647"),
        (["--op", "gemm", "--shape", "M=²,N=8,K=8"], "dimension M must be an integer"),
        (["--op", "gemm", "--shape", "M=" + "9" * 5000 + ",N=8,K=8"], "dimension M must be an integer"),
        (["--kernel", "gemm-128", "--target", "llvm\n"], "unknown target 'llvm\\n'"),
        (["--kernel", "gemm-128", "--measure-batch", "1000000"], "measure_batch must be an integer between 1 and 64"),
        (["--kernel", "gemm-128", "--target", "tpu"], "unknown target 'tpu'"),
        (["--kernel", "gemm-128", "--strategy", "guess"], "unknown strategy 'guess'"),
        (["--kernel", "gemm-128", "--lam", "2"], "lam must be a number between 0 and 1"),
        (["--kernel", "gemm-128", "--prior-variants", "1.5"], "prior_variants must be a number between 0 and 1"),
        (["--kernel", "gemm-128", "--population", "0"], "population must be"),
        ([], "which kernel?"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    proc = tune(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_lever_beyond_the_papers_is_an_option():
    from search.engine.request import PRESETS
    from search.management.commands.tune import SETTINGS

    assert set(PRESETS["paper"]) <= set(SETTINGS)


def test_non_integer_trials_is_an_argparse_error():
    proc = tune("--kernel", "gemm-128", "--trials", "many")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_list_kernels():
    proc = tune("--list-kernels")
    assert proc.returncode == 0
    for name in (
        "gemm-512",
        "llama3-8b-attention",
        "deepseek-r1-moe",
        "flux-attention",
        "flux-conv2d",
        "llama4-scout-mlp",
        "layer-norm",
        "softmax",
    ):
        assert name in proc.stdout


@pytest.mark.slow
def test_a_real_run_writes_a_replayable_schedule(tmp_path):
    out = tmp_path / "out"
    proc = tune(
        "--op",
        "gemm",
        "--shape",
        "M=64,N=64,K=64",
        "--trials",
        "6",
        "--measure-batch",
        "3",
        "--timing-cutoff",
        "1.5",
        "--sketch-scout",
        "1",
        *FAST_CLI,
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "unscheduled kernel:" in proc.stdout
    assert "[6/6 trials]" in proc.stdout and "speedup" in proc.stdout and "GFLOP/s" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 6 and summary["best_latency_s"] > 0
    # where the time went, and the trials the cutoff timed by two single runs (random schedules: some are slow)
    assert summary["elapsed_s"] > summary["measure_s"] > summary["build_s"] > 0
    assert "building, checking and timing candidates" in proc.stdout
    assert (f"{summary['coarse_trials']} trials (slower than the timing cutoff)" in proc.stdout) == (
        summary["coarse_trials"] > 0
    )
    assert summary["speedup"] == pytest.approx(summary["baseline_latency_s"] / summary["best_latency_s"])
    # the gemm's design space has three sketches; the run measured schedules of some
    assert summary["sketches_total"] == 3 and 1 <= summary["sketches"] <= 3
    line = next(x for x in proc.stdout.splitlines() if "sketches measured" in x)
    assert line.endswith(f"{summary['sketches']} of 3"), line
    script = (out / "best_schedule.py").read_text()
    assert "T.prim_func" in script
    # the trace JSON replays on the kernel and gives the module the TVMScript shows
    from search.engine.compiler import SearchSpace
    from search.engine.workloads import KernelSpec, validate

    space = SearchSpace(validate(KernelSpec("gemm", {"M": 64, "N": 64, "K": 64})), "llvm")
    cand = space.load(json.loads((out / "best_trace.json").read_text()))
    assert cand.script() == script
    # and the run is in the history, like a web run
    db = sqlite3.connect(ENV["DATABASE_URL"].removeprefix("sqlite:///"))
    status, trials, best = db.execute("select status, trials_done, best_latency from search_run").fetchone()
    assert (status, trials) == ("succeeded", 6) and best == pytest.approx(summary["best_latency_s"])


@pytest.mark.slow
def test_two_runs_at_once_on_the_embedded_database_both_finish(tmp_path):
    """Two `manage.py tune` started together on one SQLite file (WAL, IMMEDIATE transactions,
    a busy timeout): both finish, both runs are in the history, no 'database is locked'."""
    args = ["--op", "gemm", "--shape", "M=32,N=32,K=32", "--trials", "4", "--measure-batch", "2", "--preset",
            "paper", *FAST_CLI]  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "tune", *args, "--seed", str(seed), "--out", str(tmp_path / str(seed))],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "database is locked" not in err and "Traceback" not in err
    db = sqlite3.connect(ENV["DATABASE_URL"].removeprefix("sqlite:///"))
    done = db.execute("select count(*) from search_run where status = 'succeeded' and trials_done = 4").fetchone()
    assert done[0] >= 2
