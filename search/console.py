"""An event sink that shows a run's progress on a terminal, and the closing summary."""

from __future__ import annotations

import sys
from typing import TextIO

from .engine import events as ev


def fmt_latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


class ConsoleSink:
    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.flops = 0.0

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.flops = event.flops
            self._print(
                f"tuning {event.kernel.get('name') or event.kernel['op']} on {event.target} with "
                f"{event.strategy}: {event.budget['trials']} trials, {event.flops / 1e6:.1f} MFLOP per call"
            )
        elif isinstance(event, ev.BaselineMeasured):
            self._print(f"unscheduled kernel: {fmt_latency(event.latency_s)} ({event.status})")
        elif isinstance(event, ev.BestImproved):
            speedup = f", {event.speedup:.1f}x" if event.speedup else ""
            self._print(
                f"  trial {event.trial:4d}: new best {fmt_latency(event.latency_s)} "
                f"({event.gflops:.1f} GFLOP/s{speedup})"
            )
        elif isinstance(event, ev.Progress):
            best = fmt_latency(event.best_latency_s)
            gf = f" ({self.flops / event.best_latency_s / 1e9:.1f} GFLOP/s)" if event.best_latency_s else ""
            llm = f", {event.llm_calls} LLM calls, ${event.usd:.4f}" if event.llm_calls else ""
            self._print(
                f"[{event.trials}/{event.trials_budget} trials] best {best}{gf}, "
                f"{event.nodes} nodes{llm}, {event.elapsed_s:.0f} s"
            )
        elif isinstance(event, ev.NodeMeasured) and self.verbose:
            self._print(f"    node {event.node_id}: {event.status} {fmt_latency(event.latency_s)} {event.error}")
        elif isinstance(event, ev.Escalation):
            verdict = "kept" if event.accepted else "not better"
            self._print(
                f"  escalation: {event.small_model} regressed {event.streak}x at node {event.node_id}; "
                f"{event.large_model} corrected ({verdict})"
            )
        elif isinstance(event, ev.LLMCallRecorded) and self.verbose:
            self._print(
                f"    call {event.call_id} {event.model}: {event.outcome} {event.mutators} -> {event.next_model}"
            )
        elif isinstance(event, ev.RunFinished) and event.status != "succeeded":
            self._print(f"run {event.status}: {event.reason}")


def summary_lines(summary: dict) -> list[str]:
    speedup = f"{summary['speedup']:.1f}x" if summary.get("speedup") else "-"
    gflops = f"{summary['gflops']:.1f}" if summary.get("gflops") else "-"
    rows = [
        ("kernel", summary["kernel"].get("name") or summary["kernel"]["op"]),
        ("target / strategy", f"{summary['target']} / {summary['strategy']}"),
        ("trials", f"{summary['trials']} ({summary['stop_reason']})"),
        ("nodes in tree", str(summary["nodes"])),
        ("baseline latency", fmt_latency(summary["baseline_latency_s"])),
        ("best latency", fmt_latency(summary["best_latency_s"])),
        ("speedup", speedup),
        ("GFLOP/s", gflops),
        ("time spent", f"{summary['elapsed_s']:.1f} s"),
    ]
    if summary.get("measure_s"):  # where the wall-clock went (the tree strategies measure through the measurer)
        rows[-1] = (
            "time spent",
            f"{summary['elapsed_s']:.1f} s ({summary['measure_s']:.1f} s building, checking and timing "
            f"candidates, of which {summary['build_s']:.1f} s building)",
        )
    if summary.get("coarse_trials"):
        rows.append(("timed by two runs", f"{summary['coarse_trials']} trials (slower than the timing cutoff)"))
    if summary.get("sketches_total"):  # the tree strategies: which sketches the run reached
        rows.append(("sketches measured", f"{summary['sketches']} of {summary['sketches_total']}"))
    if summary.get("evaluations"):  # the tree strategies' cost-model screening
        rows.insert(4, ("cost-model evals", f"{summary['evaluations_per_trial']:.0f} per measured trial"))
    warm = summary.get("warm_start")
    if warm:
        rows.insert(
            4,
            ("warm start", f"{warm['records']} schedules, {warm['kernels']} kernel(s), {warm['seeded']} seeded"),
        )
    origins = summary.get("origins")
    if origins and origins["by"]:
        measured = ", ".join(f"{k} {c['measured']}" for k, c in origins["by"].items() if c["measured"])
        best = f"; the best: {origins['best']}" if origins["best"] else ""
        rows.append(("measured by origin", f"{measured or 'none'}{best}"))
    llm = summary.get("llm")
    if llm:
        rows += [
            ("LLM calls", f"{llm['llm_calls']} (${llm['usd']:.6f})"),
            ("largest-model share", f"{llm['largest_share']:.0%} ({llm['largest_model']})"),
            ("escalations", str(llm["escalations"])),
        ]
        proposed = summary.get("llm_proposals")
        if proposed:
            best = f"the best is {proposed['best_from']}'s" if proposed["best_from"] else "the best is not an LLM's"
            rows.append(("LLM proposals", f"{proposed['nodes']} nodes, {proposed['measured']} measured; {best}"))
    width = max(len(k) for k, _ in rows)
    lines = ["summary"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if llm:
        lines.append("  per model:")
        lines.append(
            f"    {'model':<20} {'calls':>5} {'share':>6} {'prompt':>7} {'compl.':>6} {'USD':>10} "
            f"{'hit rate':>8} {'own':>5} {'mean s':>6}  errors"
        )
        for name, m in llm["models"].items():
            share = m["calls"] / llm["llm_calls"] if llm["llm_calls"] else 0.0
            errors = ", ".join(f"{k} {v}" for k, v in sorted(m["errors_by_kind"].items())) or "-"
            own = f"{m['own_share']:.0%}" if "own_share" in m else "-"
            lines.append(
                f"    {name:<20} {m['calls']:>5} {share:>6.0%} {m['prompt_tokens']:>7} {m['completion_tokens']:>6} "
                f"{m['usd']:>10.6f} {m['hit_rate']:>8.0%} {own:>5} "
                f"{m['mean_latency_s']:>6.1f}  {errors}"
            )
    return lines
