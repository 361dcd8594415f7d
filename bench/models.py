"""Whole models end to end: tuned TVM against untuned TVM and onnxruntime on one thread.

Each row is one model run (``search.modelruns``: import, unscheduled tasks, allocation, each
task searched, the tuned model built and timed), recorded with its host in
``bench/results/models.json`` as soon as it finishes, keyed host|model|strategy|trials|seed, so
an interrupted benchmark keeps its rows and a rerun skips them. Pin it to one core::

    taskset -c 0 .venv/bin/python bench/models.py --models resnet50 --trials 256
    taskset -c 1 .venv/bin/python bench/models.py --models bert-block --trials 256
    .venv/bin/python bench/models.py --report --docs

Models: ``resnet50`` and ``shufflenet`` (real graphs the onnx wheel ships), ``bert-block`` (a
BERT-base encoder layer at sequence 128, built with onnx.helper: search/engine/onnxgraphs.py).
``--import-db URL`` records the model runs of another database (a ``manage.py tune --onnx``
run) as rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "models.json"
MODELS = ("resnet50", "shufflenet", "bert-block", "llama3-attention-split", "flux-attention-split")
#: the library's attention layers as three-stage graphs (the design-space lever of issue 13)
SPLIT = {"llama3-attention-split": "llama3-8b-attention", "flux-attention-split": "flux-attention"}


def model_bytes(name: str) -> bytes:
    from search.engine import onnxgraphs

    if name == "bert-block":
        return onnxgraphs.transformer_block()
    if name in SPLIT:
        from search.engine.workloads import get_kernel

        s = get_kernel(SPLIT[name]).shape
        return onnxgraphs.attention(batch=s["B"], seq=s["S"], dim=s["D"])
    return onnxgraphs.light_model(f"light_{name}").read_bytes()


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("COLT_DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "colt_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(rows: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1, sort_keys=True))
    tmp.replace(RESULTS)


def row_of(model_run, name: str, wall_s: float | None) -> dict:
    from search.modelruns import overview

    o = overview(model_run)
    r = model_run.results
    return {
        "host": r.get("cpu"),
        "model": name,
        "strategy": model_run.strategy,
        "trials": model_run.total_trials,
        "seed": model_run.request.get("settings", {}).get("seed", 0),
        "settings": model_run.request.get("settings", {}),
        "tasks": len(o["tasks"]),
        "tasks_tuned": r.get("tasks_tuned"),
        "trials_done": o["trials_done"],
        "untuned_s": r["untuned_s"],
        "tuned_s": r["tuned_s"],
        "onnxruntime_s": r["onnxruntime_s"],
        "estimate_s": o["estimate_s"],
        "max_abs_diff": r["max_abs_diff"],
        "llm_calls": o["llm_calls"],
        "usd": o["usd"],
        "wall_s": wall_s,
        "threads": r["threads"],
        "date": time.strftime("%Y-%m-%d"),
        # allocation rounds (1: one allocation by the untuned latencies, before 2026-11-25 12:00)
        "rounds": model_run.summary.get("round", 1),
    }


def key(row: dict) -> str:
    return "|".join(str(row.get(k, 1)) for k in ("host", "model", "strategy", "trials", "seed", "rounds"))


def run(args) -> None:
    from search.engine.compiler import make_target  # noqa: F401 - TVM loads before the clock starts
    from search.modelruns import create_model_run, execute_model_run

    rows = load()
    for name in args.models:
        doc = {
            "target": "llvm",
            "strategy": args.strategy,
            "budget": {"trials": args.trials},
            "settings": {"seed": args.seed} | ({"preset": args.preset} if args.preset else {}),
        }
        start = time.monotonic()
        model_run = create_model_run(model_bytes(name), doc, name=name, enqueue=False)
        model_run = execute_model_run(model_run.pk, progress=print)
        if model_run.status != "succeeded":
            print(f"{name}: {model_run.status} {model_run.error}")
            continue
        row = row_of(model_run, name, time.monotonic() - start)
        rows = load()
        rows[key(row)] = row
        save(rows)
        print(json.dumps(row))


def import_db(url: str, names: list[str]) -> None:
    setup_django(url)
    from search.models import ModelRun

    rows = load()
    for model_run in ModelRun.objects.filter(status="succeeded"):
        name = next((n for n in names if n.replace("-", "") in model_run.name.replace("_", "")), model_run.name)
        wall = (model_run.finished_at - model_run.started_at).total_seconds() if model_run.started_at else None
        row = row_of(model_run, name, wall)
        rows[key(row)] = row
        print(json.dumps(row))
    save(rows)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def report() -> str:
    order = ("host", "model", "strategy", "trials", "seed", "rounds")
    rows = sorted(load().values(), key=lambda r: tuple(r.get(k, 1) for k in order))
    lines = [
        "| host | model | strategy | trials (total) | allocation rounds | tasks tuned / all | untuned TVM ms "
        "| tuned TVM ms (min-max) | onnxruntime ms | speedup vs untuned | tuned vs onnxruntime | max abs diff "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tuned, ort, untuned = r["tuned_s"], r["onnxruntime_s"], r["untuned_s"]
        diff = "mismatch" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.2g}"
        lines.append(
            f"| {r['host']} | {r['model']} | {r['strategy']} | {r['trials']} | {r.get('rounds', 1)} "
            f"| {r['tasks_tuned']} / {r['tasks']} "
            f"| {ms(untuned[0])} | {ms(tuned[0])} ({ms(tuned[1])}-{ms(tuned[2])}) | {ms(ort[0])} "
            f"| {untuned[0] / tuned[0]:.2f}x | {ort[0] / tuned[0]:.2f}x | {diff} "
            f"| {r['wall_s']:.0f} |"
        )
    if not rows:
        lines.append("| - | no rows yet | | | | | | | | | | | |")
    spread = [r["tuned_s"][2] / r["tuned_s"][1] for r in rows if r["tuned_s"][1]]
    note = (
        "\n\nTimings: median of 5 runs after a warm-up (untuned: 2); tuned spread max/min "
        f"{statistics.median(spread):.2f} (median)."
        if spread
        else ""
    )
    return "\n".join(lines) + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bert-block"], choices=MODELS)
    parser.add_argument("--strategy", default="mcts-random")
    parser.add_argument("--trials", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--docs", action="store_true")
    parser.add_argument("--import-db", default=None, metavar="URL")
    args = parser.parse_args()
    if args.import_db:
        import_db(args.import_db, list(MODELS))
        return
    if args.report:
        body = report()
        print(body)
        if args.docs:
            sys.path.insert(0, str(ROOT / "bench"))
            from _report import write_section

            write_section("models", "### Whole models: tuned TVM vs untuned TVM vs onnxruntime (one thread)\n\n" + body)
        return
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(f"sqlite:///{tmp}/models.sqlite3")
        run(args)


if __name__ == "__main__":
    main()
