"""Compare strategies at equal trial budgets on the papers' layers.

    .venv/bin/python bench/strategies.py --trials 32
    .venv/bin/python bench/strategies.py --kernels gemm-512 --strategies mcts-random --trials 16
    .venv/bin/python bench/strategies.py --kernels gemm-512 llama3-8b-attention \
        --strategies colt single-llm mcts-random --trials 32 --section fleet     # ALGORITHM.md section 7

Writes a Markdown table into docs/benchmarks.md (section "strategies") and the raw numbers
to bench/out/strategies.json. Timings are real measurements on this host: rerun on a quiet
machine, and compare ratios rather than absolute numbers across hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ROOT, table, write_section  # noqa: E402
from search.engine import events as ev  # noqa: E402
from search.engine.request import Budget, RunRequest, SearchSettings  # noqa: E402
from search.engine.strategies import STRATEGIES  # noqa: E402
from search.engine.tuning import tune  # noqa: E402
from search.services import load_fleet, local_servers  # noqa: E402


class CallTimer:
    """Sums the latency of every LLM call of a run, keeps its progress curve (best latency
    and USD after each measurement round) for the sample-efficiency plots, and where its nodes
    came from (:meth:`origins`)."""

    def __init__(self):
        self.llm_s = 0.0
        self.curve = []
        self.origin: dict[int, str] = {}  # node id -> what made it (_origin_of)
        self._measured: list[int] = []
        self._improved: list[int] = []

    def emit(self, event):
        if isinstance(event, ev.LLMCallRecorded):
            self.llm_s += event.latency_s
        elif isinstance(event, ev.Progress):
            self.curve.append([event.trials, event.best_latency_s, event.usd, round(event.elapsed_s, 2)])
        elif isinstance(event, ev.NodeCreated):
            self.origin[event.node_id] = self._origin_of(event)
        elif isinstance(event, ev.NodeMeasured):
            self._measured.append(event.node_id)
        elif isinstance(event, ev.BestImproved):
            self._improved.append(event.node_id)

    @staticmethod
    def _origin_of(event: ev.NodeCreated) -> str:
        """What made a node: the origin the search recorded (events.ORIGINS), an LLM's nodes
        named by model (``llm:<model>``, ``llm-refine:<model>``)."""
        if event.origin in (ev.LLM_MOVE, ev.LLM_REFINE):
            return f"{event.origin}:{event.created_by}"
        return "random-pick" if event.origin == ev.RANDOM else event.origin or "unknown"

    def origins(self) -> dict:
        """Per origin (``sample``, ``prior``, ``refine``, ``llm:<model>``...): the nodes it added,
        those measured, and the measurements that set a new best; ``best``: the final best's."""
        out: dict[str, dict] = {}
        for what, ids in (("nodes", self.origin), ("measured", self._measured), ("improved", self._improved)):
            for node_id in ids:
                cell = out.setdefault(self.origin.get(node_id, "unknown"), {"nodes": 0, "measured": 0, "improved": 0})
                cell[what] += 1
        best = self.origin.get(self._improved[-1], "unknown") if self._improved else None
        return {"by": out, "best": best}


from search.engine.workloads import PAPER_LAYERS, get_kernel  # noqa: E402


def host_info() -> dict:
    """What the numbers were measured on: rows from different CPUs are not comparable."""
    from tvm.target import codegen

    return {
        "cpu": codegen.llvm_get_system_cpu(),
        "cores": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "calibration_ms": calibration_ms(),
        "machine_id": machine_id(),
    }


def machine_id() -> str:
    """This machine's boot, six hex digits: the project's machines are lent per session, and two
    of one CPU model ran 26-29% apart, so rows pair only with rows of the same boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:6]
    except OSError:
        return ""


def machine(host: dict) -> str:
    """The name rows are grouped and paired under: the CPU model, and for rows that recorded their
    boot, that boot (``emeraldrapids-19f57b``); older rows, without one, under the CPU model alone."""
    return f"{host['cpu']}-{host['machine_id']}" if host.get("machine_id") else host["cpu"]


def calibration_ms(repeat: int = 7) -> float:
    """How fast this machine runs a fixed piece of work (ms, the fastest of ``repeat``): two
    machines of one CPU model differed by 26-29% in numpy's time for the same layers
    (emeraldrapids, 2026-12-05), so rows from machines whose calibrations differ do not compare."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        sum(i * i for i in range(300_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1e3, 3)


def fmt_ms(seconds):
    return f"{seconds * 1e3:.3f}" if seconds else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", nargs="+", default=["gemm-512", *PAPER_LAYERS])
    parser.add_argument("--strategies", nargs="+", default=["mcts-random", "evolutionary"], choices=list(STRATEGIES))
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", default="strategies")
    parser.add_argument("--no-docs", action="store_true", help="print the table, leave docs/ alone")
    parser.add_argument("--fleet", default="local", help="for colt/single-llm: 'local' or a fleet JSON file")
    args = parser.parse_args()
    with_llm = any(STRATEGIES[s].uses_llm for s in args.strategies)
    fleet = load_fleet(args.fleet) if with_llm else None
    with local_servers(with_llm and args.fleet == "local"):
        run_all(args, fleet, with_llm)


def results_path(args) -> Path:
    return ROOT / "bench" / "results" / f"{args.section}.json"


def save(args, summary: dict, row: list) -> None:
    path = results_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored[f"{summary['kernel']['name']}|{summary['strategy']}|{args.trials}"] = {"row": row, "summary": summary}
    path.write_text(json.dumps(stored, indent=1))


def run_all(args, fleet, with_llm: bool) -> None:
    rows, raw = [], []
    for name in args.kernels:
        spec = get_kernel(name)
        for strategy in args.strategies:
            started = time.perf_counter()
            timer = CallTimer()
            request = RunRequest(
                kernel=spec,
                strategy=strategy,
                budget=Budget(trials=args.trials),
                settings=SearchSettings(seed=args.seed),
                fleet=fleet if STRATEGIES[strategy].uses_llm else None,
            ).checked()  # single-llm keeps the fleet's largest model
            outcome = tune(request, sink=timer)
            wall = time.perf_counter() - started
            s = outcome.summary()
            s["wall_s"] = wall
            s["llm_s"] = timer.llm_s
            s["curve"] = timer.curve
            s["host"] = host_info()
            raw.append(s)
            row = [
                name,
                strategy,
                s["trials"],
                fmt_ms(s["baseline_latency_s"]),
                fmt_ms(s["best_latency_s"]),
                f"{s['speedup']:.1f}x" if s["speedup"] else "-",
                f"{s['gflops']:.1f}" if s["gflops"] else "-",
                f"{wall:.0f}",
            ]
            if with_llm:
                llm = s.get("llm") or {}
                row += [
                    str(llm.get("llm_calls", "-")),
                    f"{timer.llm_s:.0f}" if llm else "-",
                    f"{llm['usd']:.6f}" if llm else "-",
                    f"{llm['largest_share']:.0%}" if llm else "-",
                    str(llm.get("escalations", "-")),
                ]
            rows.append(row)
            print(" | ".join(str(c) for c in row), flush=True)
            save(args, s, row)  # at once: a long benchmark that is interrupted keeps what it measured

    headers = ["kernel", "strategy", "trials", "unscheduled (ms)", "best (ms)", "speedup", "GFLOP/s", "wall time (s)"]
    if with_llm:
        headers += ["LLM calls", "LLM time (s)", "USD", "largest-model share", "escalations"]
    # results accumulate across invocations (keyed by kernel, strategy, trials), so a rerun of
    # one kernel updates its rows and keeps the others
    stored = json.loads(results_path(args).read_text()) if results_path(args).exists() else {}
    rows = [v["row"] for k, v in stored.items() if k.endswith(f"|{args.trials}") and len(v["row"]) == len(headers)]
    md = table(headers, rows)
    print(md)
    if not args.no_docs:
        h = host_info()
        host = f"{h['cpu']}, {h['machine']}, {h['cores']} cores, {h['python']}"
        title = "LLM fleet vs one LLM vs no LLM" if with_llm else "Strategies at equal trials"
        body = (
            f"### {title} ({args.trials} measured trials, seed {args.seed})\n\n"
            f"Measured {time.strftime('%Y-%m-%d')} on this project's CI machine kind ({host}). Rerun with "
            f"`bench/strategies.py --section {args.section} --trials {args.trials}` (add `--kernels`/`--strategies` "
            "to rerun some rows; every row is kept from the last run of its kernel and strategy in "
            f"`bench/results/{args.section}.json`). Timing: number 3, repeat 5, min_repeat_ms 100; "
            "every best schedule was checked against numpy.\n\n" + md
        )
        write_section(args.section, body)


if __name__ == "__main__":
    main()
