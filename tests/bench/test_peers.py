"""bench/peers.py: numpy's time for a layer, the fastest of several passes, checked against the reference."""

import subprocess
import sys
from pathlib import Path

from bench import peers
from bench.peers import time_layer

ROOT = Path(__file__).resolve().parents[2]


def test_time_layer_times_real_numpy_calls_and_checks_their_output():
    row = time_layer("gemm-128", passes=3)
    assert row["correct"] is True
    assert row["max_error"] < 1e-3
    assert row["passes"] == 3
    assert 0 < row["numpy_s"] <= row["slowest_pass_s"]


def test_the_fastest_passs_median_is_kept_and_the_slowest_recorded(monkeypatch):
    passes = iter([[0.003, 0.004, 0.005], [0.001, 0.002, 0.009], [0.002, 0.002, 0.002]])  # medians 4, 2, 2 ms
    monkeypatch.setattr(peers, "measure", lambda fn, args: next(passes))
    row = time_layer("gemm-128", passes=3)
    assert row["numpy_s"] == 0.002
    assert row["slowest_pass_s"] == 0.004


def test_passes_below_one_are_refused():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers.py"), "gemm-128", "--passes", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "--passes must be at least 1" in out.stderr
