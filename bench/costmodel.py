"""How well cost models rank schedules they were not trained on, from few records (offline).

A tree run at 64 trials asks its cost model to pick each measurement batch after 8, 16, ... 56
records; MetaSchedule's XGBoost model was made for thousands. This benchmark replays what the
benchmark rows measured (``bench/out/records/<cpu>/``, every tree-strategy row saves its measured
schedules) and asks each model variant, trained on some records, to rank others it has not seen:

- ``within``: trained on ``t`` random records of one run, ranking the rest of that run (what a
  run's model does between rounds);
- ``cross``: trained on all of one run, ranking another seed's run of the same layer (schedules
  from parts of the space the model has not seen).

Per (training set, test set): ``regret@8``, the fastest of the model's 8 best-ranked test schedules
over the fastest test schedule (1.0: the batch would have held the best; the search measures 8 a
round), and Spearman's rho between score and throughput. Features are extracted once per schedule;
no schedule is measured again. ``--variants`` picks the models, ``--report`` prints the table::

    taskset -c 0 .venv/bin/python bench/costmodel.py --layers deepseek-r1-moe flux-conv2d
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _store  # noqa: E402
from bench._report import table, write_section  # noqa: E402
from bench.forms import bench_kernel  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402
from search.engine.compiler import CostModel, SearchSpace  # noqa: E402

RECORDS = _store.RECORDS
RESULTS = Path(__file__).resolve().parent / "results" / "costmodel.json"
BATCH = 8


def load_runs(cpu: str, layer: str, configs: tuple[str, ...]) -> dict[str, list[tuple[list, float]]]:
    """This layer's runs on this CPU model: run key -> [(trace, latency_s)]."""
    runs = {}
    for path in sorted((RECORDS / cpu).glob("*.json")):
        data = json.loads(path.read_text())
        parts = path.stem.split("_")
        if data["layer"] != layer or (configs and not any(c in parts for c in configs)):
            continue
        runs[path.stem] = data["records"]
    return runs


def features(space: SearchSpace, records) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-store feature rows of each record's schedule, and its latency."""
    model = CostModel(space, np.random.default_rng(0))
    cands = [space.load(trace) for trace, _ in records]
    rows = model.model.extractor.extract_from(space.context, model._measure_candidates(cands))
    return [r.numpy().astype("float32") for r in rows], np.array([lat for _, lat in records], dtype=float)


# --- the variants: fit(xs, ratios) -> predict(xs) -> scores (higher: faster) ----------------------
Fit = Callable[[list[np.ndarray], np.ndarray], Callable[[list[np.ndarray]], np.ndarray]]


def _ms(**config) -> Fit:
    """MetaSchedule's XGBModel (pack-sum of per-store rows, weighted squared error on throughput)."""

    def fit(xs, ys):
        from tvm.s_tir import meta_schedule as ms

        model = ms.cost_model.XGBModel(
            num_warmup_samples=0, num_tuning_cores=1, config=ms.cost_model.xgb_model.XGBConfig(nthread=1, **config)
        )
        model.verbose_eval = 0
        model._train(xs=xs, ys=ys)
        return lambda test: model._predict(xs=test)

    return fit


def _vector(xs: list[np.ndarray]) -> np.ndarray:
    """One row per schedule: the sum and the max of its per-store rows, and how many stores."""
    return np.stack([np.concatenate([x.sum(0), x.max(0), [len(x)]]) for x in xs])


def _vec_xgb(objective: str, rounds: int = 100, log: bool = False, **params) -> Fit:
    def fit(xs, ys):
        import xgboost as xgb

        label = np.log(np.maximum(ys, 1e-6)) if log else ys
        dm = xgb.DMatrix(_vector(xs), label=label)
        if objective.startswith("rank"):
            dm.set_group([len(ys)])
        config = {"objective": objective, "max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0, **params}
        booster = xgb.train(config, dm, num_boost_round=rounds)
        return lambda test: booster.predict(xgb.DMatrix(_vector(test)))

    return fit


def _ridge(alpha: float = 1.0) -> Fit:
    def fit(xs, ys):
        x = np.log1p(np.abs(_vector(xs)))
        mu, sd = x.mean(0), x.std(0) + 1e-9
        z = (x - mu) / sd
        w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (ys - ys.mean()))
        return lambda test: ((np.log1p(np.abs(_vector(test))) - mu) / sd) @ w

    return fit


def _random(xs, ys):
    rng = np.random.default_rng(len(ys))
    return lambda test: rng.uniform(size=len(test))


VARIANTS: dict[str, Fit] = {
    "random": _random,  # the floor: what a blind model's batch holds
    "ms": _ms(),
    "ms-d3": _ms(max_depth=3),
    "ms-d6": _ms(max_depth=6),
    "ms-eta05": _ms(eta=0.05),
    "vec-rank": _vec_xgb("rank:pairwise"),
    "vec-rank-d2": _vec_xgb("rank:pairwise", max_depth=2),
    "vec-reg": _vec_xgb("reg:squarederror"),
    "vec-log": _vec_xgb("reg:squarederror", log=True),
    "ridge": _ridge(10.0),
}


def ratios(lat: np.ndarray) -> np.ndarray:
    return lat.min() / lat


def score(pred: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """(regret@8, Spearman's rho between score and throughput)."""
    from scipy.stats import spearmanr

    top = np.argsort(-pred, kind="stable")[:BATCH]
    rho = spearmanr(pred, -lat).statistic
    return float(lat[top].min() / lat.min()), float(0.0 if np.isnan(rho) else rho)


def evaluate(
    space: SearchSpace, layer: str, runs: dict, variants: list[str], sizes: list[int], splits: int
) -> list[dict]:
    data = {k: features(space, recs) for k, recs in runs.items()}
    rows = []
    for name in variants:
        fit = VARIANTS[name]
        for t in sizes:  # within one run: t records for training, the rest to rank
            out = []
            for xs, lat in data.values():
                rng = np.random.default_rng(t)
                for _ in range(splits):
                    order = rng.permutation(len(xs))
                    train, test = order[:t], order[t:]
                    if len(test) < 2 * BATCH:
                        continue
                    predict = fit([xs[i] for i in train], ratios(lat[train]))
                    out.append(score(predict([xs[i] for i in test]), lat[test]))
            rows.append(_row(layer, name, f"within t={t}", out))
        out = []
        for a, (xa, la) in data.items():  # all of one run, ranking another seed's run
            predict = fit(xa, ratios(la))
            for b, (xb, lb) in data.items():
                if a != b:
                    out.append(score(predict(xb), lb))
        rows.append(_row(layer, name, "cross", out))
        for r in rows[-len(sizes) - 1 :]:
            print(
                f"{layer:22} {name:12} {r['protocol']:12} regret@8 {r['regret']:.3f} rho {r['rho']:+.3f} (n={r['n']})",
                flush=True,
            )
    return rows


def _row(layer: str, variant: str, protocol: str, out: list[tuple[float, float]]) -> dict:
    regrets = [r for r, _ in out]
    return {
        "layer": layer,
        "variant": variant,
        "protocol": protocol,
        "n": len(out),
        "regret": statistics.geometric_mean(regrets) if regrets else float("nan"),
        "rho": statistics.fmean(rho for _, rho in out) if out else float("nan"),
    }


LEAD = (
    "Produced by `bench/costmodel.py` from the schedules the benchmark rows measured (raw rows in "
    "`bench/results/costmodel.json`). Each cell: the geometric mean over the layers of `regret@8` (the fastest "
    "of the model's 8 best-ranked schedules over the fastest schedule of the test set: 1.000 is a batch that "
    "holds the best) / the mean of Spearman's rho between score and throughput. `within t=16`: trained on 16 "
    "random records of a run, ranking its other records (three splits per run); `cross`: trained on a whole "
    "run, ranking another seed's run of the same layer. `random` is a blind model; `ms` is MetaSchedule's "
    "XGBModel as the search uses it; `ms-*` change its depth or learning rate; `vec-*` score one row per "
    "schedule (sum and max of its per-store features) with XGBoost's pairwise rank, squared error or squared "
    "error on log throughput; `ridge` is a linear model on the same rows."
)


def report() -> str:
    stored = _store.read(RESULTS, {})
    parts = ["### Cost models on few records (offline, the rows' measured schedules)", LEAD]
    for mid, block in stored.items():
        layers = sorted({r["layer"] for r in block["rows"]})
        by: dict[tuple[str, str], list[dict]] = {}
        for r in block["rows"]:
            by.setdefault((r["variant"], r["protocol"]), []).append(r)
        protocols = sorted({p for _, p in by}, key=lambda p: (p == "cross", p))
        rows = []
        for variant in dict.fromkeys(v for v, _ in by):
            cells = [variant]
            for p in protocols:
                rs = by.get((variant, p), [])
                regret = statistics.geometric_mean(r["regret"] for r in rs) if rs else float("nan")
                cells.append(f"{regret:.3f} / {statistics.fmean(r['rho'] for r in rs):+.2f}" if rs else "-")
            rows.append(cells)
        parts.append(f"#### {mid} ({block['date']}; {', '.join(layers)})")
        parts.append(table(["variant", *(f"{p}: regret@8 / rho" for p in protocols)], rows))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", nargs="+", default=["deepseek-r1-moe", "flux-conv2d", "llama4-scout-mlp"])
    parser.add_argument("--configs", nargs="*", default=["default"], help="rows of these configurations only")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    parser.add_argument("--docs", action="store_true", help="with --report: write it into docs/benchmarks.md")
    args = parser.parse_args()
    if args.report:
        text = report()
        print(text)
        if args.docs:
            write_section("costmodel", text)
        return
    host = host_info()
    rows = []
    for layer in args.layers:
        runs = load_runs(host["cpu"], layer, tuple(args.configs))
        if len(runs) < 2:
            print(f"{layer}: {len(runs)} run(s) of {args.configs} on {host['cpu']}; need 2", file=sys.stderr)
            continue
        rows += evaluate(SearchSpace(bench_kernel(layer), "llvm"), layer, runs, args.variants, args.sizes, args.splits)
    save(host, rows)


def save(host: dict, rows: list[dict]) -> None:
    """Merge ``rows`` into this machine's block (a later row of a layer, variant and protocol replaces
    the earlier; streams on several cores evaluate different layers into one file)."""

    def merge(stored: dict) -> dict:
        block = stored.setdefault(machine(host), {"host": host, "rows": []})
        fresh = {(r["layer"], r["variant"], r["protocol"]) for r in rows}
        block["rows"] = [r for r in block["rows"] if (r["layer"], r["variant"], r["protocol"]) not in fresh] + rows
        block["date"] = time.strftime("%Y-%m-%d %H:%M")
        return stored

    _store.update(RESULTS, {}, merge)


if __name__ == "__main__":
    main()
