"""What a layer's design space holds before any search: random samples, each built, checked
against numpy and timed once. A run's root population is such a draw (``SearchSpace.sample``);
how many samples compute a wrong result, and how fast the best and the median are, is what a
formulation of the layer gives the search to start from (bench/forms.py's old formulations
against the library's, e.g. ``flux-attention-staged`` against ``flux-attention``)::

    taskset -c 0 .venv/bin/python bench/samples.py --kernels flux-attention flux-attention-staged --seeds 0 1 2

Each (machine, layer, seed, samples) row is saved to bench/results/samples.json as it finishes;
``--report`` prints the table of what is stored.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _store  # noqa: E402
from bench._report import table  # noqa: E402
from bench.forms import bench_kernel  # noqa: E402
from bench.strategies import host_info, machine  # noqa: E402
from search.engine.compiler import SearchSpace  # noqa: E402
from search.engine.measure import LocalMeasurer, MeasureConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "samples.json"
#: a sample is timed briefly: the question is its order of magnitude, not its last percent
TIMING = MeasureConfig(number=2, repeat=3, min_repeat_ms=50, timeout_s=30.0)


def draw(layer: str, seed: int, samples: int) -> dict:
    """``samples`` random points of the layer's design space, drawn as a run of that seed draws its
    root population, each measured; the row (latencies in seconds, None where not ok)."""
    spec = bench_kernel(layer)
    space = SearchSpace(spec, "llvm", seed=seed)
    rng = np.random.default_rng(seed)
    measurer = LocalMeasurer(spec, "llvm", TIMING)
    start = time.perf_counter()
    statuses, latencies, sketches = [], [], []
    try:
        for _ in range(samples):
            cand = space.sample(rng)
            if cand is None:
                statuses.append("invalid")
                latencies.append(None)
                sketches.append(None)
                continue
            result = measurer.measure([cand.trace_json()])[0]
            statuses.append(result.status)
            latencies.append(result.latency_s if result.ok else None)
            sketches.append(cand.sketch)
    finally:
        measurer.close()
    return {
        "layer": layer,
        "seed": seed,
        "samples": samples,
        "sketches_total": len(space.sketches),
        "statuses": statuses,
        "latencies_s": latencies,
        "sketches": sketches,
        "wall_s": time.perf_counter() - start,
    }


def report(rows: dict) -> str:
    """Per machine and layer: samples drawn, how many were wrong or failed, the best and the
    median of the ok ones (over all seeds), and each seed's best."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows.values():
        cells.setdefault((r["machine"], r["layer"]), []).append(r)
    out = []
    for (where, layer), rs in sorted(cells.items()):
        rs.sort(key=lambda r: r["seed"])
        counts = Counter(s for r in rs for s in r["statuses"])
        ok = sorted(t for r in rs for t in r["latencies_s"] if t is not None)
        bests = [min((t for t in r["latencies_s"] if t is not None), default=None) for r in rs]
        out.append(
            [
                where,
                layer,
                ", ".join(str(r["seed"]) for r in rs),
                sum(counts.values()),
                counts.get("wrong", 0),
                sum(n for s, n in counts.items() if s not in ("ok", "wrong")),
                f"{ok[0] * 1e3:.2f}" if ok else "-",
                f"{statistics.median(ok) * 1e3:.2f}" if ok else "-",
                " / ".join(f"{b * 1e3:.2f}" if b else "-" for b in bests),
            ]
        )
    head = ["machine", "layer", "seeds", "samples", "wrong", "other failures", "best ms", "median ms", "best per seed"]
    return table(head, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", nargs="+", default=["flux-attention", "flux-attention-staged"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--report", action="store_true", help="print the table of what is stored, run nothing")
    args = parser.parse_args()
    if args.report:
        print(report(_store.read(RESULTS, {})))
        return
    host = host_info()
    where = machine(host)
    for layer in args.kernels:
        for seed in args.seeds:
            key = f"{where}|{layer}|{seed}|{args.samples}"
            if key in _store.read(RESULTS, {}):
                continue
            row = {"host": host, "machine": where, **draw(layer, seed, args.samples)}
            _store.update(RESULTS, {}, lambda data, k=key, r=row: {**data, k: r})
            counts = Counter(row["statuses"])
            ok = [t for t in row["latencies_s"] if t is not None]
            print(f"{layer} seed {seed}: {dict(counts)}, best {min(ok) * 1e3:.2f} ms" if ok else f"{layer}: none ok")


if __name__ == "__main__":
    main()
