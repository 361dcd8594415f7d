"""How much the other core's stream moves a timing on this one.

Benchmarks run one stream per core. This times one fixed schedule per layer on core 0 (the
measurer the search uses: number 3, repeat 5, min_repeat_ms 100), five times each, while core 1
is (a) idle, (b) serving LLM calls back to back (the local fleet's largest model, one thread, as
a colt stream's LLM calls do), (c) timing another layer's schedule in a loop (as an mcts-random
or evolutionary stream does). Schedules are each layer's fastest record on this host
(``bench/out/records``). Prints one line per (layer, load) and saves them to
``bench/results/interference.json``. Run with nothing else running::

    .venv/bin/python bench/interference.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["COLT_LOCAL_LLM_PORT"] = "18181"  # not the ports a benchmark stream's servers use

from bench.ablation import RECORDS  # noqa: E402
from bench.strategies import host_info  # noqa: E402
from search.engine.measure import LocalMeasurer  # noqa: E402
from search.engine.workloads import get_kernel  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "interference.json"
LAYERS = ("flux-conv2d", "llama4-scout-mlp")
REPEATS = 5


def fastest(cpu: str, layer: str) -> list | None:
    best = None
    for path in (RECORDS / cpu).glob(f"{cpu}_{layer}_*.json"):
        for trace, latency in json.loads(path.read_text())["records"]:
            if best is None or latency < best[1]:
                best = (trace, latency)
    return best[0] if best else None


def times(measurer: LocalMeasurer, trace: list) -> list[float]:
    out = []
    for _ in range(REPEATS):
        (res,) = measurer.measure([trace])
        if res.ok and res.latency_s:
            out.append(res.latency_s)
    return out


def llm_load(stop: threading.Event) -> None:
    """Back-to-back chat calls to the local largest model, whose server runs on core 1."""
    from search.localfleet import port_of

    port = port_of("qwen2.5-coder-0.5b")
    body = {
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "Explain loop tiling for matrix multiplication. " * 20}],
        "max_tokens": 64,
        "cache_prompt": False,
    }
    while not stop.is_set():
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(req, timeout=120).read()
        except OSError:
            time.sleep(0.5)


def main() -> None:
    cpu = host_info()["cpu"]
    os.sched_setaffinity(0, {0})
    traces = {layer: fastest(cpu, layer) for layer in LAYERS}
    if not all(traces.values()):
        sys.exit(f"no records for {', '.join(k for k, v in traces.items() if not v)} on {cpu}: run bench/ablation.py")
    measurers = {layer: LocalMeasurer(get_kernel(layer), "llvm") for layer in LAYERS}
    rows = []

    def record(load: str) -> None:
        for layer in LAYERS:
            ts = times(measurers[layer], traces[layer])
            rows.append({"layer": layer, "load": load, "ms": [t * 1e3 for t in ts]})
            print(f"{layer} with core 1 {load}: median {statistics.median(ts) * 1e3:.3f} ms "
                  f"({min(ts) * 1e3:.3f}-{max(ts) * 1e3:.3f})", flush=True)  # fmt: skip

    try:
        record("idle")
        env = {**os.environ}
        server = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-c",
             "from search.localfleet import serve; import time; serve(['qwen2.5-coder-0.5b']); time.sleep(10**6)"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        from search.localfleet import health, port_of

        deadline = time.monotonic() + 120
        while not health(port_of("qwen2.5-coder-0.5b")) and time.monotonic() < deadline:
            time.sleep(0.5)
        stop = threading.Event()
        load = threading.Thread(target=llm_load, args=(stop,), daemon=True)
        load.start()
        time.sleep(2)
        record("serving LLM calls")
        stop.set()
        load.join()
        server.terminate()
        subprocess.run(["pkill", "-f", "search.localfleet serve-one qwen2.5-coder-0.5b"], check=False)
        other = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-c",
             "import sys, json; sys.path.insert(0, '.');"
             "from bench.interference import fastest, LAYERS; from bench.strategies import host_info;"
             "from search.engine.measure import LocalMeasurer; from search.engine.workloads import get_kernel;"
             "layer = LAYERS[1]; m = LocalMeasurer(get_kernel(layer), 'llvm'); t = fastest(host_info()['cpu'], layer)\n"
             "while True: m.measure([t])"],
            cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        time.sleep(8)
        record("timing another schedule")
        other.terminate()
    finally:
        for m in measurers.values():
            m.close()
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored[f"{cpu}|{time.strftime('%Y-%m-%d %H:%M')}"] = {"host": host_info(), "rows": rows}
    RESULTS.write_text(json.dumps(stored, indent=1))


if __name__ == "__main__":
    main()
