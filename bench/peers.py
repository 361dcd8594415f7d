"""What a user would otherwise run: each layer as numpy calls on one thread (OpenBLAS).

The same composite of calls as the layer (attention: two batched matmuls around a softmax; the
gated MLP: three matmuls and SiLU; conv2d: im2col and one GEMM), in float32, each checked
against the layer's reference. Saved per host to bench/results/peers.json::

    taskset -c 0 .venv/bin/python bench/peers.py

Each layer is timed in several passes (``--passes``, 3 by default), each the median of five
repeats; the row keeps the fastest pass and records the slowest: on a shared VM whose neighbours
load it, single passes read numpy's time up to 1.7x apart (``znver4-0875cd``, 2026-12-07: MoE 1.99-3.37 ms).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS: one thread, like the tuned kernels

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.strategies import host_info, machine  # noqa: E402
from search.engine.workloads import PAPER_LAYERS, check_output, get_kernel, make_inputs, reference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention(s, q, k, v):
    return _softmax(np.matmul(q, k.transpose(0, 2, 1)) * np.float32(1 / np.sqrt(s["D"]))) @ v


def gemm(s, a, b):
    return a @ b


def gated_mlp(s, x, w1, w3, w2):
    g = x @ w1
    return (g / (1 + np.exp(-g)) * (x @ w3)) @ w2


def conv2d(s, x, w):
    pad, st = s.get("pad", 1), s.get("stride", 1)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, c, r, q = w.shape
    win = np.lib.stride_tricks.sliding_window_view(xp, (r, q), axis=(2, 3))[:, :, ::st, ::st]
    n, _, oh, ow = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * r * q)  # im2col (a copy)
    out = cols @ w.reshape(k, c * r * q).T
    return out.reshape(n, oh, ow, k).transpose(0, 3, 1, 2)


PEERS = {"attention": attention, "gemm": gemm, "gated_mlp": gated_mlp, "conv2d": conv2d}


def measure(fn, args, min_s=0.2, repeat=5) -> list[float]:
    fn(*args)
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        if time.perf_counter() - t0 >= min_s / 4 or number >= 1 << 16:
            break
        number *= 2
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        out.append((time.perf_counter() - t0) / number)
    return out


def time_layer(layer: str, passes: int = 3) -> dict:
    """numpy's time for ``layer`` on one thread: the fastest of ``passes`` medians, and the check."""
    spec = get_kernel(layer)
    inputs = [np.ascontiguousarray(a, dtype=np.float32) for a in make_inputs(spec)]
    shape = dict(spec.shape)
    fn = PEERS[spec.op]
    ok, err = check_output(spec, fn(shape, *inputs), reference(spec, inputs))
    medians = sorted(statistics.median(measure(fn, (shape, *inputs))) for _ in range(passes))
    return {
        "layer": layer,
        "numpy_s": medians[0],
        "slowest_pass_s": medians[-1],
        "passes": passes,
        "correct": bool(ok),
        "max_error": float(err),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layers", nargs="*", help="the layers to time (default: the papers' five)")
    parser.add_argument("--passes", type=int, default=3, help="timing passes per layer; the fastest is kept")
    args = parser.parse_args()
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    host = host_info()
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for layer in args.layers or PAPER_LAYERS:
        row = {"host": host, **time_layer(layer, args.passes)}
        stored[f"{machine(host)}|{layer}"] = row
        print(
            f"{layer}: numpy {row['numpy_s'] * 1e3:.3f} ms (one thread; slowest of {args.passes} passes "
            f"{row['slowest_pass_s'] * 1e3:.3f}), correct={row['correct']}",
            flush=True,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1))


if __name__ == "__main__":
    main()
