"""LLM calls in flight at once (``llm_in_flight``) against a provider that answers over the network.

A paid provider cannot be reached from here, so the fleet is three models on one
OpenAI-compatible test server (``tests/fakellm.py``) that answers every call after a fixed
delay, as a remote API with spare capacity would (its delay does not grow with load: an upper
bound on the gain). Its replies are valid joint actions chosen from a hash of the prompt, so
a seed gives the same run whatever order concurrent calls arrive in; they name the small model
half the time, the middle and the largest a quarter each. Everything else is real: the tree
search, LiteLLM over HTTP, TVM builds and timings on this host. Each row is one colt run at
``llm_in_flight`` N; it records the wall-clock, the LLM calls, the seconds at least one call
was in flight (what the search waited) and the mean number in flight then. Rows are saved as
they finish to ``bench/results/inflight.json`` (keyed by host, kernel, delay, N, seed)::

    taskset -c 0 .venv/bin/python bench/inflight.py --kernel gemm-512 --trials 32 --delay 2 --in-flight 1 3
    .venv/bin/python bench/inflight.py --report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.strategies import host_info, machine  # noqa: E402
from search.engine import events as ev  # noqa: E402
from search.engine.llm import Fleet, ModelSpec  # noqa: E402
from search.engine.request import Budget, RunRequest, SearchSettings  # noqa: E402
from search.engine.tuning import tune  # noqa: E402
from search.engine.workloads import get_kernel  # noqa: E402
from tests.fakellm import FakeLLMServer, Script  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "inflight.json"
MUTATORS = ["MutateTileSize", "MutateUnroll", "MutateParallel", "MutateComputeLocation"]
MODELS = (("small", 135e6), ("mid", 270e6), ("large", 494e6))
NEXT = ("small", "small", "mid", "large")  # what the replies name as the next model


class Calls(ev.NullSink):
    """Counts the run's LLM calls."""

    def __init__(self):
        self.calls = 0

    def emit(self, event):
        if isinstance(event, ev.LLMCallRecorded):
            self.calls += 1


def fake_fleet(server: FakeLLMServer, delay_s: float) -> Fleet:
    def reply(body):
        n = int(hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:8], 16)
        return json.dumps({"next_model": NEXT[n % 4], "mutators": ["MutateTileSize", MUTATORS[(n >> 4) % 4]]})

    models = []
    for name, params in MODELS:
        server.scripts[name] = Script(reply, delay_s=delay_s, prompt_tokens=450, completion_tokens=30)
        models.append(ModelSpec(name, f"openai/{name}", params, 0.2 * params / 1e9, 0.6 * params / 1e9,
                                server.api_base, None, 60.0))  # fmt: skip
    return Fleet.of(models)


def run_one(kernel: str, trials: int, delay_s: float, in_flight: int, seed: int) -> dict:
    server = FakeLLMServer()
    try:
        request = RunRequest(
            kernel=get_kernel(kernel),
            strategy="colt",
            budget=Budget(trials=trials),
            settings=SearchSettings(seed=seed, llm_in_flight=in_flight),
            fleet=fake_fleet(server, delay_s),
        ).checked()
        sink = Calls()
        started = time.perf_counter()
        outcome = tune(request, sink=sink)
        wall = time.perf_counter() - started
    finally:
        server.close()
    s = outcome.summary()
    return {
        "host": host_info(),
        "kernel": kernel,
        "trials": s["trials"],
        "delay_s": delay_s,
        "in_flight": in_flight,
        "seed": seed,
        "wall_s": wall,
        "llm_calls": sink.calls,
        "llm_busy_s": server.busy_s()[0],
        "mean_in_flight": server.busy_s()[1] / server.busy_s()[0] if server.answered else 0.0,
        "peak_in_flight": server.peak_in_flight,
        "best_s": s["best_latency_s"],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def report() -> str:
    rows = load().values()
    cells: dict = {}
    for r in rows:
        cells.setdefault((machine(r["host"]), r["kernel"], r["trials"], r["delay_s"], r["in_flight"]), []).append(r)
    lines = [
        "| host | kernel | trials | provider delay s | llm_in_flight | seeds | wall s: median (min-max) | "
        "LLM calls | s waiting on calls | mean calls in flight | best ms (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (host, kernel, trials, delay, n), rs in sorted(cells.items()):
        walls = sorted(r["wall_s"] for r in rs)
        bests = [r["best_s"] for r in rs if r["best_s"]]
        calls = statistics.median(r["llm_calls"] for r in rs)
        waited = statistics.median(r["llm_busy_s"] for r in rs)
        mean = statistics.median(r["mean_in_flight"] for r in rs)
        best = f"{statistics.median(bests) * 1e3:.3f}" if bests else "-"
        seeds = ", ".join(str(r["seed"]) for r in rs)
        lines.append(
            f"| {host} | {kernel} | {trials} | {delay:g} | {n} | {seeds} | "
            f"{statistics.median(walls):.0f} ({walls[0]:.0f}-{walls[-1]:.0f}) | {calls:.0f} | {waited:.0f} | "
            f"{mean:.2f} | {best} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="gemm-512")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the provider takes per call")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    for seed in args.seeds:
        for n in args.in_flight:
            key = f"{machine(host_info())}|{args.kernel}|{args.trials}|{args.delay:g}|{n}|{seed}"
            if key in load():
                continue
            row = run_one(args.kernel, args.trials, args.delay, n, seed)
            stored = load()
            stored[key] = row
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(stored, indent=1))
            print(f"{key}: {row['wall_s']:.0f} s, {row['llm_calls']} calls, peak {row['peak_in_flight']}", flush=True)


if __name__ == "__main__":
    main()
