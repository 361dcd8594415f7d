"""Measure-only hosts over TVM's RPC: a real ``tvm.exec.rpc_server`` (and a tracker) on
127.0.0.1; candidates are built here, uploaded, checked and timed there."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.engine.measure import LocalMeasurer, MeasurementHostError, RPCConfig
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.tuning import tune
from tests.conftest import FAST
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def start(args, log: Path):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for_log(log: Path, text: str, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


@pytest.fixture
def rpc_server(tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    proc = start(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)], log)
    wait_for_log(log, "bind to")
    yield RPCConfig("127.0.0.1", port), log
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def rpc_tracker(tmp_path):
    tport, sport = free_port(), free_port()
    tlog, slog = tmp_path / "tracker.log", tmp_path / "server.log"
    tracker = start(
        ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tport), "--port-end", str(tport + 1)], tlog
    )
    wait_for_log(tlog, "bind to")
    server = start(
        [
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(sport),
            "--port-end",
            str(sport + 1),
            "--tracker",
            f"127.0.0.1:{tport}",
            "--key",
            "colt-cpu",
        ],
        slog,
    )
    wait_for_log(slog, "bind to")
    time.sleep(1.0)  # the server registers with the tracker
    yield RPCConfig.parse(f"127.0.0.1:{tport}/colt-cpu"), slog
    for p in (server, tracker):
        p.terminate()
        p.wait(timeout=20)


def test_rpc_addresses_parse_and_bad_ones_are_refused():
    assert RPCConfig.parse("gpu-7.lab:9190") == RPCConfig("gpu-7.lab", 9190)
    assert RPCConfig.parse("10.0.0.2:9190/a100").key == "a100"
    for bad in ("gpu-7", ":9190", "host:port", "host:0", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            RPCConfig.parse(bad)


def test_candidates_are_checked_and_timed_on_the_rpc_host(rpc_server, gemm128, gemm_space):
    import numpy as np

    config, log = rpc_server
    cand = gemm_space.sample(np.random.default_rng(3))
    measurer = LocalMeasurer(gemm128, "llvm", FAST, rpc=config)
    try:
        base, res = measurer.measure([None, cand.trace_json()])
    finally:
        measurer.close()
    assert base.ok and res.ok and res.latency_s > 0 and res.max_error < 1e-3
    assert log.read_text().count("load_module") == 2  # both ran over there


def test_a_tree_search_and_the_evolutionary_strategy_measure_through_a_tracker(rpc_tracker, gemm128):
    config, log = rpc_tracker
    for strategy in ("mcts-random", "evolutionary"):
        request = RunRequest(
            kernel=gemm128,
            strategy=strategy,
            budget=Budget(trials=4),
            timing=FAST,
            settings=SearchSettings.paper(measure_batch=2, expansions_per_round=4, seed=1),
        ).checked()
        outcome = tune(request, rpc=config)
        assert outcome.result.trials == 4 and outcome.result.best is not None, strategy
    assert log.read_text().count("load_module") >= 8


def test_an_unreachable_measurement_host_stops_the_run_with_the_reason(gemm128):
    down = RPCConfig("127.0.0.1", free_port())
    with pytest.raises(MeasurementHostError, match=f"RPC host 127.0.0.1:{down.port}"):
        tune(RunRequest(kernel=gemm128, budget=Budget(trials=4), timing=FAST).checked(), rpc=down)
    with pytest.raises(ValueError, match="needs an RPC tracker"):
        tune(
            RunRequest(kernel=gemm128, strategy="evolutionary", budget=Budget(trials=4), timing=FAST).checked(),
            rpc=RPCConfig("127.0.0.1", 1),
            baseline_latency=1.0,
        )
